"""Start, health-check and stop a vLLM OpenAI-compatible server, on the CPU and on a GPU alike.

`VLLMServer` owns the subprocess: it picks a free port, starts the command `VLLMConfig` describes
(serve.vllm_config) in its own process group with its log in a file (common.procs), waits for
`/health` (failing with the tail of the log if vLLM dies or takes too long), loads and unloads
LoRA adapters at runtime (serve.vllm_client), and on stop terminates the whole group (then kills it).

vLLM writes a `vllm_dist_<uuid>` file into `tempfile.gettempdir()` at every start and never removes
it; each server gets a private TMPDIR that is deleted on stop, so nothing of ours is left in /tmp.

Each server has its own key (`api_key`: the one the user chose in `config.api_key_env`, else a
random one made here), handed to vLLM in its environment and to the clients made here; anyone
else on the host gets 401 (serve.vllm_guard).

    async with VLLMServer(VLLMConfig(model=path, enable_lora=True, runtime_lora=True)) as server:
        client = openai.AsyncOpenAI(base_url=server.base_url, api_key=server.api_key)
        await server.load_lora("policy@3", checkpoint_dir)
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import shlex
import shutil
import signal
import subprocess
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any, Literal, Self

import httpx

from common import procs
from common.home import mcpgym_home

from .vllm_client import VLLMClient, VLLMError
from .vllm_config import KEY_ENV, VLLMConfig, vllm_command, vllm_environment

# Logs of older servers kept next to the new one (a GRPO run or a test session starts one each).
_KEEP_LOGS = 20
_LOG_TAIL_LINES = 40


class VLLMStartError(VLLMError):
    """vLLM exited or did not become healthy in time; the message carries the tail of its log."""


class VLLMServer:
    """A vLLM subprocess serving `config.model`; an async context manager (`start()`/`stop()`)."""

    def __init__(self, config: VLLMConfig) -> None:
        self.config = config
        self.device: Literal["cpu", "gpu"] = config.pick_device()
        self.port = config.port or procs.free_port(config.host)
        self.served_model_name = config.served_model_name or config.model.name
        supplied = config.supplied_key()
        self.key_supplied = supplied is not None
        self.api_key: str = supplied or secrets.token_urlsafe(32)
        self.log_path: Path | None = None
        self.tmp_dir: Path | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._log_file: Any = None

    # ------------------------------------------------------------------ what would run

    @property
    def chat_template(self) -> Path | None:
        return self.config.template()

    def command(self) -> list[str]:
        """The exact argv that `start()` runs."""
        return vllm_command(self.config, device=self.device, port=self.port, served_model_name=self.served_model_name)

    def environment(self) -> dict[str, str]:
        """The variables added to the inherited environment (TMPDIR is set at start); holds the key."""
        return vllm_environment(self.config, device=self.device, api_key=self.api_key)

    def shown_environment(self) -> dict[str, str]:
        """`environment()` fit to print: the key's value hidden."""
        return {**self.environment(), KEY_ENV: "<hidden>"}

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
                self.port = procs.free_port(self.config.host)
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
        """Fork vLLM (fast: Popen only forks and execs; the waiting is async, in _wait_healthy)."""
        log_dir = self.config.log_dir or mcpgym_home() / "logs" / "vllm"
        log_dir.mkdir(parents=True, exist_ok=True)
        procs.prune_logs(log_dir, _KEEP_LOGS)
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        self.log_path = log_dir / f"{stamp}-{self.served_model_name}-{self.port}.log"
        self.tmp_dir = Path(tempfile.mkdtemp(prefix="mcpgym-vllm-"))
        env = {**os.environ, **self.environment(), "TMPDIR": str(self.tmp_dir)}
        argv = self.command()
        self._log_file = open(self.log_path, "ab")  # closed in _cleanup()
        self._log_file.write(f"$ {shlex.join(argv)}\n".encode())
        self._log_file.flush()
        self._process = procs.spawn_group(argv, env=env, log=self._log_file)
        procs.kill_at_exit(self)

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
            procs.signal_group(process.pid, signal.SIGTERM)
            await asyncio.to_thread(procs.wait_group, process, time.monotonic() + self.config.stop_timeout_s)
        self._cleanup()

    async def wait(self) -> int:
        """Until the vLLM process exits on its own; returns its exit code."""
        if self._process is None:
            raise VLLMError("server not started")
        return await asyncio.to_thread(self._process.wait)

    def kill_now(self) -> None:
        """Synchronous hard stop (atexit, signal handlers): SIGKILL the group and clean up."""
        if self._process is not None:
            procs.signal_group(self._process.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._process.wait(timeout=5)
        self._cleanup()

    def _cleanup(self) -> None:
        process, self._process = self._process, None
        if process is not None:
            procs.kill_group(process)  # whatever ignored SIGTERM
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
        if self.tmp_dir is not None:
            shutil.rmtree(self.tmp_dir, ignore_errors=True)
        procs.forget_at_exit(self)

    def log_tail(self, lines: int = _LOG_TAIL_LINES) -> str:
        return procs.log_tail(self.log_path, lines)

    # ------------------------------------------------------------------ runtime API

    def client(self) -> VLLMClient:
        """The server's HTTP API (health, models, adapters), with its key."""
        return VLLMClient(self.base_url, api_key=self.api_key)

    async def health(self) -> bool:
        return await self.client().health()

    async def list_models(self) -> list[str]:
        """Ids the server answers to: the base model's served name, then loaded adapters."""
        return [model.id for model in await self.client().list()]

    async def load_lora(self, name: str, path: Path | str, *, replace: bool = False) -> None:
        """Serve the PEFT adapter in `path` as model `name` (`replace` swaps one already loaded)."""
        if not self.config.runtime_lora:
            raise VLLMError("this server was started without runtime_lora")
        await self.client().load(name, path, replace=replace)

    async def unload_lora(self, name: str) -> None:
        await self.client().unload(name)
