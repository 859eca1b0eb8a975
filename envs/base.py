"""The contracts every environment speaks: tasks, tool calls, observations, steps.

An environment is async and gym-like. `Environment` is one episode at a time:
`reset(task)` gives the starting messages and the OpenAI tool schemas,
`step(tool_calls)` runs the calls and gives one tool message per call. The
long-lived object that owns connections, tasks and the verifier (`MCPEnv`)
hands out isolated episodes with `episode()`, so many rollouts run at once.
"""

from __future__ import annotations

import json
from typing import Any, Literal, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field

TaskKind = Literal["single", "multi_step", "parallel", "no_tool", "open"]
IsolationMode = Literal["shared", "per_session", "per_process"]
# How an isolated episode's fresh stdio server starts: forked from a preloaded Python interpreter
# (`envs.forkserver`), spawned as a new process, or "auto" (fork where the server allows it).
StdioStart = Literal["auto", "fork", "spawn"]


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


class Observation(BaseModel):
    messages: list[dict[str, Any]]  # OpenAI chat messages to start from
    tools: list[dict[str, Any]]  # OpenAI tool schemas


class StepResult(BaseModel):
    messages: list[dict[str, Any]]  # one {"role": "tool", ...} message per call, in call order
    outcomes: list[ToolOutcome] = Field(default_factory=list)
    done: bool = False
    info: dict[str, Any] = Field(default_factory=dict)


class Verdict(BaseModel):
    """The environment's judgement of a finished episode."""

    success: bool
    score: float = 0.0  # 0..1
    reason: str = ""


class EnvInfraError(RuntimeError):
    """The environment itself failed (server died, connection refused, protocol
    error, start-up timeout). Never the model's fault: the rollout layer records
    it as `error.kind = "infra"` and it is masked from scoring."""


class EnvConfigError(ValueError):
    """A bad environment spec or MCP config: reported as one line, exit code 2."""


@runtime_checkable
class Environment(Protocol):
    """One episode: reset, then step until the policy answers."""

    async def reset(self, task: Task) -> Observation: ...

    async def step(self, tool_calls: list[ToolCall]) -> StepResult: ...

    async def aclose(self) -> None: ...
