"""The cheap checks `train.merge` runs before it loads a model: is the adapter a LoRA, which base
does it belong to, does it fit that base, and may the output folder be written.

Each failure is a `MergeInputError`, one line and exit 2 at the CLI. Everything here but
`check_adapter_shapes` reads only small JSON files and safetensors headers, so bad input fails in
well under a second.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from common.cli import UsageError
from train.models import BASE_MODEL_NAME, MANIFEST_FILE, ensure_base_model

if TYPE_CHECKING:
    import torch

MergeDtype = Literal["bf16", "fp32"]
ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = ("adapter_model.safetensors", "adapter_model.bin")
# Max abs logit difference allowed between the saved merge (loaded back, computed in float32) and
# base+adapter in float32. float32: merging only re-associates sums (measured 5e-7 on the tiny model,
# 1e-4 on SmolLM2-135M). bfloat16: rounding every weight to 8 mantissa bits alone moves SmolLM2's logits
# by about 1, so there the bar is only a sanity bound. What proves a bfloat16 merge right are the two
# exact checks that always run: the in-memory float32 merge is held to the float32 bar before the cast,
# and the saved folder must load back to exactly the weights that were verified.
DEFAULT_TOLERANCE: dict[str, float] = {"fp32": 1e-3, "bf16": 2.0}

_SHAPE_KEYS = (
    "model_type",
    "hidden_size",
    "intermediate_size",
    "num_hidden_layers",
    "num_attention_heads",
    "num_key_value_heads",
    "head_dim",
    "vocab_size",
)


class MergeInputError(UsageError):
    """The inputs cannot be merged (missing adapter, wrong base, occupied output): exit 2."""


@dataclass(frozen=True)
class MergeInputs:
    """What the checks resolved: the folders, the adapter's config, the dtype and the tolerance."""

    adapter_dir: Path
    adapter_config: dict[str, Any]
    base_dir: Path
    out_dir: Path
    dtype: MergeDtype
    tolerance: float


def check_inputs(
    base: Path | str | None,
    adapter: Path | str,
    out: Path | str,
    dtype: MergeDtype | None,
    *,
    force: bool,
    tolerance: float | None,
    allow_base_mismatch: bool,
) -> MergeInputs:
    """Resolve and check the merge's inputs (all but the adapter's shapes, which need the model)."""
    adapter_dir = resolve_adapter_dir(Path(adapter))
    adapter_config = read_adapter_config(adapter_dir)
    base_dir = resolve_base(Path(base) if base is not None else None, adapter_config)
    if not allow_base_mismatch:
        check_base_identity(base_dir, adapter_config)
    out_dir = check_out_dir(Path(out), force=force, inputs=[base_dir, adapter_dir])
    dtype = dtype or default_dtype(base_dir)
    if tolerance is None:
        tolerance = DEFAULT_TOLERANCE[dtype]
    if tolerance < 0:
        raise MergeInputError(f"tolerance must be >= 0, got {tolerance}")
    return MergeInputs(adapter_dir, adapter_config, base_dir, out_dir, dtype, tolerance)


def resolve_adapter_dir(path: Path) -> Path:
    """The adapter folder itself, or the latest `checkpoints/NNNN` of an ART model folder."""
    path = path.expanduser()
    if not path.is_dir():
        raise MergeInputError(f"adapter folder not found: {path}")
    if (path / ADAPTER_CONFIG).is_file():
        return path
    from train.backends.layout import checkpoint_folders

    steps = [step for step in checkpoint_folders(path) if (step / ADAPTER_CONFIG).is_file()]
    if steps:
        return steps[-1]
    raise MergeInputError(f"{path} is not a PEFT adapter (no {ADAPTER_CONFIG}, no checkpoints/NNNN inside)")


def read_adapter_config(adapter_dir: Path) -> dict[str, Any]:
    try:
        config = json.loads((adapter_dir / ADAPTER_CONFIG).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise MergeInputError(f"{adapter_dir / ADAPTER_CONFIG}: unreadable ({exc})") from exc
    if not isinstance(config, dict):
        raise MergeInputError(f"{adapter_dir / ADAPTER_CONFIG}: not a JSON object")
    if config.get("peft_type") != "LORA":
        raise MergeInputError(f"{adapter_dir}: a {config.get('peft_type')!r} adapter, only LoRA adapters merge here")
    if not any((adapter_dir / name).is_file() for name in ADAPTER_WEIGHTS):
        raise MergeInputError(f"{adapter_dir}: no adapter weights ({' or '.join(ADAPTER_WEIGHTS)})")
    return config


def _weights_fingerprint(model_dir: Path) -> str:
    """A cheap identity of a model's weights: sizes plus a few sampled MiB of every safetensors file.

    Two folders holding copies of the same weights agree; two differently trained or seeded models
    (same shapes, other numbers) do not. Full hashing would cost seconds per GiB for no real gain.
    """
    digest = hashlib.sha256()
    chunk = 1 << 20
    for file in sorted(model_dir.glob("*.safetensors")):
        size = file.stat().st_size
        digest.update(f"{file.name}:{size}".encode())
        with open(file, "rb") as handle:
            for offset in sorted({0, max(0, size // 2 - chunk // 2), max(0, size - chunk)}):
                handle.seek(offset)
                digest.update(handle.read(chunk))
    return digest.hexdigest()


def model_config(model_dir: Path) -> dict[str, Any]:
    try:
        return json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise MergeInputError(f"{model_dir}: not a model folder (config.json: {exc})") from exc


def default_dtype(base: Path) -> MergeDtype:
    """Keep the base's precision: bf16 for half-precision checkpoints, fp32 otherwise (the embedded model)."""
    config = model_config(base)
    saved = str(config.get("dtype") or config.get("torch_dtype") or "float32")
    return "bf16" if saved in {"bfloat16", "float16"} else "fp32"


def _model_names(model_dir: Path) -> set[str]:
    """Lower-case names a model folder goes by: its folder name and, for the embedded model, its manifest."""
    names = {model_dir.name.lower()}
    manifest = model_dir / MANIFEST_FILE
    if manifest.is_file():
        with contextlib.suppress(OSError, ValueError):
            names.add(str(json.loads(manifest.read_text(encoding="utf-8")).get("name", "")).lower())
    return names


def resolve_base(base: Path | None, adapter_config: dict[str, Any]) -> Path:
    """`base` when given, else the folder the adapter records, else the embedded model if the names agree."""
    if base is not None:
        base = base.expanduser()
        if not (base / "config.json").is_file():
            raise MergeInputError(f"base model folder not found (no config.json): {base}")
        return base.resolve()
    recorded = adapter_config.get("base_model_name_or_path")
    if recorded and (Path(recorded).expanduser() / "config.json").is_file():
        return Path(recorded).expanduser().resolve()
    if recorded and Path(str(recorded)).name.lower() == BASE_MODEL_NAME:
        return ensure_base_model().resolve()
    raise MergeInputError(f"the adapter's base {recorded!r} is not a local model folder; pass --base-model")


def check_base_identity(base: Path, adapter_config: dict[str, Any]) -> None:
    """Refuse an adapter whose recorded base is another model than `base`."""
    recorded = adapter_config.get("base_model_name_or_path")
    if not recorded:
        return  # nothing recorded: only the shape checks can tell
    hint = "; pass --allow-base-mismatch to merge anyway"
    recorded_dir = Path(str(recorded)).expanduser()
    if (recorded_dir / "config.json").is_file():
        if recorded_dir.resolve() == base.resolve():
            return
        theirs, ours = model_config(recorded_dir), model_config(base)
        differing = [key for key in _SHAPE_KEYS if theirs.get(key) != ours.get(key)]
        if differing:
            raise MergeInputError(
                f"adapter was trained on {recorded_dir}, a different architecture than {base} "
                f"({', '.join(differing)} differ){hint}"
            )
        if _weights_fingerprint(recorded_dir) != _weights_fingerprint(base):
            raise MergeInputError(f"adapter was trained on {recorded_dir}, whose weights differ from {base}{hint}")
        return
    # A hub id or a path from another machine: compare names ("org/Model-X" matches a folder "model-x").
    if Path(str(recorded)).name.lower() not in _model_names(base):
        raise MergeInputError(f"adapter was trained on {recorded!r}, not on {base}{hint}")


def _adapter_tensor_shapes(adapter_dir: Path) -> dict[str, list[int]]:
    weights = adapter_dir / ADAPTER_WEIGHTS[0]
    if weights.is_file():
        from safetensors import safe_open

        try:
            with safe_open(str(weights), framework="pt") as handle:
                return {name: list(handle.get_slice(name).get_shape()) for name in handle.keys()}
        except Exception as exc:  # safetensors raises its own error types for a corrupt header
            raise MergeInputError(f"{weights}: unreadable safetensors ({exc})") from exc
    import torch

    state = torch.load(adapter_dir / ADAPTER_WEIGHTS[1], map_location="meta", weights_only=True)
    return {name: list(tensor.shape) for name, tensor in state.items()}


def check_adapter_shapes(model: torch.nn.Module, adapter_dir: Path) -> int:
    """Every LoRA tensor must target an existing layer of matching size; returns the number of LoRA layers.

    Done before peft loads the adapter because peft only warns about keys that match nothing and
    fails on a size mismatch with a long traceback.
    """
    modules = dict(model.named_modules())
    params = dict(model.named_parameters())
    layers: set[str] = set()
    for key, shape in _adapter_tensor_shapes(adapter_dir).items():
        name = key.removeprefix("base_model.model.")
        if ".lora_" not in name:
            if name in params and list(params[name].shape) != shape:
                raise MergeInputError(
                    f"adapter tensor {key} has shape {shape}, the base's {name} has {list(params[name].shape)}"
                )
            continue
        module_name, _, rest = name.partition(".lora_")
        module = modules.get(module_name)
        if module is None:
            raise MergeInputError(f"adapter targets {module_name}, which the base model does not have")
        layers.add(module_name)
        if not _lora_shape_fits(module, rest.split(".")[0], shape):
            raise MergeInputError(
                f"adapter tensor {key} has shape {shape}, which does not fit the base's {module_name} "
                f"({type(module).__name__} {list(module.weight.shape)}): the adapter was made for another base"
            )
    if not layers:
        raise MergeInputError(f"{adapter_dir}: the adapter holds no LoRA weights")
    return len(layers)


def _lora_shape_fits(module: torch.nn.Module, kind: str, shape: list[int]) -> bool:
    """Whether a LoRA tensor of `kind` ("A", "B", "embedding_A", ...) fits `module` (rank is free)."""
    import torch

    if isinstance(module, torch.nn.Linear):
        expected = {"A": [None, module.in_features], "B": [module.out_features, None]}.get(kind)
    elif isinstance(module, torch.nn.Embedding):
        expected = {"embedding_A": [None, module.num_embeddings], "embedding_B": [module.embedding_dim, None]}.get(kind)
    else:
        expected = None
    if expected is None:
        return True  # a layer type or tensor we do not know: peft's own load decides
    return len(shape) == 2 and all(want is None or want == got for want, got in zip(expected, shape, strict=True))


def check_out_dir(out: Path, *, force: bool, inputs: list[Path]) -> Path:
    out = out.expanduser().resolve()
    for path in inputs:
        path = path.resolve()
        if out == path or out in path.parents:
            raise MergeInputError(f"--out {out} would overwrite the input {path}")
    if out.exists() and not out.is_dir():
        raise MergeInputError(f"--out {out} is a file")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise MergeInputError(f"--out {out} is not empty (pass --force to replace it)")
    return out
