"""The trajectory record: the one line of JSONL that every stage reads and writes.

`rollouts.generate` writes it, judges score it, SFT trains on it, GRPO groups it, eval reads it,
the exports convert it. Everything a consumer reads is a typed field here; `metrics` holds only
numbers (counts, latencies, judge scores) for stats and reports.
"""

from __future__ import annotations

import datetime as _dt
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from common.redact import redact_text

from .task import Task, ToolOutcome, Verdict

# Why the rollout loop stopped: a final answer, the env ended the episode, out of turns, out of
# tokens, or a failure (`error` says which).
StopReason = Literal["answer", "env_done", "max_turns", "token_budget", "error"]

# Fields that records written before this contract kept inside `metrics`.
_LEGACY_METRICS = ("tool_outcomes", "stop_reason", "finish_reasons")
# Reward parts that earlier judges kept inside `metrics`: the reward before RULER or the LLM judge
# rescored it (the rollout's, which is the verdict's score), and a composed judge's parts.
_LEGACY_INDEPENDENT = "independent_reward"
_LEGACY_PART_PREFIX = "reward_parts/"


class TrajectoryError(BaseModel):
    kind: Literal["infra", "model"]
    message: str  # one line; redacted (`common.redact.redact_text`) whoever wrote it

    @field_validator("message")
    @classmethod
    def _redacted(cls, value: str) -> str:
        # The message of any exception ends up here (an HTTP client's error quoting a URL with its
        # key, a command line): what a record keeps is redacted at the record.
        return redact_text(value)


class TurnStats(BaseModel):
    """One policy turn: how long it took, what it cost, and why the server stopped generating."""

    latency_s: float = 0.0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    finish_reason: str | None = None  # the server's: "stop", "tool_calls", "length", ...


class TurnLogprobs(BaseModel):
    """The sampled tokens of one assistant message (`messages[message_index]`), for RL.

    `logprobs` entries are None for tokens nobody sampled (an off-policy demonstration)."""

    message_index: int
    token_ids: list[int | None]
    logprobs: list[float | None]
    tokens: list[str] = Field(default_factory=list)


class Trajectory(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str  # "{env}:{task_id}:s{sample}" — unique and stable, resume keys on it
    env: str
    task_id: str
    task: Task
    model: str = ""
    tools: list[dict[str, Any]] = Field(default_factory=list)  # OpenAI tool schemas, as offered
    messages: list[dict[str, Any]] = Field(default_factory=list)  # OpenAI chat messages
    answer: str | None = None  # the final answer text (None: the loop ended without one)
    stop_reason: StopReason | None = None
    turns: list[TurnStats] = Field(default_factory=list)
    tool_outcomes: list[ToolOutcome] = Field(default_factory=list)  # one per tool call, in order
    logprobs: list[TurnLogprobs | None] | None = None  # per assistant turn, when recorded
    verdict: Verdict | None = None
    # The final reward GRPO trains on (None: not scored), and the named scores it was made from:
    # `env` (the verdict's score), each judge's reward under the judge's name, and the components
    # a judge names under `<judge>/<component>` (judges.registry).
    reward: float | None = None
    reward_parts: dict[str, float] = Field(default_factory=dict)
    metrics: dict[str, Any] = Field(default_factory=dict)
    error: TrajectoryError | None = None
    sample: int = 0
    group: str | None = None  # rollouts of one task that form a GRPO group share this
    # Not sampled from the policy being trained: a demonstration (oracle or teacher) added to a
    # GRPO group that had no success. Its `logprobs` entries hold token ids with null logprobs.
    off_policy: bool = False
    created: str = Field(default_factory=lambda: utc_now())

    @model_validator(mode="before")
    @classmethod
    def _lift_legacy(cls, data: Any) -> Any:
        """Read records of earlier versions, which kept structured data inside `metrics`, and
        hand-written ones whose task gives only some fields (its id is the record's `task_id`,
        its question the first user message)."""
        if not isinstance(data, dict):
            return data
        task = data.get("task")
        if isinstance(task, dict) and not ("id" in task and "question" in task):
            first_user = next((m.get("content") for m in data.get("messages") or [] if m.get("role") == "user"), "")
            data = {**data, "task": {"id": data.get("task_id", ""), "question": first_user or "", **task}}
        if not isinstance(data.get("metrics"), dict):
            return data
        data = _lift_reward_parts(data)
        metrics = data["metrics"]
        if not any(key in metrics for key in _LEGACY_METRICS):
            return data
        data, metrics = dict(data), dict(metrics)
        data.setdefault("tool_outcomes", metrics.pop("tool_outcomes", []))
        data.setdefault("stop_reason", metrics.pop("stop_reason", None))
        reasons = metrics.pop("finish_reasons", None) or []
        turns = [dict(turn) for turn in data.get("turns") or []]
        for turn, reason in zip(turns, reasons, strict=False):
            turn.setdefault("finish_reason", reason)
        data["turns"], data["metrics"] = turns, metrics
        return data

    @property
    def is_infra_failure(self) -> bool:
        return self.error is not None and self.error.kind == "infra"

    @property
    def success(self) -> bool:
        return bool(self.verdict and self.verdict.success)


def _lift_reward_parts(data: dict[str, Any]) -> dict[str, Any]:
    """`metrics["independent_reward"]` and `metrics["reward_parts/<name>"]` of earlier records
    into `reward_parts` (`env` and `<name>`), unless the record has `reward_parts` already."""
    metrics = data["metrics"]
    legacy = [key for key in metrics if key == _LEGACY_INDEPENDENT or key.startswith(_LEGACY_PART_PREFIX)]
    if not legacy or "reward_parts" in data:
        return data
    metrics = dict(metrics)
    parts: dict[str, float] = {}
    for key in legacy:
        value = metrics.pop(key)
        name = "env" if key == _LEGACY_INDEPENDENT else key.removeprefix(_LEGACY_PART_PREFIX)
        if isinstance(value, int | float):
            parts.setdefault(name, float(value))
    return {**data, "metrics": metrics, "reward_parts": parts}


def utc_now() -> str:
    return _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def trajectory_id(env: str, task_id: str, sample: int) -> str:
    return f"{env}:{task_id}:s{sample}"


def group_id(env: str, task_id: str) -> str:
    """Rollouts of one task form one GRPO group (the `group` the runner writes)."""
    return f"{env}:{task_id}"
