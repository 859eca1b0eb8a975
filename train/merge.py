"""Merge a LoRA adapter into its base model and prove the merge is faithful.

    python -m train.merge --adapter CHECKPOINT --out-dir DIR [--base-model PATH] [--dtype bf16|fp32] [--force]

`CHECKPOINT` is a PEFT adapter folder (`adapter_config.json` + `adapter_model.safetensors`), or an
ART model folder whose `checkpoints/NNNN/` hold them (the latest step is taken). The base defaults to
the folder the adapter records as `base_model_name_or_path` (else the embedded model when the names
agree). The result is a plain safetensors folder with the base's tokenizer and mcpgym's tool-aware
chat template, which vLLM serves and transformers loads as is.

Verification, before anything is published: a fixed probe batch (tool-calling chats rendered with the
chat template) runs through base+adapter in float32; the merged model, after it was saved and
loaded back from disk in its final dtype, must reproduce those logits within a tolerance that depends
on the dtype (bfloat16 rounding is real). A failure exits 1 with the max abs diff and leaves no output.
Bad input (a missing adapter, an adapter made for another base, a non-empty --out) is one line, exit 2.
Everything is written to a temporary sibling of `--out` and renamed into place at the end.
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import json
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, Field

from common.cli import ArgumentParser, UsageError, fail, run_cli
from common.flags import add_flag
from train.models import (
    BASE_MODEL_NAME,
    MANIFEST_FILE,
    base_model_dir,
    ensure_base_model,
    install_chat_template,
    load_tokenizer,
    publish_dir,
)

if TYPE_CHECKING:
    import torch

MergeDtype = Literal["bf16", "fp32"]
MERGE_REPORT_FILE = "mcpgym_merge.json"
ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = ("adapter_model.safetensors", "adapter_model.bin")
# Max abs logit difference allowed between the saved merge (loaded back, computed in float32) and
# base+adapter in float32. float32: merging only re-associates sums (measured 5e-7 on the tiny model,
# 1e-4 on SmolLM2-135M). bfloat16: rounding every weight to 8 mantissa bits alone moves SmolLM2's logits
# by about 1, so there the bar is only a sanity bound. What proves a bfloat16 merge right are the two
# exact checks that always run: the in-memory float32 merge is held to the float32 bar before the cast,
# and the saved folder must load back to exactly the weights that were verified.
DEFAULT_TOLERANCE: dict[str, float] = {"fp32": 1e-3, "bf16": 2.0}
MERGE_TOLERANCE = DEFAULT_TOLERANCE["fp32"]

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


class MergeVerificationError(RuntimeError):
    """The merged model does not reproduce base+adapter: exit 1, nothing published."""

    def __init__(self, message: str, max_abs_diff: float) -> None:
        super().__init__(message)
        self.max_abs_diff = max_abs_diff


class MergeReport(BaseModel):
    """What a merge did and how closely the saved result matches base+adapter (also saved as JSON)."""

    base_model: Path
    adapter: Path
    out: Path
    dtype: MergeDtype
    adapter_base: str | None = Field(description="the base the adapter records (base_model_name_or_path)")
    rank: int
    lora_alpha: float
    target_modules: list[str]
    merged_modules: int = Field(description="LoRA layers folded into the base weights")
    probe_tokens: int
    adapter_effect: float = Field(description="max abs logit change the adapter causes on the probe")
    merge_max_abs_diff: float = Field(description="in-memory float32 merge vs base+adapter")
    max_abs_diff: float = Field(description="saved folder (reloaded, in `dtype`) vs base+adapter")
    tolerance: float
    top1_agreement: float = Field(description="share of probe positions where the argmax token agrees")
    seconds: float


# --------------------------------------------------------------------------- input checks


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


def _model_config(model_dir: Path) -> dict[str, Any]:
    try:
        return json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise MergeInputError(f"{model_dir}: not a model folder (config.json: {exc})") from exc


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
        theirs, ours = _model_config(recorded_dir), _model_config(base)
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
    import torch

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
        kind = rest.split(".")[0]
        if isinstance(module, torch.nn.Linear):
            expected = {"A": [None, module.in_features], "B": [module.out_features, None]}.get(kind)
        elif isinstance(module, torch.nn.Embedding):
            expected = {
                "embedding_A": [None, module.num_embeddings],
                "embedding_B": [module.embedding_dim, None],
            }.get(kind)
        else:
            expected = None
        if expected is not None and (
            len(shape) != 2 or any(want is not None and want != got for want, got in zip(expected, shape, strict=True))
        ):
            raise MergeInputError(
                f"adapter tensor {key} has shape {shape}, which does not fit the base's {module_name} "
                f"({type(module).__name__} {list(module.weight.shape)}): the adapter was made for another base"
            )
    if not layers:
        raise MergeInputError(f"{adapter_dir}: the adapter holds no LoRA weights")
    return len(layers)


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


# --------------------------------------------------------------------------- probe


# Tool-calling chats in the shape the policy is trained on: tools in the system turn, calls, results.
# Only the first carries the tool schemas, to keep the probe short (it runs three times, on the CPU).
_PROBE_TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_price",
            "description": "Electricity spot price for a zone and hour.",
            "parameters": {
                "type": "object",
                "properties": {"zone": {"type": "string"}, "hour": {"type": "integer"}},
                "required": ["zone", "hour"],
            },
        },
    }
]
_PROBE_CHATS: list[list[dict[str, Any]]] = [
    [
        {"role": "user", "content": "What was the spot price in zone DE at 14:00?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"type": "function", "function": {"name": "get_price", "arguments": '{"zone": "DE", "hour": 14}'}}
            ],
        },
        {"role": "tool", "content": '{"eur_per_mwh": 81.5}'},
        {"role": "assistant", "content": "The spot price in DE at 14:00 was 81.5 EUR/MWh."},
    ],
    [
        {"role": "system", "content": "You are an energy analyst. Use the tools."},
        {"role": "user", "content": "Compare FR at 3am with FR at 6pm."},
    ],
    [{"role": "user", "content": "Hello! Who are you?"}, {"role": "assistant", "content": "I am a helpful assistant."}],
]


def probe_batch(tokenizer: Any) -> dict[str, torch.Tensor]:
    """The fixed probe: chat-templated, right-padded, with an attention mask."""
    texts = [
        tokenizer.apply_chat_template(chat, tools=_PROBE_TOOLS if index == 0 else None, tokenize=False)
        for index, chat in enumerate(_PROBE_CHATS)
    ]
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "right"
    batch = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
    return {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}


def _logits(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    import torch

    device = next(model.parameters()).device
    with torch.no_grad():
        out = model(**{key: value.to(device) for key, value in batch.items()})
    mask = batch["attention_mask"].bool()
    return out.logits.float().cpu()[mask]  # only real tokens: padded positions are undefined


def _max_abs_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max())


# --------------------------------------------------------------------------- merge


def _torch_dtype(dtype: MergeDtype) -> torch.dtype:
    import torch

    return {"bf16": torch.bfloat16, "fp32": torch.float32}[dtype]


def default_dtype(base: Path) -> MergeDtype:
    """Keep the base's precision: bf16 for half-precision checkpoints, fp32 otherwise (the embedded model)."""
    config = _model_config(base)
    saved = str(config.get("dtype") or config.get("torch_dtype") or "float32")
    return "bf16" if saved in {"bfloat16", "float16"} else "fp32"


@contextlib.contextmanager
def _quiet_transformers() -> Iterator[None]:
    """transformers' own per-file progress bars would drown the merge's progress lines."""
    from transformers.utils import logging as hf_logging

    enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if enabled:
            hf_logging.enable_progress_bar()


def merge_lora(
    base: Path | str | None,
    adapter: Path | str,
    out: Path | str,
    dtype: MergeDtype | None = None,
    *,
    force: bool = False,
    tolerance: float | None = None,
    allow_base_mismatch: bool = False,
    progress: bool = True,
) -> MergeReport:
    """Merge the LoRA `adapter` into `base` (None: the adapter's recorded base), verify, save to `out`.

    Raises `MergeInputError` for unusable inputs and `MergeVerificationError` when the saved merge
    does not reproduce base+adapter within `tolerance` (default per dtype, `DEFAULT_TOLERANCE`).
    """
    started = time.perf_counter()

    def log(message: str) -> None:
        if progress:
            print(f"merge [{time.perf_counter() - started:6.1f}s] {message}", file=sys.stderr, flush=True)

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
    # Heavy imports only once the cheap checks passed: bad input fails in well under a second.
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    device = "cuda" if torch.cuda.is_available() else "cpu"

    with _quiet_transformers():
        log(f"loading base {base_dir} (float32, {device})")
        model = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32).to(device).eval()
        tokenizer = load_tokenizer(base_dir)
        batch = probe_batch(tokenizer)
        merged_modules = check_adapter_shapes(model, adapter_dir)
        base_logits = _logits(model, batch)

        log(f"loading adapter {adapter_dir} ({merged_modules} LoRA layers)")
        try:
            peft_model = PeftModel.from_pretrained(model, adapter_dir, is_trainable=False)
        except (RuntimeError, ValueError, KeyError) as exc:  # size mismatch and friends, past our checks
            raise MergeInputError(f"adapter {adapter_dir} does not load into {base_dir}: {exc}") from exc
        peft_model.eval()
        reference = _logits(peft_model, batch)
        adapter_effect = _max_abs_diff(reference, base_logits)
        if adapter_effect == 0.0:
            log("note: the adapter does not change the base's outputs (all-zero LoRA B?)")

        log("merging (merge_and_unload, safe_merge)")
        merged = peft_model.merge_and_unload(safe_merge=True)
        merge_diff = _max_abs_diff(_logits(merged, batch), reference)
        if merge_diff > MERGE_TOLERANCE:
            raise MergeVerificationError(
                f"merge verification failed: in-memory float32 merge differs from base+adapter by "
                f"max abs diff {merge_diff:.3g} > {MERGE_TOLERANCE:g}",
                merge_diff,
            )
        merged = merged.to(_torch_dtype(dtype))
        merged.config.dtype = _torch_dtype(dtype)
        del peft_model, model  # the same modules as `merged` now: merge_and_unload works in place

        out_dir.parent.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".{out_dir.name}.tmp-"))
        try:
            log(f"saving {dtype} safetensors, tokenizer and chat template")
            merged.save_pretrained(work)
            tokenizer.save_pretrained(work)
            install_chat_template(work)
            log("verifying the saved folder against base+adapter")
            # Loaded back in float32: bf16 weights are exact in float32, and float32 compute is both
            # what vLLM does on the CPU and far faster there than bfloat16 matmuls.
            reloaded = AutoModelForCausalLM.from_pretrained(work, dtype=torch.float32).to(device).eval()
            _check_same_weights(reloaded, merged)
            del merged
            gc.collect()
            saved_logits = _logits(reloaded, batch)
            del reloaded
            diff = _max_abs_diff(saved_logits, reference)
            agreement = float((saved_logits.argmax(-1) == reference.argmax(-1)).float().mean())
            if not diff <= tolerance:  # also catches NaN
                raise MergeVerificationError(
                    f"merge verification failed: the saved {dtype} model differs from base+adapter by "
                    f"max abs diff {diff:.3g} > tolerance {tolerance:g} (top-1 agreement {agreement:.1%})",
                    diff,
                )
            report = MergeReport(
                base_model=base_dir,
                adapter=adapter_dir.resolve(),
                out=out_dir,
                dtype=dtype,
                adapter_base=adapter_config.get("base_model_name_or_path"),
                rank=int(adapter_config.get("r", 0)),
                lora_alpha=float(adapter_config.get("lora_alpha", 0)),
                target_modules=sorted(_as_list(adapter_config.get("target_modules"))),
                merged_modules=merged_modules,
                probe_tokens=int(batch["attention_mask"].sum()),
                adapter_effect=adapter_effect,
                merge_max_abs_diff=merge_diff,
                max_abs_diff=diff,
                tolerance=tolerance,
                top1_agreement=agreement,
                seconds=round(time.perf_counter() - started, 2),
            )
            (work / MERGE_REPORT_FILE).write_text(report.model_dump_json(indent=2) + "\n", encoding="utf-8")
            publish_dir(work, out_dir)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    log(f"done: {out_dir} (max abs diff {diff:.3g} <= {tolerance:g}, adapter effect {adapter_effect:.3g})")
    return report


def _check_same_weights(reloaded: torch.nn.Module, merged: torch.nn.Module) -> None:
    """The saved folder must hold exactly the weights that were verified (nothing lost or re-tied)."""
    saved = reloaded.state_dict()
    for name, tensor in merged.state_dict().items():
        other = saved.get(name)
        if other is None or other.shape != tensor.shape or not other.equal(tensor.to(other.dtype)):
            raise MergeVerificationError(f"merge verification failed: the saved folder's {name} differs", float("inf"))


def _as_list(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]  # peft also accepts a regex string
    return [str(item) for item in value]


# --------------------------------------------------------------------------- CLI


def _parser() -> ArgumentParser:
    parser = ArgumentParser(
        prog="python -m train.merge",
        description=(
            "Merge a LoRA adapter into its base model, save safetensors + tokenizer + mcpgym's chat template, "
            "and verify that the saved model reproduces base+adapter on a probe batch."
        ),
    )
    parser.add_argument(
        "--adapter",
        type=Path,
        required=True,
        help="PEFT adapter folder, or an ART model folder (its latest checkpoints/NNNN is used)",
    )
    add_flag(parser, "--out-dir", type=Path, required=True, aliases=("--out",), help="the merged model (must be empty)")
    add_flag(
        parser,
        "--base-model",
        type=Path,
        default=None,
        help=f"base model folder; default: the adapter's recorded base, or the embedded model ({base_model_dir()})",
    )
    parser.add_argument(
        "--dtype", choices=["bf16", "fp32"], default=None, help="weights dtype of the result; default: the base's"
    )
    parser.add_argument("--force", action="store_true", help="replace a non-empty --out-dir")
    parser.add_argument(
        "--tolerance",
        type=float,
        default=None,
        help=f"max abs logit diff allowed vs base+adapter; default per dtype {DEFAULT_TOLERANCE}",
    )
    parser.add_argument(
        "--allow-base-mismatch",
        action="store_true",
        help="merge even if the adapter records another base (shape checks still apply)",
    )
    add_flag(parser, "--no-progress", aliases=("--quiet",), help="no progress lines on stderr")
    return parser


def main(argv: list[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    try:
        report = merge_lora(
            args.base_model,
            args.adapter,
            args.out_dir,
            args.dtype,
            force=args.force,
            tolerance=args.tolerance,
            allow_base_mismatch=args.allow_base_mismatch,
            progress=not args.no_progress,
        )
    except MergeInputError as exc:
        fail(f"error: {exc}")
    except MergeVerificationError as exc:
        fail(f"error: {exc}", code=1)
    print(report.out)


if __name__ == "__main__":
    run_cli(main)
