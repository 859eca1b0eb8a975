"""`python -m train.bfcl` on the multi-turn categories: a scripted OpenAI-compatible server that
answers each user turn with the ground truth's calls (or, for entries in `wrong`, with nothing),
over real HTTP through the real policy client, the bfcl-multi-turn env and the leaderboard's checker."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("bfcl_eval")

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from envs.bfcl_mt import data
from envs.bfcl_mt.calls import parse_call
from envs.bfcl_mt.tasks import task_of
from rollouts.jsonl import read_jsonl
from tests.fixtures.common import ThreadedServer, free_port
from train.bfcl import main

LIMIT = 2
ROOT = Path(__file__).resolve().parents[1]


class MultiTurnScriptedServer(ThreadedServer):
    """Answers the entries it knows: each user turn, the ground truth's calls of that turn in one
    reply, then a text answer; `wrong` entries never call. A conversation's entry is found by its
    question and offered tools (base and miss_func entries share questions; miss_func offers fewer
    tools), then carried in the ids of the calls it was answered with."""

    thread_name = "bfcl-mt-scripted"

    def __init__(self, entries: Iterable[dict[str, Any]], wrong: Iterable[str] = ()) -> None:
        self.by_key = {self._key(task_of(e).question, task_of(e).tools or []): e for e in entries}
        self.by_id = {e["id"]: e for e in entries}
        self.wrong = set(wrong)
        self.port = free_port()
        self._ids = itertools.count()
        self.app = Starlette(routes=[Route("/v1/chat/completions", self._chat, methods=["POST"])])

    @staticmethod
    def _key(question: str, tools: Iterable[str]) -> tuple[str, tuple[str, ...]]:
        return question, tuple(sorted(tools))

    def _entry(self, body: dict[str, Any]) -> dict[str, Any]:
        for message in body["messages"]:
            for call in message.get("tool_calls") or []:
                return self.by_id[call["id"].rsplit("-", 2)[0]]
        question = next(m["content"] for m in body["messages"] if m["role"] == "user")
        return self.by_key[self._key(question, [t["function"]["name"] for t in body.get("tools", [])])]

    def _message(self, entry: dict[str, Any], messages: list[dict[str, Any]]) -> dict[str, Any]:
        users = [i for i, m in enumerate(messages) if m["role"] == "user"]
        answered = any(m["role"] == "assistant" for m in messages[users[-1] :])
        texts = [] if answered or entry["id"] in self.wrong else entry["ground_truth"][len(users) - 1]
        calls = []
        for i, text in enumerate(texts):
            name, arguments = parse_call(text)
            function = {"name": name, "arguments": json.dumps(arguments)}
            calls.append({"id": f"{entry['id']}-{next(self._ids)}-{i}", "type": "function", "function": function})
        if not calls:
            return {"role": "assistant", "content": "Done."}
        return {"role": "assistant", "content": "", "tool_calls": calls}

    async def _chat(self, request: Request) -> JSONResponse:
        body = await request.json()
        message = self._message(self._entry(body), body["messages"])
        completion = {
            "id": f"chatcmpl-{next(self._ids)}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model", "scripted"),
            "choices": [
                {"index": 0, "message": message, "finish_reason": "tool_calls" if "tool_calls" in message else "stop"}
            ],
            "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
        }
        return JSONResponse(completion)


def test_multi_turn_categories_run_and_score_like_the_leaderboard(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    entries = [e for c in ("multi_turn_base", "multi_turn_miss_func") for e in data.entries(c)[:LIMIT]]
    server = MultiTurnScriptedServer(entries, wrong=["multi_turn_base_1"]).start()
    try:
        out = tmp_path / "mt.jsonl"
        argv = ["--bench", "bfcl", "--categories", "multi_turn_base,multi_turn_miss_func", "--limit", str(LIMIT)]
        argv += ["--base-url", server.base_url, "--model", "scripted", "--out", str(out), "--no-progress"]
        assert main(argv) == 0
    finally:
        server.stop()
    records = {r["id"]: r for r in read_jsonl(out)}
    assert set(records) == {e["id"] for e in entries}
    assert records["multi_turn_base_0"]["valid"] and records["multi_turn_miss_func_0"]["valid"]
    wrong = records["multi_turn_base_1"]
    assert not wrong["valid"] and wrong["error_type"] == "multi_turn:empty_turn_model_response"
    assert (
        records["multi_turn_base_0"]["reply"][0] == [data.entry("multi_turn_base_0")["ground_truth"][0]]
        or records["multi_turn_base_0"]["reply"][0]
    )
    summary = json.loads(out.with_suffix(".summary.json").read_text())
    assert summary["categories"]["multi_turn_base"] == {"correct": 1, "total": 2, "accuracy": 0.5}
    assert summary["categories"]["multi_turn_miss_func"]["correct"] == 2
    table = capsys.readouterr().out
    assert "Multi-Turn (base, miss_func, miss_param, long_context; unweighted)" in table


def test_rollouts_generate_runs_the_env(tmp_path: Path) -> None:
    """`rollouts.generate --env bfcl-multi-turn`: trajectories of several user turns, the checker's verdicts."""
    entries = [data.entry(f"multi_turn_base_{n}") for n in (0, 4)]  # the test split's first two
    server = MultiTurnScriptedServer(entries, wrong=["multi_turn_base_4"]).start()
    out = tmp_path / "traj.jsonl"
    try:
        argv = ["--env", "bfcl-multi-turn", "--split", "test", "--limit", "2", "--max-turns", "21"]
        argv += ["--base-url", server.base_url, "--model", "scripted", "--out", str(out), "--no-progress"]
        done = subprocess.run(
            [sys.executable, "-m", "rollouts.generate", *argv], cwd=ROOT, capture_output=True, text=True, timeout=300
        )
    finally:
        server.stop()
    assert done.returncode == 0, done.stderr[-2000:]
    trajectories = {t["task_id"]: t for t in read_jsonl(out)}
    right, wrong = trajectories["multi_turn_base_0"], trajectories["multi_turn_base_4"]
    assert right["verdict"]["success"] and right["reward"] == 1.0
    assert right["metrics"]["user_turns"] == len(entries[0]["question"])
    assert not wrong["verdict"]["success"] and "empty_turn_model_response" in wrong["verdict"]["reason"]
