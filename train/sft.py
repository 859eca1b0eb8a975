"""SFT warm start from the rollout trajectories: the same JSONL that judges score and GRPO groups.

    python -m train.sft --env energy --trajectories data/trajectories.jsonl --min-reward 0.8

Filters the rollouts by reward (infra failures never), de-duplicates, optionally picks a coreset
and mixes in a replay buffer of earlier SFT data, then trains the LoRA through the backend's SFT
entry (`Backend._train_sft`, what `model.train_sft` calls): one ART step, saved as the next
checkpoint `.art/{project}/models/{name}/checkpoints/{step:04d}/`. Loss is on assistant tokens
only (text, tool calls, end of turn), never on the prompt or tool outputs. Every batch's metrics
are appended to `sft_metrics.jsonl` as they come; the loss curve goes to `sft_loss.png`.

`run_sft` is the library entry (async), used by this CLI and by GRPO's warm start.
"""

from __future__ import annotations

import asyncio
import math
import random
import sys
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from common.cli import ArgumentParser, UsageError, run_cli
from common.config_flags import config_from_args as config_fields_from_args
from common.flags import add_flag, apply_no_progress, wandb_wanted
from rollouts.jsonl import JsonlAppender
from train.backends import BACKENDS, BACKENDS_HELP, BackendKind
from train.backends.local import check_gpu_flags, gpu_ids
from train.data import (
    CORESET_METHODS,
    CoresetMethod,
    SFTDataError,
    dedupe,
    load_sft_trajectories,
    mix_replay,
    read_trajectories,
    select_coreset,
    usable,
)


class SFTConfig(BaseModel):
    trajectories: Path = Field(description="rollout JSONL (rollouts.generate output, scored)")
    env: str | None = Field(None, description="use only trajectories of this env")
    min_reward: float | None = Field(
        0.8, description="keep trajectories with reward >= this (None: any, scored or not)"
    )
    success_only: bool = False
    base_model: str | None = Field(None, description="model folder (torch) or HF id (local); default: embedded model")
    backend: BackendKind = "torch"
    trainer_gpus: list[int] | None = Field(None, description="local: ART's dedicated mode, training on these GPUs")
    inference_gpus: list[int] | None = Field(None, description="local: ART's dedicated mode, vLLM on this GPU")
    name: str = Field("sft", min_length=1, description="ART model name (checkpoints and served adapter name)")
    project: str | None = Field(None, description="ART project; default: the env, else 'mcpgym'")
    art_path: Path = Path(".art")
    epochs: int = Field(2, ge=1)
    lr: float = Field(2e-4, gt=0)
    lr_schedule: Literal["cosine", "linear", "constant"] = "cosine"
    warmup_ratio: float = Field(0.05, ge=0, lt=1)
    batch_size: int = Field(4, ge=1)
    lora_rank: int = Field(8, ge=1, le=512)
    detach_prompt: bool = Field(False, description="torch: no gradient through the prompt a batch shares (faster)")
    max_length: int = Field(2048, ge=16, description="longer examples are dropped")
    coreset: CoresetMethod | None = None
    coreset_size: int | None = Field(None, ge=1)
    replay: Path | None = Field(None, description="JSONL of earlier SFT trajectories to mix in")
    replay_ratio: float = Field(0.2, ge=0, lt=1, description="share of the mix taken from --replay")
    seed: int = 0
    out_dir: Path | None = Field(None, description="metrics + plot; default: the model's folder under art_path")
    wandb: bool = Field(False, description="log ART's training metrics to W&B (off unless given, or MCPGYM_WANDB=1)")
    no_progress: bool = False


class SFTResult(BaseModel):
    adapter_dir: Path
    step: int
    losses: list[float]
    metrics_path: Path
    plot_path: Path | None
    model_name: str
    inference_name: str
    num_examples: int
    num_replay: int = 0
    num_dropped: int = 0


def select_data(config: SFTConfig, *, base_model: str) -> tuple[list[Any], int]:
    """The rollout trajectories to train on (filtered, deduplicated, coreset, replay) and how many are replay."""
    trajs = load_sft_trajectories(
        config.trajectories, min_reward=config.min_reward, env=config.env, success_only=config.success_only
    )
    if config.coreset is not None:
        if config.coreset_size is None:
            raise SFTDataError("--coreset needs --coreset-size")
        losses = None
        if config.coreset in ("loss_topk", "hybrid"):
            from train.sft_report import example_losses

            def losses(items: Any) -> list[float]:
                return example_losses(
                    base_model, items, max_length=config.max_length, mcpgym_template=config.backend == "torch"
                )

        trajs = select_coreset(trajs, config.coreset_size, config.coreset, seed=config.seed, losses=losses)
    replayed = 0
    if config.replay is not None:
        earlier = [traj for traj in read_trajectories(config.replay) if usable(traj, min_reward=None)]
        trajs, replayed = mix_replay(trajs, dedupe(earlier), config.replay_ratio, seed=config.seed)
    return trajs, replayed


def _default_base_model(config: SFTConfig) -> str:
    if config.base_model is not None:
        return config.base_model
    if config.backend != "torch":
        raise UsageError(f"--backend {config.backend} needs --base-model (a Hugging Face model id or folder)")
    from train.models import ensure_base_model

    return str(ensure_base_model())


async def run_sft(config: SFTConfig, *, backend: Any = None, model: Any = None) -> SFTResult:
    """Select the data, train one SFT step through `backend` and report it.

    With `model` (an `art.TrainableModel`, registered or not) its base model and name are used and
    its next checkpoint is written; a served model gets the new adapter loaded as `name@step`.
    Without `backend`, one is made from `config.backend` and closed at the end."""
    base_model = model.base_model if model is not None else _default_base_model(config)
    if config.backend == "torch" and model is None:
        from train.backends.errors import check_base_model

        check_base_model(base_model)
    trajs, replayed = select_data(config, base_model=base_model)
    print(f"sft: {len(trajs)} trajectories ({replayed} replayed) from {config.trajectories}", file=sys.stderr)

    # After the data checks: bad input fails fast, without art's ~15 s import.
    from train import art_adapter as adapter

    owns_backend = backend is None
    if backend is None:
        backend = _open_backend(config)
    try:
        if model is None:
            project = config.project or config.env or "mcpgym"
            model = adapter.make_model(
                config.name,
                project,
                base_model,
                kind=config.backend,
                max_seq_length=config.max_length,
                wandb=wandb_wanted(config.wandb),
                trainer_gpus=config.trainer_gpus,
                inference_gpus=config.inference_gpus,
            )
        await _register(model, backend, config)
        examples = [adapter.to_sft_trajectory(traj) for traj in trajs]
        ordered = epoch_order(examples, config.epochs, seed=config.seed)
        out_dir = config.out_dir or adapter.model_folder(model) / "sft"
        out_dir.mkdir(parents=True, exist_ok=True)
        batches_per_epoch = max(1, math.ceil(len(examples) / config.batch_size))
        metrics_path = out_dir / "sft_metrics.jsonl"
        losses, dropped = await _train(backend, model, ordered, config, metrics_path, batches_per_epoch)
        if dropped >= len(ordered):
            raise SFTDataError(f"every example is longer than --max-length {config.max_length} tokens")
        step = await adapter.current_step(model)
        plot_path = await _report_losses(model, losses, step, out_dir, batches_per_epoch)
        return SFTResult(
            adapter_dir=adapter.model_checkpoint(model, step),
            step=step,
            losses=losses,
            metrics_path=metrics_path,
            plot_path=plot_path,
            model_name=model.name,
            inference_name=adapter.served_name(model, step),
            num_examples=len(trajs),
            num_replay=replayed,
            num_dropped=dropped // max(1, config.epochs),
        )
    finally:
        if owns_backend:
            await backend.close()


async def _register(model: Any, backend: Any, config: SFTConfig) -> None:
    """Register a model not registered yet; on the torch backend for training only (SFT needs no
    inference server)."""
    from train import art_adapter as adapter

    if not adapter.is_registered(model):
        await adapter.register(model, backend, serve=config.backend != "torch")


def _open_backend(config: SFTConfig) -> Any:
    """The ART backend `config.backend` names, with the LoRA and GPU settings of this run."""
    from train import art_adapter as adapter

    return adapter.open_backend(
        config.backend,
        art_path=config.art_path,
        lora_rank=config.lora_rank,
        trainer_gpus=config.trainer_gpus,
        inference_gpus=config.inference_gpus,
        sft_detach_prompt=config.detach_prompt,
    )


def epoch_order(examples: list[Any], epochs: int, *, seed: int) -> list[Any]:
    """Every example once per epoch, each epoch shuffled anew (one seeded generator for all)."""
    rng = random.Random(seed)
    ordered: list[Any] = []
    for _ in range(epochs):
        epoch = list(examples)
        rng.shuffle(epoch)
        ordered += epoch
    return ordered


async def _train(
    backend: Any, model: Any, ordered: list[Any], config: SFTConfig, metrics_path: Path, batches_per_epoch: int
) -> tuple[list[float], int]:
    """The SFT batches through the backend, each batch's metrics appended to `metrics_path` as it
    comes; returns (loss per batch, examples dropped as too long)."""
    from train import art_adapter as adapter

    total_batches = math.ceil(len(ordered) / config.batch_size)
    schedule = adapter.lr_schedule(
        total_batches,
        config.lr,
        method=config.lr_schedule,
        warmup_steps=int(total_batches * config.warmup_ratio),
    )
    losses: list[float] = []
    dropped = 0
    with JsonlAppender(metrics_path) as metrics_file:
        async for metrics in adapter.sft_batches(
            backend, model, ordered, learning_rates=schedule, batch_size=config.batch_size
        ):
            losses.append(float(metrics["loss/train"]))
            dropped = int(metrics.get("data/step_num_dropped_trajectories", 0))
            metrics_file.write(
                {"model": model.name, "batch": len(losses), "epoch": (len(losses) - 1) // batches_per_epoch + 1}
                | metrics
            )
    return losses, dropped


async def _report_losses(
    model: Any, losses: list[float], step: int, out_dir: Path, batches_per_epoch: int
) -> Path | None:
    """The mean loss logged to the model (ART's metrics, W&B when on) and the loss curve plotted."""
    if not losses:
        return None
    from train import art_adapter as adapter
    from train.sft_report import plot_losses

    await adapter.log_train_metrics(model, {"loss/train": sum(losses) / len(losses)}, step)

    return plot_losses(losses, out_dir / "sft_loss.png", batches_per_epoch=batches_per_epoch, title=f"SFT {model.name}")


def run_sft_sync(config: SFTConfig, **kwargs: Any) -> SFTResult:
    """`run_sft` from code that has no event loop running."""
    return asyncio.run(run_sft(config, **kwargs))


# --------------------------------------------------------------------------- CLI


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(
        prog="python -m train.sft",
        description="SFT warm start of the LoRA on good rollout trajectories (loss on assistant tokens only).",
    )
    data = parser.add_argument_group("data")
    data.add_argument("--trajectories", type=Path, required=True, help="rollout JSONL (rollouts.generate, scored)")
    data.add_argument("--env", default=None, help="use only trajectories of this env; also the default project")
    data.add_argument("--min-reward", type=float, default=0.8, help="keep trajectories with reward >= X")
    data.add_argument("--success-only", action="store_true", help="keep only trajectories the env verified")
    data.add_argument("--coreset", choices=CORESET_METHODS, default=None, help="select a subset this way")
    data.add_argument("--coreset-size", type=int, default=None, help="target size of the coreset")
    data.add_argument("--replay", type=Path, default=None, help="JSONL of earlier SFT data to mix in")
    data.add_argument("--replay-ratio", type=float, default=0.2, help="share of the mix taken from --replay")
    model = parser.add_argument_group("model")
    add_flag(model, "--base-model", default=None, help="model folder (default: the embedded SmolLM2-135M)")
    add_flag(model, "--backend", choices=BACKENDS, default="torch", help=BACKENDS_HELP)
    add_flag(model, "--trainer-gpus", type=gpu_ids, default=None, help="dedicated mode: train on these GPUs (0 or 0,1)")
    add_flag(model, "--inference-gpus", type=gpu_ids, default=None, help="dedicated mode: serve from this GPU (e.g. 1)")
    add_flag(model, "--name", default="sft", help="ART model name (checkpoints, served adapter name)")
    model.add_argument("--project", default=None, help="ART project (default: --env, else mcpgym)")
    model.add_argument("--art-path", type=Path, default=Path(".art"), help="ART's model folder")
    train = parser.add_argument_group("training")
    train.add_argument("--epochs", type=int, default=2)
    train.add_argument("--lr", type=float, default=2e-4, help="peak learning rate")
    train.add_argument("--lr-schedule", choices=("cosine", "linear", "constant"), default="cosine")
    train.add_argument("--batch-size", type=int, default=4)
    train.add_argument("--lora-rank", type=int, default=8)
    train.add_argument(
        "--detach-prompt",
        action="store_true",
        help="torch backend: run the prompt (system + tools) the examples of a batch share once, without "
        "gradient. ~1.4x faster steps, but not the exact gradient (slightly higher held-out loss, measured)",
    )
    train.add_argument("--max-length", type=int, default=2048, help="drop examples longer than this (tokens)")
    train.add_argument("--seed", type=int, default=0)
    add_flag(train, "--out-dir", type=Path, default=None, help="metrics + plot (default: the model's folder)")
    add_flag(train, "--wandb", help="log ART's training metrics to W&B (needs WANDB_API_KEY)")
    add_flag(train, "--no-progress", help="no progress bar")
    return parser


def config_from_args(argv: list[str] | None = None) -> SFTConfig:
    args = vars(build_parser().parse_args(argv))
    try:
        check_gpu_flags(args["backend"], args["trainer_gpus"], args["inference_gpus"])
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    return config_fields_from_args(SFTConfig, args)


async def main(argv: list[str] | None = None) -> int:
    config = config_from_args(argv)
    apply_no_progress(config.no_progress)
    result = await run_sft(config)
    first, last = (result.losses[0], result.losses[-1]) if result.losses else (float("nan"), float("nan"))
    print(
        f"sft step {result.step}: {result.num_examples} examples, loss {first:.4f} -> {last:.4f}, "
        f"adapter {result.adapter_dir}"
    )
    print(f"metrics {result.metrics_path}, plot {result.plot_path}")
    return 0


def _user_errors() -> tuple[type[BaseException], ...]:
    from train.backends.errors import BaseModelError
    from train.backends.local import BackendUnavailable

    return (BaseModelError, BackendUnavailable)


if __name__ == "__main__":
    run_cli(main, user_errors=_user_errors())
