"""The GPU backend: ART's own `LocalBackend` (unsloth LoRA training + vLLM), passed through as is.

Needs the `gpu` extra (`pip install 'mcpgym[gpu]'`: openpipe-art[backend], unsloth, vllm) and a
CUDA device. Everything is imported lazily, so the CPU path (`train.backends.torch_backend`) never
needs unsloth installed; selecting `--backend local` without it is one clear error.
"""

from __future__ import annotations

import importlib.util
from typing import Any


class BackendUnavailable(RuntimeError):
    """The requested backend cannot run here (a missing extra, no GPU)."""


def local_backend_missing() -> str | None:
    """Why ART's LocalBackend cannot run here, or None when it can."""
    missing = [name for name in ("unsloth", "vllm") if importlib.util.find_spec(name) is None]
    if missing:
        return f"--backend local needs the gpu extra (missing: {', '.join(missing)}; pip install 'mcpgym[gpu]')"
    try:
        import torch
    except ImportError:
        return "--backend local needs torch with CUDA"
    if not torch.cuda.is_available():
        return "--backend local needs a CUDA GPU (use --backend torch on the CPU)"
    return None


def make_local_backend(**opts: Any) -> Any:
    """`art.local.LocalBackend(**opts)` (e.g. `path=".art"`), after checking it can run here."""
    reason = local_backend_missing()
    if reason is not None:
        raise BackendUnavailable(reason)
    from art.local import LocalBackend

    return LocalBackend(**opts)
