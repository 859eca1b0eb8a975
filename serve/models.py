"""What to serve a model with: where its folder is, and the tool-call parser + chat template that match it.

vLLM needs two choices that depend on the model family, and a wrong pair silently breaks tool
calling (the model writes calls the parser cannot read back). `serving_profile` makes both in one
place from the folder's `config.json` and tokenizer files:

| family | detected by | tool-call parser | chat template |
|---|---|---|---|
| Qwen2/2.5/3 (incl. MoE) | `model_type` qwen2*/qwen3* | `hermes` | the model's own |
| Llama 3.x | `<|eot_id|>` in the tokenizer | `llama3_json` | the model's own |
| Mistral | `model_type` mistral/mixtral | `mistral` | the model's own |
| other ChatML (SmolLM2, the embedded model) | `<|im_start|>` in the tokenizer | `hermes` | mcpgym's |
| anything else | — | `hermes` | the model's own |

"The model's own" is `<model>/chat_template.jinja` when the folder carries one (transformers v5
saves it there, a merge keeps it), else the one inside tokenizer_config.json, which vLLM reads
itself. mcpgym's template is the one the embedded model was trained with; it writes calls as
hermes-style `<tool_call>` blocks.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

from pydantic import BaseModel

from .store import CHAT_TEMPLATE_FILE, CHAT_TEMPLATE_PATH

Family = Literal["qwen", "llama3", "mistral", "chatml", "other"]
MCPGYM_TEMPLATE = CHAT_TEMPLATE_PATH  # the tool-aware template, serve/chat_template.jinja
OWN_TEMPLATE_FILE = CHAT_TEMPLATE_FILE


class ServingProfile(BaseModel):
    family: Family
    tool_call_parser: str
    chat_template: Path | None  # None: vLLM uses the template inside the tokenizer files


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def _tokenizer_text(model_dir: Path) -> str:
    """Special tokens as text, enough to tell ChatML from Llama 3 without loading a tokenizer."""
    config = _read_json(model_dir / "tokenizer_config.json")
    added = config.get("added_tokens_decoder") or {}
    names = [str(v.get("content", "")) for v in added.values() if isinstance(v, dict)]
    names += [str(config.get(k, "")) for k in ("bos_token", "eos_token", "pad_token")]
    template = model_dir / OWN_TEMPLATE_FILE
    if template.is_file():
        names.append(template.read_text(encoding="utf-8", errors="replace"))
    names.append(str(config.get("chat_template") or ""))
    return "\n".join(names)


def detect_family(model_dir: Path) -> Family:
    config = _read_json(model_dir / "config.json")
    model_type = str(config.get("model_type", "")).lower()
    if model_type.startswith(("qwen2", "qwen3")):
        return "qwen"
    if model_type in {"mistral", "mixtral", "mistral3"}:
        return "mistral"
    tokens = _tokenizer_text(model_dir)
    if "<|eot_id|>" in tokens:
        return "llama3"
    if "<|im_start|>" in tokens:
        return "chatml"
    return "other"


def serving_profile(model_dir: Path) -> ServingProfile:
    """The tool-call parser and chat template for the model in `model_dir` (see the module table)."""
    family = detect_family(model_dir)
    own = model_dir / OWN_TEMPLATE_FILE
    own_template = own if own.is_file() else None
    if family == "chatml":
        # The embedded model's folder already carries mcpgym's template; a plain SmolLM2 does not.
        uses_ours = own_template is not None and "<tool_call>" in own.read_text(encoding="utf-8", errors="replace")
        return ServingProfile(
            family=family, tool_call_parser="hermes", chat_template=own_template if uses_ours else MCPGYM_TEMPLATE
        )
    parser = {"qwen": "hermes", "llama3": "llama3_json", "mistral": "mistral"}.get(family, "hermes")
    return ServingProfile(family=family, tool_call_parser=parser, chat_template=own_template)


class ModelNotFoundError(RuntimeError):
    """Neither a model folder nor a Hugging Face repo that can be fetched (bad input: exit 2 in CLIs)."""


def resolve_model(spec: str, *, config_only: bool = False) -> Path:
    """A local folder holding `config.json` for `spec`: a folder as is, else a Hugging Face repo id.

    Repo ids come from the local Hugging Face cache or are downloaded (`config_only`: just the small
    files needed to pick a profile, for --dry-run; the snapshot folder is the same either way).
    """
    folder = Path(spec).expanduser()
    if folder.is_dir():
        if not (folder / "config.json").is_file():
            raise ModelNotFoundError(f"not a model folder (config.json missing): {folder}")
        return folder.resolve()
    if spec.startswith((".", "/", "~")) or spec.count("/") != 1:
        raise ModelNotFoundError(f"no such model folder: {spec}")
    try:
        from huggingface_hub import snapshot_download

        patterns = ["*.json", "*.jinja"] if config_only else ["*.json", "*.jinja", "*.safetensors", "*.txt", "*.model"]
        return Path(snapshot_download(spec, allow_patterns=patterns))
    except Exception as exc:  # offline, unknown repo, gated repo: all mean "cannot serve this name"
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ModelNotFoundError(
            f"{spec}: not a folder, and fetching it from the Hugging Face hub failed ({reason})"
        ) from exc
