"""Serving the trained agent: vLLM launcher (`serve.vllm`), adapter management (`serve.lora`), load
benchmark (`serve.bench`), GGUF export (`serve.export`) and the per-family serving profile
(`serve.models`). Deployment files live in deploy/ at the repository root.

Names are imported lazily, so `python -m serve.vllm` does not find its own module pre-imported."""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "ServingProfile": "serve.models",
    "resolve_model": "serve.models",
    "serving_profile": "serve.models",
    "VLLMConfig": "serve.vllm",
    "VLLMError": "serve.vllm",
    "VLLMServer": "serve.vllm",
    "VLLMStartError": "serve.vllm",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'serve' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
