"""What a task is and what happens to it: the question, the calls a right solution makes, the
calls the model made, what each call did, and the environment's verdict."""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

TaskKind = Literal["single", "multi_step", "parallel", "no_tool", "open"]


class ExpectedCall(BaseModel):
    """A call a correct solution makes.

    `arguments` holds the canonical values. `alternatives` maps a parameter to
    every acceptable value (the possible-answer convention of the Berkeley
    Function Calling Leaderboard); an empty string "" among them means the
    parameter may be omitted. `step` orders calls: every call of step 0 must
    come before any call of step 1; calls of one step may run in parallel.
    """

    model_config = ConfigDict(extra="forbid")

    name: str
    arguments: dict[str, Any] = Field(default_factory=dict)
    alternatives: dict[str, list[Any]] = Field(default_factory=dict)
    step: int = 0


class Task(BaseModel):
    """One question for an environment, with what a right solution looks like."""

    model_config = ConfigDict(extra="forbid")

    id: str
    question: str
    answer: Any = None  # checkable answer; None for open questions
    expected_calls: list[ExpectedCall] = Field(default_factory=list)
    kind: TaskKind = "single"
    split: str | None = None
    tolerance: float = 0.01  # relative tolerance for numeric answers
    metadata: dict[str, Any] = Field(default_factory=dict)


class ToolCall(BaseModel):
    """A call as the model made it. `arguments` is kept as the model's raw text
    when it is a string, because text that is not JSON is a model mistake the
    environment must report, not a crash."""

    id: str
    name: str
    arguments: str | dict[str, Any] = "{}"

    def parsed_arguments(self) -> dict[str, Any]:
        """Arguments as a dict; raises ValueError when they are not a JSON object."""
        if isinstance(self.arguments, dict):
            return self.arguments
        text = self.arguments.strip() or "{}"
        try:
            value = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"arguments are not valid JSON: {exc.msg} at position {exc.pos}") from None
        if not isinstance(value, dict):
            raise ValueError(f"arguments must be a JSON object, got {type(value).__name__}")
        return value

    def to_openai(self) -> dict[str, Any]:
        args = self.arguments if isinstance(self.arguments, str) else json.dumps(self.arguments)
        return {"id": self.id, "type": "function", "function": {"name": self.name, "arguments": args}}


class ToolOutcome(BaseModel):
    """What happened to one call, for metrics (`exec_rate`, latency)."""

    call_id: str
    name: str
    ok: bool
    error: str | None = None  # "unknown_tool" | "bad_arguments" | "tool_error" | "timeout"
    latency_s: float = 0.0
    truncated: bool = False


class Verdict(BaseModel):
    """The environment's judgement of a finished episode."""

    success: bool
    score: float = 0.0  # 0..1
    reason: str = ""
