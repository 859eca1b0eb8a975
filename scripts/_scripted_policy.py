"""A scripted OpenAI-compatible chat server for benchmarks (a fixture, not a model).

`POST /v1/chat/completions`: when the last message is not a tool result, it
answers with one call of `--tool` with `--arguments`; after a tool result it
answers in text with that result. So every rollout is exactly two turns: one
tool call, then an answer. `GET /health` says it is up.

    python scripts/_scripted_policy.py --port 8011 --tool add --arguments '{"a": 2, "b": 3}'
"""

from __future__ import annotations

import argparse
import itertools
import json
import time
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route


def build_app(tool: str, arguments: str) -> Starlette:
    counter = itertools.count()

    async def chat(request: Request) -> JSONResponse:
        body: dict[str, Any] = await request.json()
        messages = body.get("messages") or []
        n = next(counter)
        last = messages[-1] if messages else {}
        if last.get("role") == "tool":
            message: dict[str, Any] = {"role": "assistant", "content": f"The answer is {last.get('content')}."}
            finish = "stop"
        else:
            call = {"id": f"call_{n}", "type": "function", "function": {"name": tool, "arguments": arguments}}
            message = {"role": "assistant", "content": None, "tool_calls": [call]}
            finish = "tool_calls"
        return JSONResponse(
            {
                "id": f"chatcmpl-{n}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": body.get("model", "scripted"),
                "choices": [{"index": 0, "message": message, "finish_reason": finish}],
                "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
            }
        )

    async def health(request: Request) -> JSONResponse:
        return JSONResponse({"ok": True})

    return Starlette(
        routes=[Route("/v1/chat/completions", chat, methods=["POST"]), Route("/health", health, methods=["GET"])]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=8011)
    parser.add_argument("--tool", default="add")
    parser.add_argument("--arguments", default='{"a": 2, "b": 3}', help="JSON arguments of the tool call")
    args = parser.parse_args()
    json.loads(args.arguments)  # fail here, not on the first request
    uvicorn.run(
        build_app(args.tool, args.arguments), host="127.0.0.1", port=args.port, log_level="warning", access_log=False
    )


if __name__ == "__main__":
    main()
