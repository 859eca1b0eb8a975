"""The models and serving them: the embedded model store (`serve.store`), the per-family serving
profile (`serve.models`), vLLM's config (`serve.vllm_config`), server (`serve.vllm_server`), HTTP API
(`serve.vllm_client`) and launcher CLI (`serve.vllm`), adapter management (`serve.lora`), load
benchmark (`serve.bench`) and GGUF export (`serve.export`). Deployment files live in deploy/ at the
repository root. serve imports only common and contracts; train imports serve.

Names are imported lazily, so `python -m serve.vllm` does not find its own module pre-imported."""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "ServingProfile": "serve.models",
    "resolve_model": "serve.models",
    "serving_profile": "serve.models",
    "VLLMConfig": "serve.vllm_config",
    "VLLMError": "serve.vllm_client",
    "VLLMServer": "serve.vllm_server",
    "VLLMStartError": "serve.vllm_server",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'serve' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
