"""What a task is and what happens to it: the question, the calls a right solution makes, the
calls the model made, what each call did, and the environment's verdict."""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from .model_output import ModelJsonError, check_model_value, loads_model_json

TaskKind = Literal["single", "multi_step", "parallel", "no_tool", "open", "multi_turn"]


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


class SetupCall(BaseModel):
    """A call the environment makes before the model's first turn, to put the episode's
    server session in the task's starting state (load a scenario, seed a database).

    `tool` is the tool's name on its server (usually one the server hides from the model, see
    `envs.mcp_env.HIDDEN_META`); `server` names the env's server when it has several."""

    model_config = ConfigDict(extra="forbid")

    tool: str
    arguments: dict[str, Any] = Field(default_factory=dict)
    server: str | None = None


class FollowUp(BaseModel):
    """A later user turn of a conversation: the messages the user sends once the model has
    answered the turn before, and the tools offered from this turn on (added to those before)."""

    model_config = ConfigDict(extra="forbid")

    messages: list[dict[str, Any]]  # usually one {"role": "user", ...} message
    add_tools: list[str] = Field(default_factory=list)


class Task(BaseModel):
    """One question for an environment, with what a right solution looks like.

    The optional fields a stateful or conversational environment needs: `setup` (calls that
    seed the episode's state before the first turn), `tools` (the names of the env's tools
    this task offers at first; None: all) and `follow_ups` (the later user turns, in order)."""

    model_config = ConfigDict(extra="forbid")

    id: str
    question: str
    answer: Any = None  # checkable answer; None for open questions
    expected_calls: list[ExpectedCall] = Field(default_factory=list)
    kind: TaskKind = "single"
    split: str | None = None
    tolerance: float = 0.01  # relative tolerance for numeric answers
    metadata: dict[str, Any] = Field(default_factory=dict)
    setup: list[SetupCall] = Field(default_factory=list)
    tools: list[str] | None = None
    follow_ups: list[FollowUp] = Field(default_factory=list)


class ToolCall(BaseModel):
    """A call as the model made it. `arguments` is kept as the model's raw text
    when it is a string, because text that is not JSON is a model mistake the
    environment must report, not a crash."""

    id: str
    name: str
    arguments: str | dict[str, Any] = "{}"

    def parsed_arguments(self) -> dict[str, Any]:
        """Arguments as a dict; raises ValueError (nothing else) for whatever else the model wrote:
        not JSON, not an object, nested too deep, a number or text no consumer takes
        (`contracts.model_output`). The env answers it as `bad_arguments`: the model's mistake."""
        try:
            if isinstance(self.arguments, dict):
                check_model_value(self.arguments)
                return self.arguments
            value = loads_model_json(self.arguments.strip() or "{}")
        except ModelJsonError as exc:
            raise ValueError(f"arguments are {exc}") from None
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
    # record/replay of tool results (envs.replay): "hit" from the store, "miss" not in it (called live
    # and recorded, under auto), "recorded" (under record); None without a store
    replay: Literal["hit", "miss", "recorded"] | None = None


class Verdict(BaseModel):
    """The environment's judgement of a finished episode."""

    success: bool
    score: float = 0.0  # 0..1
    reason: str = ""
