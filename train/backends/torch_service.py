"""The model service behind the torch backend: a PEFT LoRA trained with plain torch on the CPU,
served by vLLM, checkpointed in ART's layout.

It plays the part that `art.unsloth.service.UnslothService` plays for ART's `LocalBackend` (the
`art.local.service.ModelService` protocol: `start_openai_server`, `train`, `train_sft`,
`register_lora_for_step`, `aclose`), so `LocalBackend`'s own `train`/`_train_model` drive it
unchanged. What it takes from openpipe-art: `art.loss.loss_fn` (CISPO/PPO policy loss, KL penalty,
importance sampling) and `shift_tensor`, `art.preprocessing.pack.packed_tensors_from_dir`,
`art.preprocessing.inputs.create_train_inputs`, ART's step count (`get_step_from_dir`; the
checkpoint folders themselves come from `layout`, ART's layout spelled once). What it replaces,
because the originals need unsloth/CUDA: the forward pass that turns a packed sequence into
per-token logprobs/entropies (unsloth's `calculate_logprobs`), and the SFT loop
(`run_unsloth_sft_training`, same arithmetic: per-batch token-mean cross-entropy, grad clipping,
one optimizer step per batch).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import logging
import os
import shutil
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, Field

from serve.vllm import VLLMConfig, VLLMServer

from .settings import TorchBackendSettings

if TYPE_CHECKING:
    import torch
    from art import dev, types
    from art.preprocessing.pack import DiskPackedTensors
    from art.preprocessing.tokenize import SFTBatch

    from train.backends.packed_attention import PackedLayout

logger = logging.getLogger(__name__)


class RLUpdate(BaseModel):
    """How the next RL step updates the LoRA (see `TorchService.train`)."""

    accumulate: int | None = Field(None, ge=1, description="packed sequences per optimizer step (None: all)")
    gamma: float = Field(0.1, ge=0, description="off-policy token shaping (off_policy_logprobs); 0: ratio 1")


class TorchService:
    """One trainable model: its LoRA, optimizer and (optionally shared) vLLM server."""

    def __init__(
        self,
        *,
        model_name: str,
        base_model: str,
        output_dir: str,
        settings: TorchBackendSettings,
        server: VLLMServer | None = None,
        chat_template: Path | None = None,
    ) -> None:
        from art.utils.get_model_step import get_step_from_dir

        self.model_name = model_name
        self.base_model = base_model
        self.output_dir = output_dir
        self.settings = settings
        self.chat_template = chat_template
        self.server = server
        self._owns_server = server is None
        self.latest_step = get_step_from_dir(output_dir)
        self.loaded_steps: set[int] = set()
        self._peft: Any = None
        self._optimizer: torch.optim.Optimizer | None = None
        self._mode: Literal["rl", "sft"] | None = None
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self.rl_update = RLUpdate()  # set by TorchBackend.train for each step

    # ------------------------------------------------------------------ serving

    @property
    def base_inference_name(self) -> str:
        """What vLLM calls the base model: the model's name, or a shared server's own name."""
        return self.server.served_model_name if self.server is not None else self.model_name

    def adapter_name(self, step: int) -> str:
        return f"{self.model_name}@{step}"

    def server_config(self, port: int | None = None) -> VLLMConfig:
        """The vLLM this model is served by when no server is shared: its own key (random, made by
        VLLMServer) and runtime LoRA loading, which each step's checkpoint (`name@step`) needs."""
        return VLLMConfig(
            model=Path(self.base_model),
            served_model_name=self.model_name,
            port=port,
            enable_lora=True,
            runtime_lora=True,
            max_lora_rank=self.settings.lora.vllm_max_rank(),
            chat_template=self.chat_template,
            max_model_len=self.settings.max_model_len,
            startup_timeout_s=self.settings.vllm_startup_timeout_s,
        )

    async def start_openai_server(self, config: dev.OpenAIServerConfig | None) -> tuple[str, int]:
        server_args = dict((config or {}).get("server_args", {}))
        if self.server is None:
            self.server = VLLMServer(self.server_config(server_args.get("port")))
        if not self.server.running:
            await self.server.start()
        # A resumed model serves its latest checkpoint straight away.
        checkpoint = self.checkpoint_dir(self.latest_step)
        if self.latest_step > 0 and checkpoint.is_dir():
            await self._serve_step(self.latest_step, checkpoint)
        return self.server.config.host, self.server.port

    async def _serve_step(self, step: int, checkpoint: Path) -> None:
        if self.server is None or not self.server.running:
            return  # training-only: nothing to update
        await self.server.load_lora(self.adapter_name(step), checkpoint, replace=True)
        self.loaded_steps.add(step)

    async def register_lora_for_step(self, step: int, checkpoint_dir: str) -> None:
        """Called by LocalBackend when a step had nothing to train and the checkpoint was copied on."""
        await self._serve_step(step, Path(checkpoint_dir))
        self.latest_step = step

    async def prune_loaded_adapters(self, *, retain_steps: set[int]) -> None:
        if self.server is None or not self.server.running:
            return
        for step in sorted(self.loaded_steps - set(retain_steps) - {self.latest_step}):
            with contextlib.suppress(Exception):
                await self.server.unload_lora(self.adapter_name(step))
            self.loaded_steps.discard(step)

    async def vllm_engine_is_sleeping(self) -> bool:
        return False  # vLLM on the CPU never sleeps: training and serving share the cores

    # ------------------------------------------------------------------ the trainable model

    def checkpoint_dir(self, step: int) -> Path:
        from .layout import checkpoint_dir

        return checkpoint_dir(self.output_dir, step)

    def _ensure_model(self) -> Any:
        """Load the base model with the latest checkpoint's LoRA (or a fresh one), once."""
        if self._peft is not None:
            return self._peft
        import torch
        from peft import LoraConfig, PeftModel, get_peft_model
        from transformers import AutoModelForCausalLM

        from train.backends.packed_attention import register

        torch.set_num_threads(self.settings.num_threads)
        attention = register()  # packed sequences attend prompt by prompt (packed_attention.py)
        base = AutoModelForCausalLM.from_pretrained(self.base_model, dtype=torch.float32, attn_implementation=attention)
        checkpoint = self.checkpoint_dir(self.latest_step)
        if self.latest_step > 0 and (checkpoint / "adapter_config.json").is_file():
            peft_model = PeftModel.from_pretrained(base, str(checkpoint), is_trainable=True)
        else:
            lora = self.settings.lora
            config = LoraConfig(
                r=lora.rank,
                lora_alpha=lora.alpha,
                lora_dropout=lora.dropout,
                target_modules=lora.target_modules,
                task_type="CAUSAL_LM",
            )
            with torch.random.fork_rng(devices=[]):  # seeded init without disturbing the caller's RNG
                if self.settings.seed is not None:
                    torch.manual_seed(self.settings.seed)
                peft_model = get_peft_model(base, config)
        self._peft = peft_model
        return peft_model

    def _optimizer_for(self, mode: Literal["rl", "sft"]) -> torch.optim.Optimizer:
        """AdamW over the LoRA weights; its moments are reset when switching between SFT and RL (as ART does)."""
        import torch

        model = self._ensure_model()
        if self._optimizer is None:
            params = [param for param in model.parameters() if param.requires_grad]
            self._optimizer = torch.optim.AdamW(params, lr=1e-5)
        if self._mode is not None and self._mode != mode:
            self._optimizer.state.clear()
        self._mode = mode
        rl = mode == "rl"
        for group in self._optimizer.param_groups:
            group["weight_decay"] = self.settings.rl_weight_decay if rl else self.settings.sft_weight_decay
            group["betas"] = (0.9, self.settings.rl_adam_beta2 if rl else 0.999)
        return self._optimizer

    def _step_optimizer(self, optimizer: torch.optim.Optimizer) -> float:
        import torch

        params = [param for param in self._peft.parameters() if param.requires_grad]
        clip = self.settings.rl_max_grad_norm if self._mode == "rl" else self.settings.max_grad_norm
        grad_norm = float(torch.nn.utils.clip_grad_norm_(params, clip))
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return grad_norm

    async def _finish_step(self) -> int:
        """Save the adapter as the next checkpoint (atomically) and serve it as `name@step`."""
        from art.utils.get_model_step import get_step_from_dir

        step = get_step_from_dir(self.output_dir) + 1
        final = self.checkpoint_dir(step)
        work = final.parent / f".tmp-{final.name}-{uuid.uuid4().hex[:8]}"  # not a digit: ART ignores it
        final.parent.mkdir(parents=True, exist_ok=True)
        try:
            await self._run(self._peft.save_pretrained, str(work))
            if final.exists():  # a stale folder from a crash between save and rename
                shutil.rmtree(final)
            os.replace(work, final)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        self.latest_step = step
        await self._serve_step(step, final)
        return step

    # ------------------------------------------------------------------ RL (GRPO)

    async def train(
        self,
        disk_packed_tensors: DiskPackedTensors,
        config: types.TrainConfig,
        _config: dev.TrainConfig,
        verbose: bool = False,
    ) -> AsyncIterator[dict[str, float]]:
        """One RL step over ART's packed sequences; yields metrics per sequence, then checkpoints.

        Gradients accumulate over windows of `config.grad_accumulation_sequences` sequences, else
        `self.rl_update.accumulate`, else all of them (one optimizer step per GRPO step). Each
        sequence's summed token loss is divided by the trained tokens of its whole window, so a
        window's gradient is that of the token-mean loss over all its tokens: the same update as
        one sequence holding every trajectory (megatron's normalisation in ART)."""
        from art.preprocessing.inputs import create_train_inputs
        from art.preprocessing.pack import packed_tensors_from_dir

        packed = packed_tensors_from_dir(**disk_packed_tensors)
        optimizer = await self._run(self._optimizer_for, "rl")
        count = packed["tokens"].shape[0]
        window = int(config.grad_accumulation_sequences or self.rl_update.accumulate or count)
        # loss_fn's denominator: assistant tokens after its one-position shift.
        trained = packed["assistant_mask"][:, 1:].sum(dim=1).tolist()
        for offset in range(count):
            start = offset - offset % window
            denominator = max(1.0, float(sum(trained[start : start + window])))
            inputs = create_train_inputs(packed, offset, config, _config, warmup=False)
            if offset == start:
                self._set_learning_rate(inputs, config, _config)
            metrics = await self._run(self._rl_sequence, inputs, config, _config, denominator)
            if (offset + 1) % window == 0 or offset + 1 == count:
                metrics["loss/grad_norm"] = await self._run(self._step_optimizer, optimizer)
            if verbose:
                print(f"rl sequence {offset + 1}/{count}: {metrics}")
            yield metrics
        await self._finish_step()

    def _set_learning_rate(self, inputs: dict[str, Any], config: types.TrainConfig, _config: dev.TrainConfig) -> None:
        import torch

        power = _config.get("num_trajectories_learning_rate_multiplier_power", 0.0)
        trajectories = torch.unique(inputs["group_ids"]).numel() - torch.unique(inputs["parent_ids"]).numel()
        learning_rate = config.learning_rate * (max(trajectories, 1) ** power)
        for group in self._optimizer.param_groups:
            group["lr"] = learning_rate

    def _rl_sequence(
        self, inputs: dict[str, Any], config: types.TrainConfig, _config: dev.TrainConfig, denominator: float
    ) -> dict[str, float]:
        import torch
        from art.loss import loss_fn, shift_tensor

        model = self._ensure_model()
        model.train()
        # Sequences are padded to a multiple of 2048; the padding (group id -1) only costs time here.
        length = int((inputs["group_ids"][0] != -1).nonzero().max()) + 1
        tensors = {
            key: value[:, :length] if isinstance(value, torch.Tensor) and value.dim() > 1 else value
            for key, value in inputs.items()
        }
        next_tokens = shift_tensor(tensors["tokens"], 0)
        mask = packed_attention_for(model, tensors["group_ids"], tensors["parent_ids"])
        # The loss reads position t (predicting token t+1) where token t+1 was sampled, and the
        # entropy where token t was: only those positions need the LM head.
        sampled = tensors["assistant_mask"][0].bool()
        keep = (sampled | torch.cat([sampled[1:], sampled.new_zeros(1)])).nonzero().squeeze(-1)
        new_logprobs, entropies = _token_logprobs(
            model, tensors["tokens"], tensors["input_pos"], next_tokens, mask, keep
        )
        ref_logprobs = None
        if config.kl_penalty_coef > 0.0:
            with torch.no_grad(), self._reference(_config.get("kl_ref_adapter_path")):
                ref_logprobs, _ = _token_logprobs(
                    model, tensors["tokens"], tensors["input_pos"], next_tokens, mask, keep
                )
        on_policy = sampled & ~torch.isnan(tensors["logprobs"][0])
        shaped = off_policy_logprobs(tensors["logprobs"], tensors["assistant_mask"], new_logprobs, self.rl_update.gamma)
        loss = loss_fn(tensors | {"logprobs": shaped}, new_logprobs, ref_logprobs, entropies, _config, reduction="sum")  # type: ignore[arg-type]
        (loss.policy_loss / denominator).backward()
        own = max(1.0, float(tensors["assistant_mask"][0, 1:].sum()))
        metrics = {
            "loss/train": float(loss.policy_loss.detach()) / own,
            "loss/learning_rate": float(self._optimizer.param_groups[0]["lr"]),
            "loss/off_policy_tokens": float((sampled & ~on_policy).sum()),
        }
        if loss.entropy is not None:
            metrics["loss/entropy"] = float(loss.entropy.detach()) / own
        if loss.kl_policy_ref is not None:
            metrics["loss/kl_policy_ref"] = float(loss.kl_policy_ref)
        corr = sampled_probs_corr(tensors["logprobs"][0], new_logprobs[0], on_policy)
        if corr is not None:
            metrics["loss/probs_corr"] = corr
        return metrics

    @contextlib.contextmanager
    def _reference(self, adapter_path: str | None) -> Any:
        """The KL reference: the base model (LoRA off) or another checkpoint's adapter."""
        model = self._peft
        if adapter_path is None:
            with model.disable_adapter():
                yield
            return
        name = "ref_" + uuid.uuid5(uuid.NAMESPACE_URL, adapter_path).hex[:12]
        if name not in model.peft_config:
            model.load_adapter(adapter_path, adapter_name=name, is_trainable=False)
        previous = model.active_adapter
        model.set_adapter(name)
        try:
            yield
        finally:
            model.set_adapter(previous)

    # ------------------------------------------------------------------ SFT

    async def train_sft(
        self, batches: list[SFTBatch], config: types.TrainSFTConfig, verbose: bool = False
    ) -> AsyncIterator[dict[str, float]]:
        """One optimizer step per batch (token-mean loss over the batch); checkpoints once at the end."""
        optimizer = await self._run(self._optimizer_for, "sft")
        for index, batch in enumerate(batches):
            metrics = await self._run(self._sft_batch, batch, optimizer)
            if verbose:
                print(f"sft batch {index + 1}/{len(batches)}: {metrics}")
            yield metrics
        await self._finish_step()

    def _sft_batch(self, batch: SFTBatch, optimizer: torch.optim.Optimizer) -> dict[str, float]:
        model = self._ensure_model()
        model.train()
        for group in optimizer.param_groups:
            group["lr"] = batch.learning_rate
        # The batch loss is the mean over all its trainable tokens, however they are spread.
        trainable = max(1, batch.num_trainable_tokens)
        pieces = sft_pieces(batch.trajectory_tensors)
        batch_loss = sft_backward(model, pieces, trainable, detach_prompt=self.settings.sft_detach_prompt)
        grad_norm = self._step_optimizer(optimizer) if batch.trajectory_tensors else 0.0
        return {
            "loss/train": batch_loss,
            "loss/learning_rate": batch.learning_rate,
            "loss/grad_norm": grad_norm,
        }

    # ------------------------------------------------------------------ lifecycle

    async def aclose(self) -> None:
        server = self.server
        if server is not None and self._owns_server:
            await server.stop()
            self.server = None
        elif server is not None and server.running:  # a shared server: take back only what we loaded
            for step in sorted(self.loaded_steps):
                with contextlib.suppress(Exception):
                    await server.unload_lora(self.adapter_name(step))
        self.loaded_steps.clear()
        self._release_model()

    async def _run(self, function: Any, *args: Any) -> Any:
        """Torch work on the service's one worker thread. One thread, not asyncio's pool: glibc gives
        each thread its own malloc arena and keeps what it freed, so training hopping between pool
        threads held several multi-GB activation peaks at once (an OOM kill on 24 GiB, measured)."""
        if self._executor is None:
            self._executor = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="torch-train")
        return await asyncio.get_running_loop().run_in_executor(self._executor, functools.partial(function, *args))

    def close(self) -> None:
        """Synchronous close (ART's `close_proxy`, atexit): kill an owned server, drop the model."""
        if self._owns_server and self.server is not None:
            self.server.kill_now()
            self.server = None
        self._release_model()

    def _release_model(self) -> None:
        self._peft = None
        self._optimizer = None
        self._mode = None
        if self._executor is not None:
            self._executor.shutdown(wait=False)
            self._executor = None


def off_policy_logprobs(
    logprobs: torch.Tensor, assistant_mask: torch.Tensor, new_logprobs: torch.Tensor, gamma: float
) -> torch.Tensor:
    """Sampled logprobs ([1, S], token t at t) with the off-policy tokens' filled so that ART's
    CISPO weight on them is LUFFY's policy shaping.

    An off-policy token (a demonstration's: trained, but no sampled logprob, NaN) has no
    behaviour probability to form an importance ratio with; ART takes the ratio as 1, a plain
    advantage-weighted log-likelihood, which pulls hardest on the tokens the policy already
    favours least and drives it to imitate the demonstration wholesale. LUFFY ("Learning to
    Reason under Off-Policy Guidance", 2025) optimises f(p) = p / (p + gamma) instead, whose
    gradient is gamma * p / (p + gamma)^2 times that of log p: at most 1/4 (at p = gamma), ~0.08
    for tokens the policy already gives p ~ 1, and vanishing for tokens it finds very unlikely,
    so guidance moves the middle of the distribution rather than forcing every token. Setting
    old = log p - log w makes CISPO's detached ratio exp(new - old) exactly w (it lies inside
    CISPO's clip range [0, 5], which assumes loss "cispo"). gamma 0 leaves the NaNs (ratio 1)."""
    import torch

    off = torch.isnan(logprobs) & assistant_mask.bool()
    if gamma <= 0 or not bool(off.any()):
        return logprobs
    # new_logprobs[t] is log p(token t+1): move it one place right to line up with token t.
    current = torch.cat([new_logprobs.new_zeros(new_logprobs.shape[0], 1), new_logprobs[:, :-1]], dim=1).detach()
    probs = current.exp()
    weight = (gamma * probs / (probs + gamma) ** 2).clamp_min(1e-12)
    return torch.where(off, current - weight.log(), logprobs)


def sampled_probs_corr(logprobs: torch.Tensor, new_logprobs: torch.Tensor, on_policy: torch.Tensor) -> float | None:
    """ART's `probs_corr` (sampled against recomputed token probabilities) over on-policy tokens
    only: near 1 says the trainer scores sampled tokens as vLLM did."""
    import torch

    chosen = on_policy[1:]
    if int(chosen.sum()) < 2:
        return None
    pairs = torch.stack([logprobs[1:][chosen].exp(), new_logprobs[:-1][chosen].detach().exp()])
    corr = float(torch.corrcoef(pairs)[0, 1])
    return corr if corr == corr else None


def sft_pieces(trajectory_tensors: list[dict[str, torch.Tensor]]) -> list[dict[str, torch.Tensor]]:
    """The forward passes of an SFT batch: one packed sequence when its examples share a prompt,
    else one per example."""
    ids = [tensors["input_ids"][0] for tensors in trajectory_tensors]
    labels = [tensors["labels"][0] for tensors in trajectory_tensors]
    packed = pack_shared_prefix(ids, labels)
    return [packed] if packed is not None else [_single_sft_piece(tensors) for tensors in trajectory_tensors]


def sft_backward(
    model: Any, pieces: list[dict[str, torch.Tensor]], trainable: int, *, detach_prompt: bool = False
) -> float:
    """Cross-entropy summed over the trained tokens of `pieces`, divided by `trainable`, backpropagated.

    With `detach_prompt`, a packed piece's shared prompt runs once without autograd and the examples
    attend to its cached keys and values: the same loss, and the gradient minus the part that flows
    back through the prompt's positions. Measured on the energy SFT data (SmolLM2-135M, 2 cores): a
    batch of 8 in 21 s instead of 30 s, and after 24 such steps a held-out loss of 0.111 instead of
    0.103, so it stays opt-in."""
    import torch

    from train.backends.packed_attention import PackedLayout

    total = 0.0
    for piece in pieces:
        keep = (piece["targets"] != -100).nonzero().squeeze(-1)
        if keep.numel() == 0:
            continue
        head = int(piece.get("head", 0)) if detach_prompt else 0
        inputs: dict[str, Any] = {"input_ids": piece["input_ids"][head:].unsqueeze(0)}
        inputs["position_ids"] = piece["position_ids"][head:].unsqueeze(0)
        if "group_ids" in piece:
            group_ids = piece["group_ids"]
            # The cached-prompt path needs the dense mask's rows of the rests.
            attention = packed_attention_for(model, group_ids, torch.zeros_like(group_ids), dense=bool(head))
            if isinstance(attention, PackedLayout):
                inputs["packed_layout"] = attention
            else:
                inputs["attention_mask"] = attention[:, :, head:, :]
        if head:
            with torch.no_grad():
                prompt = model(
                    input_ids=piece["input_ids"][:head].unsqueeze(0),
                    position_ids=piece["position_ids"][:head].unsqueeze(0),
                    use_cache=True,
                    logits_to_keep=1,
                )
            inputs |= {"past_key_values": prompt.past_key_values, "use_cache": True}
        # Logits only where a token is trained: the LM head over a 49k vocabulary at every
        # prompt position would cost as much as several transformer layers.
        logits = model(**inputs, logits_to_keep=keep - head).logits
        loss = torch.nn.functional.cross_entropy(logits[0].float(), piece["targets"][keep], reduction="sum") / trainable
        loss.backward()
        total += float(loss.detach())
    return total


def _single_sft_piece(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """One trajectory as a piece: position t is trained to predict token t+1 where it is labelled."""
    import torch

    ids, labels = tensors["input_ids"][0], tensors["labels"][0]
    targets = torch.cat([labels[1:], labels.new_tensor([-100])])
    return {"input_ids": ids, "position_ids": torch.arange(len(ids)), "targets": targets}


MIN_SHARED_PREFIX = 64  # tokens; below this packing saves too little to be worth the mask
MAX_PACKED_LENGTH = 8192  # the mask is S x S


def pack_shared_prefix(ids: list[torch.Tensor], labels: list[torch.Tensor]) -> dict[str, torch.Tensor] | None:
    """SFT examples that start with the same untrained prompt (an env's system prompt and tool
    list: ~1.2k tokens for energy) as ONE sequence: the prompt once, then each example's rest, each
    masked from the others (ART's own layout, `packed_attention_for`). Exactly the loss and
    gradients of the examples one by one, for a fraction of the compute. `head` is the number of
    prompt tokens before the rests (what `sft_backward` may run without gradient). Each rest restarts at the
    prompt's last token, so its first trained token is predicted from the right context.
    None when there is nothing worth sharing (then the examples run one by one)."""
    import torch

    if len(ids) < 2:
        return None
    shortest = min(len(seq) for seq in ids)
    first = ids[0][:shortest]
    same = torch.ones(shortest, dtype=torch.bool)
    for seq, lab in zip(ids, labels, strict=True):
        same &= (seq[:shortest] == first) & (lab[:shortest] == -100)
    common = int(same.long().cumprod(0).sum())  # length of the all-equal, untrained prefix
    common = min(common, shortest - 1)
    if common < MIN_SHARED_PREFIX:
        return None
    head = common - 1  # the prompt minus its last token, which starts every rest
    rests = [seq[head:] for seq in ids]
    if head + sum(len(rest) for rest in rests) > MAX_PACKED_LENGTH:
        return None
    input_ids = torch.cat([ids[0][:head], *rests])
    positions = torch.cat([torch.arange(head), *[torch.arange(head, head + len(rest)) for rest in rests]])
    group_ids = torch.cat(
        [torch.zeros(head, dtype=torch.long), *[torch.full((len(r),), k + 1) for k, r in enumerate(rests)]]
    )
    targets = torch.cat(
        [torch.full((head,), -100), *[torch.cat([lab[head + 1 :], lab.new_tensor([-100])]) for lab in labels]]
    )
    return {
        "input_ids": input_ids,
        "position_ids": positions,
        "targets": targets,
        "group_ids": group_ids.unsqueeze(0),  # the prompt 0, each rest its own; every rest's parent is 0
        "head": torch.tensor(head),
    }


def packed_attention_for(
    model: Any, group_ids: torch.Tensor, parent_ids: torch.Tensor, *, dense: bool = False
) -> torch.Tensor | PackedLayout:
    """How `model` attends within a packed sequence: prompt by prompt (its layout) when the model
    runs that attention and the packing allows it (always, as ART packs), else the dense mask."""
    import torch

    from train.backends.packed_attention import PackedLayout, uses_packed_attention

    layout = None if dense or not uses_packed_attention(model) else PackedLayout.from_ids(group_ids, parent_ids)
    return layout or packed_attention_mask(group_ids, parent_ids, dtype=torch.float32)


def packed_attention_mask(group_ids: torch.Tensor, parent_ids: torch.Tensor, *, dtype: Any) -> torch.Tensor:
    """The additive [B, 1, S, S] mask of ART's packed sequences.

    ART packs the members of a group into one sequence behind ONE copy of their shared prompt:
    prompt tokens carry the prompt's id as group id, each completion its own group id and the
    prompt's id as parent id. A token sees earlier tokens of its own segment and of its parent
    prompt, nothing of the other completions, so every member is scored as if it ran alone while
    the prompt is computed once (unsloth's `calculate_mask`, as an additive mask)."""
    import torch

    size = group_ids.shape[1]
    causal = torch.ones(size, size, dtype=torch.bool, device=group_ids.device).tril()
    same = group_ids.unsqueeze(2) == group_ids.unsqueeze(1)
    parent = parent_ids.unsqueeze(2) == group_ids.unsqueeze(1)
    allowed = causal.unsqueeze(0) & (same | parent)
    mask = torch.zeros(allowed.shape, dtype=dtype, device=group_ids.device)
    mask.masked_fill_(~allowed, torch.finfo(dtype).min)
    return mask.unsqueeze(1)


def _token_logprobs(
    model: Any,
    tokens: torch.Tensor,
    positions: torch.Tensor,
    next_tokens: torch.Tensor,
    attention_mask: torch.Tensor | PackedLayout | None = None,
    keep: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per position t: log p(token t+1) and the entropy of the distribution at t ([B, S] each),
    the layout `art.loss.loss_fn` expects (unsloth's `_calculate_logprobs`, without its chunking).
    `attention_mask`: a dense mask, or a packed layout (for a model loaded with its attention).
    With `keep` (sequence indices, B = 1) only those positions are computed; the rest are 0."""
    import torch

    from train.backends.packed_attention import PackedLayout

    masking = {"packed_layout" if isinstance(attention_mask, PackedLayout) else "attention_mask": attention_mask}
    logits = model(
        input_ids=tokens,
        position_ids=positions,
        logits_to_keep=keep if keep is not None else 0,
        **masking,
    ).logits.float()
    wanted = next_tokens if keep is None else next_tokens[:, keep]
    log_probs = torch.log_softmax(logits, dim=-1)
    selected = torch.gather(log_probs, -1, wanted.unsqueeze(-1)).squeeze(-1)
    entropy = -(log_probs.exp() * log_probs).sum(-1)
    if keep is None:
        return selected, entropy
    full_selected = selected.new_zeros(tokens.shape).index_copy(1, keep, selected)
    full_entropy = entropy.new_zeros(tokens.shape).index_copy(1, keep, entropy)
    return full_selected, full_entropy
