"""`TorchBackend`: ART's `Backend` protocol on the CPU (transformers + peft LoRA, served by vLLM).

It is ART's own `LocalBackend` with the unsloth service swapped for `TorchService`, so everything
ART does above the trainer runs unchanged: `register` (model folder, `model.json`), `_get_step`
(checkpoint folders), `train` (`build_rl_train_configs`, `tokenize_trajectory_groups` for the GRPO
advantages, `packed_tensors_from_tokenized_results`, metric aggregation into `LocalTrainResult`),
`_prepare_backend_for_training` (port choice, base URL), `close`. Overridden here, because the
originals need unsloth or CUDA: the service factory, SFT tokenisation (`sft_tokenize`), checkpoint
deletion (no Tinker lookup) and the served names. mcpgym's training code reaches it only through
`train.art_adapter`.

What it touches of ART (openpipe-art 0.5.18), and why:

- ART's `art.Backend` protocol, whose methods ART itself names with an underscore:
  `_model_inference_name`, `_prepare_backend_for_training`, `_delete_checkpoint_files`,
  `_train_sft` (and the public `register`, `train`). Implementing them is the seam ART offers a
  backend; the `type: ignore[override]`s are for signatures narrower than LocalBackend's
  (`**kwargs` for `train`'s two torch-only options, TorchService for the service).
- LocalBackend internals, where ART has no public seam: `_get_service` (the only place
  LocalBackend chooses its trainer service; there is no service factory argument),
  `self._services` / `self._tokenizers` / `self._path` (its caches and folder, shared so ART's own
  `train` finds the same service and tokenizer), `self._supports_result_packing` (the flag that
  lets ART pack a group's members behind one prompt), and the module helpers
  `_apply_configured_chat_template` / `_tokenizer_cache_key` (so SFT tokenises with exactly the
  template and cache key ART's RL path uses). They live here and in `compat.py` only.

Checkpoints follow ART's layout, `{path}/{project}/models/{name}/checkpoints/{step:04d}/` holding a
PEFT adapter. vLLM serves the base model under the model's name (`name`, what
`model.get_inference_name()` returns before any training) and each new checkpoint as `name@step`,
loaded at runtime right after the step is saved.

    backend = TorchBackend(path=".art")
    model = art.TrainableModel(name="agent", project="energy", base_model=str(ensure_base_model()))
    await model.register(backend)                 # starts vLLM (~30 s on 2 cores)
    client = model.openai_client()                # model.get_inference_name() -> "agent"
    await model.train_sft(trajectories)           # -> checkpoint 0001, served as "agent@1"
    await backend.close()
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterable
from pathlib import Path
from typing import Any, cast

from art import dev
from art.local.adapter_leases import pinned_inference_step
from art.local.backend import LocalBackend, _apply_configured_chat_template, _tokenizer_cache_key
from art.local.checkpoints import delete_checkpoints
from art.metrics_taxonomy import TRAIN_GRADIENT_STEPS_KEY
from art.model import Model, TrainableModel
from art.trajectories import Trajectory, TrajectoryGroup
from art.types import LocalTrainResult, TrainSFTConfig
from art.utils.get_model_step import get_model_step
from art.utils.output_dirs import get_model_dir
from tqdm import auto as tqdm

from common.flags import progress_off
from serve.vllm import VLLMServer

from .compat import choices_as_sampled, fix_transformers_mask_patch, install_openai_client, wandb_optional
from .errors import check_base_model
from .layout import checkpoint_dir
from .settings import TorchBackendSettings
from .sft_tokenize import has_generation_blocks, tokenize_sft_batch_cpu
from .torch_service import TorchService

fix_transformers_mask_patch()


class TorchBackend(LocalBackend):
    """ART `Backend` training a LoRA with torch on the CPU; see the module docstring."""

    def __init__(
        self,
        *,
        path: str | Path | None = None,
        settings: TorchBackendSettings | None = None,
        server: VLLMServer | None = None,
        **overrides: Any,
    ) -> None:
        """`server`: an already started vLLM (with LoRA enabled) to share instead of starting one
        per model; it is left running on close, only the adapters loaded here are unloaded."""
        if settings is None:
            settings = TorchBackendSettings(**({"path": Path(path)} if path is not None else {}), **overrides)
        elif path is not None or overrides:
            settings = settings.model_copy(update={**({"path": Path(path)} if path else {}), **overrides})
        super().__init__(in_process=True, path=str(settings.path))
        # ART packs a group's members behind one copy of their prompt only for backends whose
        # trainer masks them apart; TorchService does (`packed_attention_mask`).
        self._supports_result_packing = True
        self.settings = settings
        self._shared_server = server

    # ------------------------------------------------------------------ registration and serving

    async def register(self, model: Model) -> None:
        if isinstance(model, TrainableModel):
            check_base_model(model.base_model)
        # LocalBackend.register writes the model to model.json: never with a server's key in it.
        key, model.inference_api_key = model.inference_api_key, None
        try:
            await super().register(model)
        finally:
            model.inference_api_key = key

    async def _get_service(self, model: TrainableModel) -> TorchService:  # type: ignore[override]
        if model.name not in self._services:
            internal = cast(dev.InternalModelConfig, model._internal_config or {})
            template = internal.get("chat_template_path")
            self._services[model.name] = cast(
                Any,
                TorchService(
                    model_name=model.name,
                    base_model=str(check_base_model(model.base_model)),
                    output_dir=get_model_dir(model=model, art_path=self._path),
                    settings=self.settings,
                    server=self._shared_server,
                    chat_template=Path(template) if template else None,
                ),
            )
        return cast(TorchService, self._services[model.name])

    async def _prepare_backend_for_training(
        self, model: TrainableModel, config: dev.OpenAIServerConfig | None = None
    ) -> tuple[str, str]:
        base_url, _ = await super()._prepare_backend_for_training(model, config)
        # ART would hand out a fixed "default"; the model's client gets its server's own key.
        service = self.service(model)
        server = service.server if service is not None else None
        if server is None:
            raise RuntimeError(f"no vLLM server for {model.name} after ART prepared it")
        install_openai_client(model, base_url, server.api_key)
        return base_url, server.api_key

    def service(self, model: Model) -> TorchService | None:
        """The model's service once it exists (vLLM server, loaded adapters), else None."""
        return cast(TorchService | None, self._services.get(model.name))

    def _model_inference_name(self, model: Model, step: int | None = None) -> str:
        """`name@step` for a trained checkpoint; the base model's served name at step 0."""
        if step is None:
            step = pinned_inference_step(model.name)
        if step is None:
            step = get_model_step(cast(TrainableModel, model), self._path) if model.trainable else 0
        checkpoint = checkpoint_dir(get_model_dir(model=model, art_path=self._path), step)
        if step == 0 and not checkpoint.is_dir():
            service = self.service(model)
            return service.base_inference_name if service is not None else model.name
        return f"{model.name}@{step}"

    async def _delete_checkpoint_files(self, model: TrainableModel, steps_to_keep: list[int]) -> None:
        output_dir = get_model_dir(model=model, art_path=self._path)
        delete_checkpoints(output_dir, steps_to_keep)
        service = self.service(model)
        if service is not None:
            await service.prune_loaded_adapters(retain_steps=set(steps_to_keep))

    # ------------------------------------------------------------------ RL

    async def train(  # type: ignore[override]
        self, model: TrainableModel, trajectory_groups: Iterable[TrajectoryGroup], **kwargs: Any
    ) -> LocalTrainResult:
        """LocalBackend's `train` (all its options: learning_rate, loss_fn "cispo"|"ppo", epsilon,
        kl_penalty_coef, allow_training_without_logprobs, ...): one step, checkpoint, served as name@step.

        Two more: `grad_accumulation_sequences` (packed sequences per optimizer step; None, the
        default: all of them, one update per call) and `off_policy_gamma` (LUFFY's shaping of
        tokens without sampled logprobs, `torch_service.off_policy_logprobs`; 0: ART's ratio 1)."""
        from .torch_service import RLUpdate

        update = RLUpdate(
            accumulate=kwargs.pop("grad_accumulation_sequences", None),
            gamma=kwargs.pop("off_policy_gamma", RLUpdate().gamma),
        )
        if kwargs.get("packed_sequence_length") is None:
            kwargs["packed_sequence_length"] = packed_length(model, kwargs.get("logprob_calculation_chunk_size", 1024))
        (await self._get_service(model)).rl_update = update
        with wandb_optional(model):
            return await super().train(model, choices_as_sampled(trajectory_groups), **kwargs)

    # ------------------------------------------------------------------ SFT

    def _sft_tokenizer(self, model: TrainableModel) -> Any:
        from transformers import AutoTokenizer

        internal = cast(dev.InternalModelConfig, model._internal_config or {})
        key = _tokenizer_cache_key(model.base_model, internal)
        if key not in self._tokenizers:
            tokenizer = AutoTokenizer.from_pretrained(model.base_model)
            _apply_configured_chat_template(tokenizer, internal)
            self._tokenizers[key] = tokenizer
        return self._tokenizers[key]

    async def _train_sft(  # type: ignore[override]
        self,
        model: TrainableModel,
        trajectories: Iterable[Trajectory],
        config: TrainSFTConfig,
        dev_config: dev.TrainSFTConfig,
        verbose: bool = False,
    ) -> AsyncIterator[dict[str, float]]:
        """LocalBackend's `_train_sft` (batches, per-batch learning rates, metrics) with CPU tokenisation.

        Longer than the rest on purpose: it follows ART 0.5.18's `LocalBackend._train_sft` step for
        step, so an ART upgrade is checked by diffing the two."""
        import itertools

        from art.utils.model_config import get_instruction_response_parts
        from art.utils.sft import resolve_sft_batch_size

        internal = cast(dev.InternalModelConfig, model._internal_config or {})
        tokenizer = self._sft_tokenizer(model)
        markers = (
            None if has_generation_blocks(tokenizer) else get_instruction_response_parts(model.base_model, tokenizer)
        )
        batch_size = resolve_sft_batch_size(
            batch_size=config.batch_size, default_batch_size=self._default_sft_batch_size()
        )
        max_seq_length = internal.get("init_args", {}).get("max_seq_length")
        rates = (
            iter(config.learning_rate)
            if isinstance(config.learning_rate, list)
            else itertools.repeat(config.learning_rate)
        )

        trajectory_list = list(trajectories)
        batches = [
            tokenize_sft_batch_cpu(
                trajectory_list[start : start + batch_size],
                next(rates),
                tokenizer,
                chat_template_kwargs=internal.get("chat_template_kwargs"),
                max_seq_length=int(max_seq_length) if max_seq_length else None,
                markers=markers,
            )
            for start in range(0, len(trajectory_list), batch_size)
        ]
        service = await self._get_service(model)
        total_trainable = sum(batch.num_trainable_tokens for batch in batches)
        dropped = sum(batch.num_dropped_trajectories for batch in batches)
        progress = tqdm.tqdm(total=len(batches), desc="sft train", disable=not batches or progress_off())
        started = time.monotonic()
        try:
            async for result in service.train_sft(
                batches, config.model_copy(update={"batch_size": batch_size}), verbose
            ):
                progress.update(1)
                progress.set_postfix(loss=f"{result['loss/train']:.4f}")
                yield {
                    **result,
                    "data/step_num_trajectories": float(len(trajectory_list)),
                    "data/step_trainer_tokens": float(total_trainable),
                    "data/step_num_dropped_trajectories": float(dropped),
                    "time/sft_elapsed_s": time.monotonic() - started,
                    TRAIN_GRADIENT_STEPS_KEY: float(len(batches)),
                }
        finally:
            progress.close()


def packed_length(model: TrainableModel, chunk: int) -> int | None:
    """The packed sequence length for a model with a known context (`init_args.max_seq_length`).

    ART's default is the longest trajectory rounded up to 2048, which on a ~2k-token tool prompt
    leaves one trajectory per sequence, each carrying its own copy of the prompt. Packing to the
    model's context lets the members of a group share ONE prompt (TorchService masks them apart),
    which on the CPU makes a GRPO step several times cheaper. Capped at 8192: the mask is S x S.
    None (ART's default) when the context is unknown or larger."""
    internal = cast(dev.InternalModelConfig, model._internal_config or {})
    context = internal.get("init_args", {}).get("max_seq_length")
    if not context or context > 8192 or context < chunk:
        return None
    return int(context) // chunk * chunk
