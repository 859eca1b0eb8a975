"""Errors of the backends that a CLI reports as one line (light: no torch or art import)."""

from __future__ import annotations

import json
from pathlib import Path


class BaseModelError(ValueError):
    """The model's `base_model` is not a local model folder the CPU backend can load."""


def check_base_model(base_model: str) -> Path:
    """The base model folder, or a one-line BaseModelError saying what is wrong with it."""
    folder = Path(base_model).expanduser()
    if not folder.is_dir():
        raise BaseModelError(f"base model {base_model!r} is not a local model folder (the torch backend needs one)")
    config_path = folder / "config.json"
    if not config_path.is_file():
        raise BaseModelError(f"base model {base_model!r} has no config.json")
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise BaseModelError(f"base model {base_model!r}: unreadable config.json ({exc})") from None
    if not isinstance(config, dict) or "model_type" not in config:
        raise BaseModelError(f"base model {base_model!r}: config.json names no model_type")
    if not any(folder.glob("*.safetensors")) and not any(folder.glob("*.bin")):
        raise BaseModelError(f"base model {base_model!r} has no weights (*.safetensors)")
    if not (folder / "tokenizer.json").is_file() and not (folder / "tokenizer_config.json").is_file():
        raise BaseModelError(f"base model {base_model!r} has no tokenizer")
    return folder.resolve()
