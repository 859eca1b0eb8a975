"""What a GRPO run is asked to do (train.grpo): the one config its CLI flags are built from.

Each field's `description` is its flag's help (common.config_flags); comments say why a default
is what it is.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, Field

from common.flags import REPLAY_HELP
from judges.groups import Spread
from judges.registry import JUDGE_HELP
from train.backends import BACKENDS_HELP, BackendKind
from train.guidance import Guidance
from train.warmstart import Teacher

DEFAULT_GPU_MODEL = "Qwen/Qwen3-4B-Instruct-2507"


class GRPOConfig(BaseModel):
    # The fields keep the order they had before the CLI was built from them: state.json records the
    # config in it, and a validation error names the first bad field. The CLI groups them (train.grpo).
    env: str = Field("energy", description="env name, mcp.json or module:factory")
    base_model: str | None = Field(None, description=f"folder or HF id (default: embedded; local: {DEFAULT_GPU_MODEL})")
    backend: BackendKind = Field("torch", description=BACKENDS_HELP)
    trainer_gpus: list[int] | None = Field(None, description="dedicated mode: train on these GPUs (0 or 0,1)")
    inference_gpus: list[int] | None = Field(None, description="dedicated mode: serve from this GPU (e.g. 1)")
    judge: str | None = Field(None, description=JUDGE_HELP)
    judge_model: str | None = Field(None, description="model of LLM judges")
    judge_base_url: str | None = Field(None, description="endpoint of LLM judges")
    rubric: Path | None = Field(None, description="weights and penalties of the rules judge (YAML or JSON file)")
    # Six steps fit the 30 minutes of the embedded default since evaluation batches more rollouts
    # and the trainer attends prompt by prompt. Neither three (0, 0 points) nor six (+5, +2.5,
    # -7.5; +2.5, +2.5 with `step_tasks`) moved test success reliably (README, Results);
    # best_checkpoint/ guards the warm start.
    steps: int = Field(6, ge=0, description="GRPO steps")
    groups_per_step: int = Field(3, ge=1, description="tasks per step")
    group_size: int = Field(4, ge=2, description="rollouts per task (>= 2)")
    # judges.groups.has_signal
    signal: Spread = Field(
        "reward",
        description="train a group when its rewards differ (reward) or when it holds a success and a failure (success)",
    )
    # Group rewards are centred and divided by their std, so a near-tie such as [0.52, 0.52, 0.52,
    # 0.53] would train as hard as a success against failures; below this spread a group is dropped.
    min_spread: float = Field(
        0.05,
        ge=0,
        description="least reward spread (max - min) for a group to train: near-ties are noise at full strength",
    )
    # One optimizer step per GRPO step by default, gradients accumulated over all of the step's
    # packed sequences (ART's `grad_accumulation_sequences`): one step per sequence made an AdamW
    # step of about one group (4 rollouts) on the energy prompt.
    accumulate: int = Field(
        0,
        ge=0,
        description="packed sequences per optimizer step (torch backend; 0: all of a step's, one update per step)",
    )
    guidance: Guidance = Field(
        "oracle",
        description="a group with no success gets one successful member: the env's oracle demonstration, "
        "a teacher rollout (--teacher-base-url, else the policy few-shot), or none",
    )
    guidance_gamma: float = Field(
        0.1,
        ge=0,
        description="LUFFY's policy shaping of demonstration tokens, p/(p+gamma) "
        "(torch backend; 0: importance ratio 1)",
    )
    lr: float = Field(5e-5, gt=0, description="GRPO learning rate")
    # ART's KL penalty (`kl_penalty_coef`) towards the warm start's adapter (the base model when
    # there was none): tokens the policy has drifted to cost advantage, so a step cannot trade the
    # warm start's arguments away for one group's reward.
    kl: float = Field(0.0, ge=0, description="KL penalty towards the warm start's adapter (0: none)")
    max_turns: int = Field(4, ge=1, description="policy turns per rollout")
    max_tokens: int = Field(128, ge=1, description="tokens per policy turn")
    temperature: float = Field(0.7, ge=0, description="rollout sampling temperature")
    # Rollouts at once. vLLM batches them: the 40 test tasks take 71 s at 40, 87 s at 24 and 132 s
    # at 8 (embedded model, 2 cores); a GRPO step's 12 rollouts all run together.
    concurrency: int = Field(32, ge=1, description="rollouts at once")
    warm_start: str = Field("auto", description="auto | none | FILE (trajectory JSONL to SFT on)")
    warm_start_threshold: float = Field(
        0.2, ge=0, le=1, description="auto: warm start when the base probe success is below this"
    )
    probe_tasks: int = Field(8, ge=1, description="train tasks in the probe")
    teacher: Teacher = Field(
        "auto", description="model: few-shot teacher rollouts; oracle: expected calls run for real; auto: model+oracle"
    )
    teacher_base_url: str | None = Field(
        None, description="teacher endpoint (default: the base model; key in $TEACHER_API_KEY)"
    )
    teacher_model: str | None = Field(None, description="teacher model name at --teacher-base-url")
    # None: see `teacher_task_limit`.
    teacher_tasks: int | None = Field(
        None,
        ge=0,
        description="SFT tasks the teacher tries; oracle demonstrations cover the rest "
        "(default: all with --teacher-base-url, else 16)",
    )
    # One pass over many distinct demonstrations beats two over half as many at the same 32
    # optimizer steps and SFT time: 62.5% vs 47.5% test success for the embedded model (README).
    sft_tasks: int = Field(256, ge=1, description="train tasks to build SFT data from")
    sft_epochs: int = Field(1, ge=1, description="passes over the SFT data")
    sft_lr: float = Field(1e-3, gt=0, description="peak SFT learning rate (cosine schedule)")
    sft_batch_size: int = Field(
        8, ge=1, description="examples per SFT step; they share one copy of the system prompt and tool list"
    )
    sft_min_reward: float = Field(0.8, description="keep teacher rollouts >= this")
    eval_every: int = Field(3, ge=0, description="validate before step 1 and every N steps (0: never)")
    # The warm start and the final checkpoint run on the whole test split (120 energy tasks: one
    # task is 0.8 points, not 2.5), the base model (near 0 anyway) on a subset.
    eval_tasks: int = Field(0, ge=0, description="test tasks of the warm start and final (0: all)")
    base_eval_tasks: int = Field(40, ge=0, description="test tasks of the base model (0: all)")
    val_tasks: int = Field(16, ge=0, description="val tasks per validation (0: all)")
    skip_eval: bool = Field(False, description="no test evaluation before/after")
    project: str | None = Field(None, description="ART project (default: the env)")
    name: str = Field("agent", description="ART model name (checkpoints, served as name@step)")
    resume: bool = Field(False, description="continue the run of this --name from its last step")
    art_path: Path = Field(Path(".art"), description="ART's model folder")
    runs_dir: Path = Field(Path("runs/grpo"), description="metrics, curves, state, summaries")
    seed: int = Field(0, description="seed of the task choices (evaluation subsets, step order, SFT data)")
    # The energy tools prompt alone is ~1.2k tokens.
    max_model_len: int = Field(4096, ge=512, description="vLLM context (torch backend)")
    lora_rank: int = Field(8, ge=1, le=512, description="rank of the LoRA adapter (torch backend)")
    # Tracing and W&B are off unless asked for (MCPGYM_WEAVE, MCPGYM_WANDB=1 ask too).
    weave: str | None = Field(None, description="trace rollouts and step metrics (bare: mcpgym)")
    no_weave: bool = Field(False, description="no tracing even when MCPGYM_WEAVE is set")
    wandb: bool = Field(False, description="log ART's training metrics to W&B (needs WANDB_API_KEY)")
    no_progress: bool = Field(False, description="no progress bars")
    judge_api_key_env: str = Field("JUDGE_API_KEY", description="the judge key's variable")
    replay: str | None = Field(None, description=REPLAY_HELP)  # MODE[:PATH], read by envs.replay.replay_from_flag

    @property
    def project_name(self) -> str:
        return self.project or self.env.replace("/", "_").replace(":", "_")

    @property
    def run_dir(self) -> Path:
        return self.runs_dir / self.project_name / self.name

    @property
    def teacher_task_limit(self) -> int | None:
        """SFT tasks the teacher tries (None: all). The base model as its own few-shot teacher
        solves few (2 of 64, 0 of 32, 0 of 16 here) at the cost of long prompts, so by default it
        tries 16; a teacher at another endpoint tries every SFT task."""
        if self.teacher_tasks is not None:
            return self.teacher_tasks
        return None if self.teacher_base_url else 16
