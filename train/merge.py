"""Merge a LoRA adapter into its base model and prove the merge is faithful.

    python -m train.merge --adapter CHECKPOINT --out-dir DIR [--base-model PATH] [--dtype bf16|fp32] [--force]
        [--env energy]

`CHECKPOINT` is a PEFT adapter folder (`adapter_config.json` + `adapter_model.safetensors`), or an
ART model folder whose `checkpoints/NNNN/` hold them (the latest step is taken). The base defaults to
the folder the adapter records as `base_model_name_or_path` (else the embedded model when the names
agree). The result is a plain safetensors folder with the base's tokenizer and mcpgym's tool-aware
chat template, which vLLM serves and transformers loads as is.

Verification, before anything is published: a probe batch (chats of the `--env`'s own tasks, with its
system prompt, tools and tool results, rendered with the chat template; train.merge_probe) runs
through base+adapter in float32; the merged model, after it was saved and loaded back from disk in
its final dtype, must reproduce those logits within a tolerance that depends on the dtype (bfloat16
rounding is real). A failure exits 1 with the max abs diff and leaves no output. Bad input (a missing
adapter, an adapter made for another base, a non-empty --out; train.merge_inputs) is one line, exit 2.
Everything is written to a temporary sibling of `--out` and renamed into place at the end.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field

from common.cli import ArgumentParser, fail, run_cli
from common.flags import add_flag
from contracts import EnvInfraError
from train.merge_inputs import (
    DEFAULT_TOLERANCE,
    MergeDtype,
    MergeInputError,
    MergeInputs,
    check_adapter_shapes,
    check_inputs,
    default_dtype,
    resolve_adapter_dir,
)
from train.merge_probe import (
    MergeVerificationError,
    check_in_memory,
    check_same_weights,
    check_saved,
    load_env,
    logits,
    max_abs_diff,
    probe_batch,
    probe_chats,
)
from train.models import base_model_dir, install_chat_template, load_tokenizer, publish_dir

if TYPE_CHECKING:
    import torch

__all__ = [
    "DEFAULT_TOLERANCE",
    "MERGE_REPORT_FILE",
    "MERGE_TOLERANCE",
    "MergeDtype",
    "MergeInputError",
    "MergeReport",
    "MergeVerificationError",
    "default_dtype",
    "main",
    "merge_lora",
    "resolve_adapter_dir",
]

MERGE_REPORT_FILE = "mcpgym_merge.json"
MERGE_TOLERANCE = DEFAULT_TOLERANCE["fp32"]  # the in-memory float32 merge, before any cast
DEFAULT_ENV = "energy"


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


@dataclass
class _InMemory:
    """The float32 merge, cast to the final dtype, and what the probe measured on the way."""

    merged: Any  # the merged transformers model
    tokenizer: Any
    batch: dict[str, torch.Tensor]
    reference: torch.Tensor  # base+adapter logits on the probe, float32
    merged_modules: int
    adapter_effect: float
    merge_diff: float


class _Log:
    """Progress lines on stderr, stamped with the seconds since the merge started."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.started = time.perf_counter()

    def __call__(self, message: str) -> None:
        if self.enabled:
            print(f"merge [{self.elapsed():6.1f}s] {message}", file=sys.stderr, flush=True)

    def elapsed(self) -> float:
        return time.perf_counter() - self.started


def _torch_dtype(dtype: MergeDtype) -> torch.dtype:
    import torch

    return {"bf16": torch.bfloat16, "fp32": torch.float32}[dtype]


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
    env: str = DEFAULT_ENV,
) -> MergeReport:
    """Merge the LoRA `adapter` into `base` (None: the adapter's recorded base), verify, save to `out`.

    The probe chats come from the env `env` (an `envs.load` spec), collected in an event loop of
    its own (`asyncio.run`): call this from sync code, or from a worker thread. Raises `MergeInputError` for
    unusable inputs and `MergeVerificationError` when the saved merge does not reproduce
    base+adapter within `tolerance` (default per dtype, `DEFAULT_TOLERANCE`).
    """
    log = _Log(progress)
    inputs = check_inputs(
        base, adapter, out, dtype, force=force, tolerance=tolerance, allow_base_mismatch=allow_base_mismatch
    )
    environment = load_env(env)
    # Heavy imports only once the cheap checks passed: bad input fails in well under a second.
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    with _quiet_transformers():
        state = _merge_in_memory(inputs, environment, device, log)
        out_dir = inputs.out_dir
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".{out_dir.name}.tmp-"))
        try:
            log(f"saving {inputs.dtype} safetensors, tokenizer and chat template")
            state.merged.save_pretrained(work)
            state.tokenizer.save_pretrained(work)
            install_chat_template(work)
            diff, agreement = _verify_saved(work, state, inputs, device, log)
            report = _report(inputs, state, diff=diff, agreement=agreement, seconds=log.elapsed())
            (work / MERGE_REPORT_FILE).write_text(report.model_dump_json(indent=2) + "\n", encoding="utf-8")
            publish_dir(work, out_dir)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    log(f"done: {out_dir} (max abs diff {diff:.3g} <= {inputs.tolerance:g}, adapter effect {state.adapter_effect:.3g})")
    return report


def _merge_in_memory(inputs: MergeInputs, environment: Any, device: str, log: _Log) -> _InMemory:
    """Base and base+adapter on the probe, then the float32 merge held to the float32 bar and cast."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    log(f"loading base {inputs.base_dir} (float32, {device})")
    model = AutoModelForCausalLM.from_pretrained(inputs.base_dir, dtype=torch.float32).to(device).eval()
    tokenizer = load_tokenizer(inputs.base_dir)
    merged_modules = check_adapter_shapes(model, inputs.adapter_dir)
    batch = probe_batch(tokenizer, asyncio.run(probe_chats(environment)))
    base_logits = logits(model, batch)

    log(f"loading adapter {inputs.adapter_dir} ({merged_modules} LoRA layers)")
    try:
        peft_model = PeftModel.from_pretrained(model, inputs.adapter_dir, is_trainable=False)
    except (RuntimeError, ValueError, KeyError) as exc:  # size mismatch and friends, past our checks
        raise MergeInputError(f"adapter {inputs.adapter_dir} does not load into {inputs.base_dir}: {exc}") from exc
    peft_model.eval()
    reference = logits(peft_model, batch)
    adapter_effect = max_abs_diff(reference, base_logits)
    if adapter_effect == 0.0:
        log("note: the adapter does not change the base's outputs (all-zero LoRA B?)")

    log("merging (merge_and_unload, safe_merge)")
    merged = peft_model.merge_and_unload(safe_merge=True)
    merge_diff = check_in_memory(logits(merged, batch), reference, tolerance=MERGE_TOLERANCE)
    merged = merged.to(_torch_dtype(inputs.dtype))
    merged.config.dtype = _torch_dtype(inputs.dtype)
    del peft_model, model  # the same modules as `merged` now: merge_and_unload works in place
    return _InMemory(merged, tokenizer, batch, reference, merged_modules, adapter_effect, merge_diff)


def _verify_saved(work: Path, state: _InMemory, inputs: MergeInputs, device: str, log: _Log) -> tuple[float, float]:
    """The saved folder loads back to exactly the merged weights and reproduces base+adapter on the
    probe; returns (max abs diff, top-1 agreement). Frees the in-memory merge on the way."""
    import torch
    from transformers import AutoModelForCausalLM

    log("verifying the saved folder against base+adapter")
    # Loaded back in float32: bf16 weights are exact in float32, and float32 compute is both
    # what vLLM does on the CPU and far faster there than bfloat16 matmuls.
    reloaded = AutoModelForCausalLM.from_pretrained(work, dtype=torch.float32).to(device).eval()
    check_same_weights(reloaded, state.merged)
    state.merged = None  # the last reference: the forward pass below runs without a second model
    gc.collect()
    saved_logits = logits(reloaded, state.batch)
    del reloaded
    return check_saved(saved_logits, state.reference, tolerance=inputs.tolerance, dtype=inputs.dtype)


def _report(inputs: MergeInputs, state: _InMemory, *, diff: float, agreement: float, seconds: float) -> MergeReport:
    config = inputs.adapter_config
    return MergeReport(
        base_model=inputs.base_dir,
        adapter=inputs.adapter_dir.resolve(),
        out=inputs.out_dir,
        dtype=inputs.dtype,
        adapter_base=config.get("base_model_name_or_path"),
        rank=int(config.get("r", 0)),
        lora_alpha=float(config.get("lora_alpha", 0)),
        target_modules=sorted(_as_list(config.get("target_modules"))),
        merged_modules=state.merged_modules,
        probe_tokens=int(state.batch["attention_mask"].sum()),
        adapter_effect=state.adapter_effect,
        merge_max_abs_diff=state.merge_diff,
        max_abs_diff=diff,
        tolerance=inputs.tolerance,
        top1_agreement=agreement,
        seconds=round(seconds, 2),
    )


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
    parser.add_argument(
        "--env", default=DEFAULT_ENV, help="env whose tasks make the probe chats (name, mcp.json or module:factory)"
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
            env=args.env,
        )
    except MergeInputError as exc:
        fail(f"error: {exc}")
    except MergeVerificationError as exc:
        fail(f"error: {exc}", code=1)
    except EnvInfraError as exc:  # the probe's env failed to run: not the inputs' fault
        fail(f"error: --env {args.env}: {exc}", code=1)
    print(report.out)


if __name__ == "__main__":
    run_cli(main)
