"""Settings of the CPU torch backend (pydantic, so CLIs and configs validate them the same way)."""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import BaseModel, Field

# Every linear projection of a Llama-style block: LoRA on attention and MLP learns fastest per step.
DEFAULT_TARGET_MODULES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
# The ranks vLLM accepts for --max-lora-rank (serve.vllm.LoraRank).
VLLM_LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)


class LoraSettings(BaseModel):
    rank: int = Field(8, ge=1, le=512)
    alpha: int = Field(16, ge=1)
    dropout: float = Field(0.0, ge=0.0, lt=1.0)
    target_modules: list[str] = Field(default_factory=lambda: list(DEFAULT_TARGET_MODULES))

    def vllm_max_rank(self) -> int:
        """The smallest rank vLLM accepts that holds this adapter."""
        return next(rank for rank in VLLM_LORA_RANKS if rank >= self.rank)


def default_threads() -> int:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, cores)


class TorchBackendSettings(BaseModel):
    """How the torch backend trains and serves. `path` is ART's `.art` folder."""

    path: Path = Field(Path(".art"), description="ART's model folder: {path}/{project}/models/{name}/checkpoints/")
    lora: LoraSettings = Field(default_factory=LoraSettings)
    num_threads: int = Field(default_factory=default_threads, ge=1, description="torch intra-op threads")
    max_grad_norm: float = Field(1.0, gt=0, description="SFT gradient clipping")
    # ART's reference RL optimizer (art.dev.get_model_config, megatron's default): AdamW with
    # beta2 0.99 and clipping at 0.1. beta2 0.999 averages squared gradients over ~1000 steps, far
    # more than a GRPO run takes, so the first steps divide by a second moment that is mostly the
    # bias correction; 0.99 tracks the last ~100.
    rl_max_grad_norm: float = Field(0.1, gt=0, description="RL (GRPO) gradient clipping")
    rl_adam_beta2: float = Field(0.99, gt=0, lt=1)
    rl_weight_decay: float = Field(0.1, ge=0, description="ART's unsloth service uses 0.1 for RL")
    sft_weight_decay: float = Field(0.0, ge=0)
    sft_detach_prompt: bool = Field(
        False,
        description="SFT runs the prompt its batch shares once without gradient (~1.4x faster, inexact: "
        "see torch_service.sft_backward)",
    )
    max_model_len: int = Field(2048, ge=128, description="vLLM context length")
    vllm_startup_timeout_s: float = Field(600.0, gt=0)
    seed: int | None = Field(0, description="torch seed for LoRA init (None: leave the RNG alone)")
