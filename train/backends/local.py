"""The GPU backends: ART's own `LocalBackend` (unsloth LoRA training + ART's vLLM runtime) and
`MegatronBackend` (Megatron-LM training over several GPUs), passed through as they are.

`local` needs the `gpu` extra (`pip install -e '.[gpu]' -c constraints/gpu.txt`), a CUDA GPU (two
or more for dedicated trainer and inference GPUs), and `uv` to build ART's vLLM runtime on first
use (or `ART_VLLM_RUNTIME_BIN`). `megatron` needs ART's Megatron stack on top (docs/gpu.md).
Everything is imported lazily, so the CPU path never imports unsloth; a backend that cannot run
here is one `BackendUnavailable` line.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from collections.abc import Sequence
from typing import Any

from .model_support import allow_without_megatron, megatron_importable


class BackendUnavailable(RuntimeError):
    """The requested backend cannot run here (a missing extra, key, or GPU)."""


def cuda_gpus() -> int:
    """How many CUDA GPUs torch sees (0 without torch or CUDA)."""
    try:
        import torch
    except ImportError:
        return 0
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def _gpus_missing(kind: str, needed: int) -> str | None:
    have = cuda_gpus()
    if have >= needed:
        return None
    if have == 0:
        return f"--backend {kind} needs a CUDA GPU (none visible; use --backend torch on the CPU)"
    return f"--backend {kind} needs {needed} CUDA GPUs (--trainer-gpus + --inference-gpus), {have} visible"


def local_backend_missing(gpus: int = 1) -> str | None:
    """Why ART's LocalBackend cannot run here on `gpus` GPUs, or None when it can."""
    if importlib.util.find_spec("unsloth") is None:
        return "--backend local needs the gpu extra (missing: unsloth; pip install -e '.[gpu]' -c constraints/gpu.txt)"
    reason = _gpus_missing("local", gpus)
    if reason is not None:
        return reason
    if not os.environ.get("ART_VLLM_RUNTIME_BIN") and shutil.which("uv") is None:
        return "--backend local needs uv on PATH to build ART's vLLM runtime (or set ART_VLLM_RUNTIME_BIN)"
    return None


def make_local_backend(*, gpus: int = 1, **opts: Any) -> Any:
    """`art.local.LocalBackend(**opts)` (e.g. `path=".art"`), after checking it can run here on
    `gpus` GPUs (1: shared; trainer + inference GPUs: dedicated)."""
    reason = local_backend_missing(gpus)
    if reason is not None:
        raise BackendUnavailable(reason)
    allow_without_megatron()
    from art.local import LocalBackend

    return LocalBackend(**opts)


def megatron_missing() -> str | None:
    """Why ART's MegatronBackend cannot run here, or None when it can."""
    if not megatron_importable():
        return (
            "--backend megatron needs megatron-core and megatron-bridge (ART's megatron extra: "
            "bash art/megatron/setup.sh from ART's repository, docs/gpu.md)"
        )
    return _gpus_missing("megatron", 1)


def make_megatron_backend(**opts: Any) -> Any:
    """`art.megatron.MegatronBackend(**opts)` (`path`, `in_process`), after checking for Megatron and GPUs."""
    reason = megatron_missing()
    if reason is not None:
        raise BackendUnavailable(reason)
    from art.megatron import MegatronBackend

    return MegatronBackend(**opts)


def dedicated_gpus(trainer: Sequence[int] | None, inference: Sequence[int] | None) -> dict[str, list[int]]:
    """ART's dedicated mode (training and vLLM on their own GPUs) as model config, checked by ART's
    own rules (`art.dev.validate`: both or neither, no overlap, trainer GPUs 0..n-1, one inference
    GPU); ValueError when they are broken. Empty when neither is given (shared mode)."""
    if trainer is None and inference is None:
        return {}
    config: dict[str, list[int]] = {}
    if trainer is not None:
        config["trainer_gpu_ids"] = list(trainer)
    if inference is not None:
        config["inference_gpu_ids"] = list(inference)
    allow_without_megatron()  # art.dev imports ART's Megatron model support
    from art.dev.validate import validate_dedicated_config

    validate_dedicated_config(config)  # type: ignore[arg-type]
    return config


def gpu_ids(text: str) -> list[int]:
    """`--trainer-gpus 0,1` as [0, 1] (an argparse type)."""
    try:
        ids = [int(part) for part in text.split(",")]
    except ValueError:
        raise ValueError(f"{text!r} is not a comma-separated list of GPU numbers") from None
    if any(i < 0 for i in ids):
        raise ValueError(f"{text!r}: GPU numbers are >= 0")
    return ids


def check_gpu_flags(backend: str, trainer: list[int] | None, inference: list[int] | None) -> None:
    """The CLI's check of --trainer-gpus/--inference-gpus: local backend only, and ART's rules for
    dedicated mode, its messages spelled with the flags. ValueError when broken."""
    if trainer is None and inference is None:
        return
    if backend != "local":
        raise ValueError(f"--trainer-gpus/--inference-gpus are for --backend local, not {backend}")
    try:
        dedicated_gpus(trainer, inference)
    except ValueError as exc:
        text = str(exc).replace("trainer_gpu_ids", "--trainer-gpus").replace("inference_gpu_ids", "--inference-gpus")
        raise ValueError(text) from None
