"""ART 0.5.18's LocalBackend where Megatron is not installed.

`LocalBackend.register` builds the model's config with `art.dev.get_model_config`, which imports
`art.megatron.model_support` for one thing: the LoRA target modules of the base model's family
(`default_target_modules_for_model`). That package's registry imports its Megatron handlers, and
those import `megatron.core` and `megatron.bridge` at module level. Neither comes with
`openpipe-art[backend]`, and ART's pins for them (megatron-core 0.16.0rc0, megatron-bridge
0.4.0rc0) are not releases on PyPI, so on a plain GPU install `register` fails with
`No module named 'megatron'`.

`allow_without_megatron()` puts a stand-in for `art.megatron.model_support.handlers` in place
(only while Megatron is not importable): each handler has the key and vLLM-LoRA status ART's
registry reads at import, and any other use raises an error that names the missing install.
ART's registry, model specs and target modules are then ART's own. The megatron backend needs the
real handlers and checks for Megatron itself (`train.backends.local.megatron_missing`).
"""

from __future__ import annotations

import importlib.util
import sys
import types
from typing import Any

HANDLERS = "art.megatron.model_support.handlers"
# ART 0.5.18's handlers: (module attribute, key, native_vllm_lora_status), as its registry reads them.
_HANDLERS = (
    ("DEFAULT_DENSE_HANDLER", "default_dense", "disabled"),
    ("QWEN3_DENSE_HANDLER", "qwen3_dense", "validated"),
    ("QWEN3_MOE_HANDLER", "qwen3_moe", "validated"),
    ("QWEN3_5_DENSE_HANDLER", "qwen3_5_dense", "validated"),
    ("QWEN3_5_MOE_HANDLER", "qwen3_5_moe", "validated"),
)


def megatron_importable() -> bool:
    """Whether `megatron.core` and `megatron.bridge` (ART's Megatron handlers) can be imported."""
    try:
        return all(importlib.util.find_spec(name) is not None for name in ("megatron.core", "megatron.bridge"))
    except ModuleNotFoundError:  # no `megatron` package at all
        return False


class MegatronHandlerUnavailable:
    """A Megatron model-support handler where Megatron is not installed."""

    def __init__(self, key: str, native_vllm_lora_status: str) -> None:
        self.key = key
        self.native_vllm_lora_status = native_vllm_lora_status

    def __getattr__(self, name: str) -> Any:
        raise RuntimeError(
            f"ART's Megatron handler {self.key!r} needs megatron-core and megatron-bridge "
            "(the megatron backend's install, docs/gpu.md)"
        )


def allow_without_megatron() -> bool:
    """Make `art.dev.get_model_config` importable without Megatron; True when the stand-in was
    installed now (False: Megatron is importable, or ART's model support is already loaded)."""
    if HANDLERS in sys.modules or "art.megatron.model_support" in sys.modules or megatron_importable():
        return False
    stand_in = types.ModuleType(HANDLERS, "mcpgym's stand-in for ART's Megatron handlers (no Megatron here)")
    for attribute, key, status in _HANDLERS:
        setattr(stand_in, attribute, MegatronHandlerUnavailable(key, status))
    sys.modules[HANDLERS] = stand_in
    return True
