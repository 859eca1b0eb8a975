"""What the rollout loop needs from an environment, and what an environment gives back.

An `Environment` is long-lived: it owns connections, tasks and the verifier, and hands out
isolated `Episode`s, so many rollouts run at once. An `Episode` is async and gym-like:
`reset(task)` gives the starting messages and the OpenAI tool schemas, `step(tool_calls)` runs
the calls and gives one tool message per call, and `next_user(answer)` gives the next user turn
of a conversation of several user turns (None when the conversation is over, which is at once
for a single question). `envs.MCPEnv` is the implementation for any MCP server.
"""

from __future__ import annotations

import contextlib
from typing import Any, Literal, Protocol, runtime_checkable

from pydantic import BaseModel, Field

from common.cli import UsageError
from common.redact import redact_text

from .task import Task, ToolCall, ToolOutcome, Verdict

IsolationMode = Literal["shared", "per_session", "per_process"]
# How an isolated episode's fresh stdio server starts: forked from a preloaded Python interpreter
# (`envs.forkserver`), spawned as a new process, or "auto" (fork where the server allows it).
StdioStart = Literal["auto", "fork", "spawn"]


class Observation(BaseModel):
    messages: list[dict[str, Any]]  # OpenAI chat messages to start from
    tools: list[dict[str, Any]]  # OpenAI tool schemas


class StepResult(BaseModel):
    messages: list[dict[str, Any]]  # one {"role": "tool", ...} message per call, in call order
    outcomes: list[ToolOutcome] = Field(default_factory=list)
    done: bool = False
    info: dict[str, Any] = Field(default_factory=dict)


class UserTurn(BaseModel):
    """The next user turn of a conversation: its messages, and the tools from then on."""

    messages: list[dict[str, Any]]  # usually one {"role": "user", ...} message
    tools: list[dict[str, Any]] | None = None  # None: the tools stay as they were


class EnvInfraError(RuntimeError):
    """The environment itself failed (server died, connection refused, protocol
    error, start-up timeout). Never the model's fault: the rollout layer records
    it as `error.kind = "infra"` and it is masked from scoring.

    Its text goes into logs and trajectories, so it is redacted once, here
    (`common.redact.redact_text`: URLs, `--token X`, key-like words)."""

    def __init__(self, message: object = "", *args: object) -> None:
        super().__init__(redact_text(str(message)), *args)


class EnvConfigError(UsageError, ValueError):
    """A bad environment spec or MCP config: reported as one line, exit code 2."""


@runtime_checkable
class Episode(Protocol):
    """One episode: reset, then step until the policy answers; then the next user turn, if any."""

    async def reset(self, task: Task) -> Observation: ...

    async def step(self, tool_calls: list[ToolCall]) -> StepResult: ...

    async def next_user(self, answer: str) -> UserTurn | None: ...

    async def aclose(self) -> None: ...


@runtime_checkable
class Environment(Protocol):
    """What `rollouts.rollout` uses: a name for the record, tasks, isolated episodes, a verifier.

    `verify` may be sync or async; `calls` are all the model's tool calls, in order; `turns` (given
    only when the conversation had several user turns) are the calls of each user turn."""

    name: str

    def tasks(self, split: str = "train") -> list[Task]: ...

    def episode(self, group: str | None = None) -> contextlib.AbstractAsyncContextManager[Episode]: ...

    def verify(
        self, task: Task, answer: str, calls: list[ToolCall], *, turns: list[list[ToolCall]] | None = None
    ) -> Verdict | Any: ...
