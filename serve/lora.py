"""Manage LoRA adapters on a running vLLM server (one started with runtime LoRA updating, as
`python -m serve.vllm` does).

    python -m serve.lora list   [--base-url http://127.0.0.1:8000/v1] [--json]
    python -m serve.lora load   NAME DIR [--replace]
    python -m serve.lora unload NAME

`LoraClient` is the same three calls for code that only has a URL (VLLMServer has its own for the
servers it owns). The adapter folder must be readable by the server: vLLM opens it itself.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

import httpx
from pydantic import BaseModel

from .vllm import VLLMError, _adapter_dir, _error_text

DEFAULT_BASE_URL = "http://127.0.0.1:8000/v1"


class ServedModel(BaseModel):
    """One entry of /v1/models: the base model (parent None) or an adapter (parent: the base)."""

    id: str
    parent: str | None = None
    root: str | None = None  # for an adapter: the folder it was loaded from

    @property
    def is_adapter(self) -> bool:
        return self.parent is not None


def root_url(base_url: str) -> str:
    """`http://host:port/v1` or `http://host:port` -> `http://host:port` (the adapter routes hang off /v1)."""
    url = base_url.rstrip("/")
    return url[: -len("/v1")] if url.endswith("/v1") else url


class LoraClient:
    def __init__(self, base_url: str = DEFAULT_BASE_URL, *, api_key: str | None = None, timeout_s: float = 120.0):
        self.root = root_url(base_url)
        key = api_key if api_key is not None else os.environ.get("OPENAI_API_KEY")
        self._headers = {"Authorization": f"Bearer {key}"} if key else {}
        self._timeout = timeout_s

    async def _request(self, method: str, path: str, body: dict[str, Any] | None = None) -> httpx.Response:
        try:
            async with httpx.AsyncClient(timeout=self._timeout, headers=self._headers) as client:
                return await client.request(method, f"{self.root}{path}", json=body)
        except httpx.HTTPError as exc:
            raise VLLMError(f"cannot reach {self.root} ({type(exc).__name__}: {exc})") from exc

    async def list(self) -> list[ServedModel]:
        response = await self._request("GET", "/v1/models")
        if response.status_code != 200:
            raise VLLMError(f"listing models failed ({response.status_code}): {_error_text(response)}")
        return [ServedModel.model_validate(item) for item in response.json()["data"]]

    async def load(self, name: str, path: Path | str, *, replace: bool = False) -> None:
        body = {"lora_name": name, "lora_path": _adapter_dir(path), "load_inplace": replace}
        response = await self._request("POST", "/v1/load_lora_adapter", body)
        if response.status_code != 200:
            raise VLLMError(f"loading adapter {name!r} failed ({response.status_code}): {_error_text(response)}")

    async def unload(self, name: str) -> None:
        response = await self._request("POST", "/v1/unload_lora_adapter", {"lora_name": name})
        if response.status_code != 200:
            raise VLLMError(f"unloading adapter {name!r} failed ({response.status_code}): {_error_text(response)}")


def _parser() -> Any:
    from common.cli import ArgumentParser
    from common.flags import add_flag, single_base_url_arg

    parser = ArgumentParser(prog="python -m serve.lora", description="Load, unload and list LoRA adapters on vLLM.")
    add_flag(
        parser, "--base-url", default=DEFAULT_BASE_URL, type=single_base_url_arg, help="the server's OpenAI base URL"
    )
    sub = parser.add_subparsers(dest="command", required=True)
    listing = sub.add_parser("list", help="models the server answers to (base + adapters)")
    add_flag(listing, "--json", help="one JSON object per line")
    load = sub.add_parser("load", help="serve the PEFT adapter in DIR as model NAME")
    load.add_argument("name")
    load.add_argument("path", type=Path)
    load.add_argument("--replace", action="store_true", help="swap an adapter already loaded under NAME")
    unload = sub.add_parser("unload", help="stop serving adapter NAME")
    unload.add_argument("name")
    for child in (listing, load, unload):  # subparsers are our ArgumentParser too: errors stay one line
        add_flag(
            child,
            "--base-url",
            default=argparse.SUPPRESS,
            type=single_base_url_arg,
            help="as above (either side of the command)",
        )
    return parser


async def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    client = LoraClient(args.base_url)
    if args.command == "list":
        models = await client.list()
        for model in models:
            if args.json:
                print(json.dumps(model.model_dump()))
            else:
                print(f"{model.id}\t{'adapter of ' + model.parent if model.is_adapter else 'base'}\t{model.root or ''}")
    elif args.command == "load":
        try:
            await client.load(args.name, args.path, replace=args.replace)
        except FileNotFoundError as exc:  # run_cli would say only "no such file", which hides why
            raise VLLMError(f"{exc.strerror}: {exc.filename}") from exc
        print(f"loaded {args.name} from {args.path}")
    else:
        await client.unload(args.name)
        print(f"unloaded {args.name}")
    return 0


if __name__ == "__main__":
    from common.cli import run_cli

    run_cli(main, user_errors=(VLLMError,))
