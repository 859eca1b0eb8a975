"""Manage LoRA adapters on a running vLLM server (one started with runtime LoRA updating, as
`python -m serve.vllm` does).

    python -m serve.lora list   [--base-url http://127.0.0.1:8000/v1] [--json]
    python -m serve.lora load   NAME DIR [--replace]
    python -m serve.lora unload NAME

The server's key comes from $VLLM_API_KEY (`--api-key-env` names another variable).
The calls are `serve.vllm_client.VLLMClient` (also `LoraClient` here), which `VLLMServer` uses for
the servers it owns. The adapter folder must be readable by the server: vLLM opens it itself.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from .vllm_client import DEFAULT_BASE_URL, DEFAULT_KEY_ENV, ServedModel, VLLMClient, VLLMError, root_url

LoraClient = VLLMClient  # the name this module has always offered

__all__ = ["DEFAULT_BASE_URL", "LoraClient", "ServedModel", "VLLMError", "main", "root_url"]


def _parser() -> Any:
    from common.cli import ArgumentParser
    from common.flags import add_flag, single_base_url_arg

    parser = ArgumentParser(prog="python -m serve.lora", description="Load, unload and list LoRA adapters on vLLM.")
    add_flag(
        parser, "--base-url", default=DEFAULT_BASE_URL, type=single_base_url_arg, help="the server's OpenAI base URL"
    )
    add_flag(parser, "--api-key-env", default=DEFAULT_KEY_ENV, help="variable holding the server's API key")
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
        add_flag(child, "--api-key-env", default=argparse.SUPPRESS, help="as above (either side of the command)")
    return parser


async def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    client = LoraClient(args.base_url, api_key_env=args.api_key_env)
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
