"""mcpgym's one door to OpenPipe ART for training (written against openpipe-art 0.5.18).

Training code (`train.grpo`, `train.sft`, ...) calls these and never `art` itself, so an ART
upgrade is checked here, in `train.backends` (which implement ART's `Backend` protocol) and in
`judges` (RULER, and the trajectory conversion both share):

- `open_backend(kind, ...)` / `make_model(name, project, base_model, kind=...)`: a backend and the
  trainable model (an `art.TrainableModel`) set up for it; `register(model, backend)` serves it.
- `train_step(backend, model, groups, learning_rate=...)`: one GRPO update on groups of finished
  mcpgym `Trajectory`s (converted here: `art_groups`), a `TrainStep` back.
- `sft_batches(backend, model, trajectories, ...)`: one SFT step, metrics per batch; the
  trajectories converted by `to_sft_trajectory`.
- `served_name(model, step)`: the name the served checkpoint answers to (`name@step`);
  `inference_url`, `inference_client`: where and how to ask it; `current_step(model)`.
- `model_folder(model)`, `model_checkpoint(model, step)` and `train.backends.layout`: where ART
  keeps a model and its `checkpoints/NNNN` (no ART import: `train.merge` uses the layout too).

ART is imported inside the functions (it takes ~15 s), so importing this module is cheap.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from contracts import Trajectory
from judges.art_trajectory import to_art_trajectory
from train.backends import BackendKind
from train.backends.layout import checkpoint_dir, checkpoint_folders, checkpoint_steps, checkpoints_dir, model_dir

if TYPE_CHECKING:
    import art


# --------------------------------------------------------------------------- backend and model


def open_backend(
    kind: BackendKind,
    *,
    art_path: Path,
    lora_rank: int | None = None,
    trainer_gpus: list[int] | None = None,
    inference_gpus: list[int] | None = None,
    **torch_opts: Any,
) -> art.Backend:
    """A backend for `kind` keeping its models under `art_path`: on `torch` a LoRA of `lora_rank`
    (alpha twice the rank) and any other `TorchBackendSettings` field in `torch_opts`; on `local`
    as many GPUs as the dedicated split names (one when shared). Raises `BackendUnavailable`."""
    from train.backends import make_backend

    opts: dict[str, Any] = {"path": art_path}
    if kind == "torch":
        from train.backends.settings import LoraSettings

        if lora_rank is not None:
            opts["lora"] = LoraSettings(rank=lora_rank, alpha=2 * lora_rank)
        opts |= torch_opts
    if kind == "local":
        opts["gpus"] = len(trainer_gpus or [0]) + len(inference_gpus or [])
    return make_backend(kind, **opts)


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
        from train.backends.local import dedicated_gpus

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


async def register(model: art.TrainableModel, backend: art.Backend, *, serve: bool = True) -> None:
    """Register `model` with `backend` (its folder, `model.json`); with `serve`, also start serving
    it (`model.openai_client()`). Without, training only: the torch backend starts no vLLM."""
    if serve:
        await model.register(backend)
        return
    import art

    await art.Model.register(model, backend)  # the base class's register skips the inference server


def is_registered(model: art.TrainableModel) -> bool:
    return model._backend is not None


def served_name(model: art.Model, step: int | None = None) -> str:
    """The name the backend serves checkpoint `step` as (None: the latest; the base model's name
    before any training), what a policy sends as `model`."""
    return model.get_inference_name(step)


async def current_step(model: art.TrainableModel) -> int:
    """The model's latest checkpoint step (0 before any training)."""
    return await model.get_step()


def inference_url(model: art.Model) -> str:
    """The OpenAI-compatible base URL the registered model is served at."""
    return str(model.inference_base_url)


def inference_client(model: art.Model) -> Any:
    """ART's OpenAI client for the served model (an `openai.AsyncOpenAI`)."""
    return model.openai_client()


def model_folder(model: art.Model) -> Path:
    """ART's folder of a registered model (`{art_path}/{project}/models/{name}`)."""
    return Path(model._get_output_dir())


def model_checkpoint(model: art.Model, step: int) -> Path:
    """Where checkpoint `step` of a registered model lives (it may not exist)."""
    return checkpoint_dir(model_folder(model), step)


# --------------------------------------------------------------------------- GRPO


class TrainStep(BaseModel):
    """What one update did: the model's step after it, ART's averaged metrics (`loss/train`,
    `loss/grad_norm`, ...), and the new checkpoint (None when none was written)."""

    step: int
    metrics: dict[str, Any]
    checkpoint_path: Path | None = None


def art_groups(groups: Sequence[Sequence[Trajectory]]) -> list[art.TrajectoryGroup]:
    """ART's `TrajectoryGroup`s of finished trajectories, member order kept. Built directly: ART's
    `gather_trajectory_groups` exists to await rollouts, and these already ran. Its other effects
    are gone with it: a `completion_tokens` metric on each trajectory and a progress bar (nothing
    reads either), and a member order shuffled by `asyncio.as_completed` over a set of coroutines
    (arbitrary from run to run; a group's advantages do not depend on it)."""
    import art

    return [art.TrajectoryGroup([to_art_trajectory(traj) for traj in group]) for group in groups]


async def train_step(
    backend: art.Backend,
    model: art.TrainableModel,
    groups: Sequence[Sequence[Trajectory]],
    *,
    learning_rate: float,
    **options: Any,
) -> TrainStep:
    """One RL update of `model` on `groups` (each the scored members of one task's group) through
    the backend's `train`; `options` are its other options (`kl_penalty_coef`, and on the torch
    backend `grad_accumulation_sequences`, `off_policy_gamma`)."""
    result = await backend.train(model, art_groups(groups), learning_rate=learning_rate, **options)
    checkpoint = getattr(result, "checkpoint_path", None)
    return TrainStep(
        step=result.step, metrics=dict(result.metrics), checkpoint_path=Path(checkpoint) if checkpoint else None
    )


# --------------------------------------------------------------------------- SFT


def to_sft_trajectory(traj: Trajectory) -> Any:
    """An `art.Trajectory` of plain messages (thinking inline) for SFT."""
    import art

    from rollouts.export import export_messages

    messages = [_sft_message(message) for message in export_messages(traj)]
    return art.Trajectory(
        messages_and_choices=messages,
        tools=traj.tools or None,
        reward=traj.reward if traj.reward is not None else 0.0,
        metadata={"id": traj.id, "env": traj.env, "task_id": traj.task_id},
    )


def _sft_message(message: dict[str, Any]) -> dict[str, Any]:
    """What a chat template reads: role, text content, tool calls (other rollout fields dropped)."""
    out: dict[str, Any] = {"role": message["role"], "content": message.get("content") or ""}
    if message.get("tool_calls"):
        out["tool_calls"] = message["tool_calls"]
    if message.get("tool_call_id"):
        out["tool_call_id"] = message["tool_call_id"]
    if message.get("name") and message["role"] == "tool":
        out["name"] = message["name"]
    return out


def lr_schedule(total_batches: int, peak: float, *, method: str, warmup_steps: int) -> list[float]:
    """One learning rate per SFT batch (ART's `create_lr_schedule`: cosine, linear or constant)."""
    from art.utils.sft import create_lr_schedule

    return create_lr_schedule(total_batches, peak, method=method, warmup_steps=warmup_steps)  # type: ignore[arg-type]


async def sft_batches(
    backend: art.Backend,
    model: art.TrainableModel,
    examples: Sequence[Any],
    *,
    learning_rates: list[float],
    batch_size: int,
) -> AsyncIterator[dict[str, float]]:
    """One SFT step over `examples` (`to_sft_trajectory`s, in training order), one learning rate per
    batch; yields each batch's metrics and saves the next checkpoint at the end.

    Through the backend's `_train_sft`, ART's `Backend` protocol method behind `model.train_sft`
    (which would only average the metrics; these are written batch by batch)."""
    from art.types import TrainSFTConfig

    config = TrainSFTConfig(learning_rate=learning_rates, batch_size=batch_size)
    async for metrics in backend._train_sft(model, examples, config, {}, False):
        yield metrics


async def log_train_metrics(model: art.TrainableModel, metrics: dict[str, float], step: int) -> None:
    """Record training metrics of `step` in ART's model history (and W&B when the model reports there)."""
    await model.log(trajectories=None, split="train", metrics=metrics, step=step)


def instruction_response_markers(base_model: str, tokenizer: Any) -> Any:
    """ART's instruction/response markers of a chat template without generation blocks (where the
    SFT loss on assistant tokens starts and stops)."""
    from art.utils.model_config import get_instruction_response_parts

    return get_instruction_response_parts(base_model, tokenizer)


__all__ = [
    "TrainStep",
    "art_groups",
    "checkpoint_dir",
    "checkpoint_folders",
    "checkpoint_steps",
    "checkpoints_dir",
    "current_step",
    "inference_client",
    "inference_url",
    "instruction_response_markers",
    "is_registered",
    "log_train_metrics",
    "lr_schedule",
    "make_model",
    "model_checkpoint",
    "model_dir",
    "model_folder",
    "open_backend",
    "register",
    "served_name",
    "sft_batches",
    "to_art_trajectory",
    "to_sft_trajectory",
    "train_step",
]
