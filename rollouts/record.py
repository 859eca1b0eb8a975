"""The trajectory record: the one line of JSONL that every stage reads and writes.

`rollouts.generate` writes it, judges score it, SFT trains on it, GRPO groups
it, eval reads it. Nothing converts it by hand in between.
"""

from __future__ import annotations

import datetime as _dt
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class TrajectoryError(BaseModel):
    kind: Literal["infra", "model"]
    message: str


class TurnStats(BaseModel):
    """One policy turn: how long it took and what it cost."""

    latency_s: float = 0.0
    prompt_tokens: int = 0
    completion_tokens: int = 0


class Trajectory(BaseModel):
    model_config = ConfigDict(extra="allow")

    id: str  # "{env}:{task_id}:s{sample}" — unique and stable, resume keys on it
    env: str
    task_id: str
    task: dict[str, Any]  # the envs.Task, dumped
    model: str = ""
    tools: list[dict[str, Any]] = Field(default_factory=list)
    messages: list[dict[str, Any]] = Field(default_factory=list)
    reward: float | None = None
    metrics: dict[str, Any] = Field(default_factory=dict)
    error: TrajectoryError | None = None
    logprobs: list[Any] | None = None  # per assistant turn: [{"token_ids": [...], "logprobs": [...]}]
    turns: list[TurnStats] = Field(default_factory=list)
    verdict: dict[str, Any] | None = None  # envs.Verdict, dumped
    sample: int = 0
    group: str | None = None  # rollouts of one task that form a GRPO group share this
    # Not sampled from the policy being trained: a demonstration (oracle or teacher) added to a
    # GRPO group that had no success. Its `logprobs` entries hold token ids with null logprobs.
    off_policy: bool = False
    created: str = Field(default_factory=lambda: utc_now())

    @property
    def is_infra_failure(self) -> bool:
        return self.error is not None and self.error.kind == "infra"

    @property
    def success(self) -> bool:
        return bool(self.verdict and self.verdict.get("success"))


def utc_now() -> str:
    return _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def trajectory_id(env: str, task_id: str, sample: int) -> str:
    return f"{env}:{task_id}:s{sample}"
