"""One rollout: reset, then policy turn / env step until an answer, and record it all.

The loop stops at a final answer (a turn without tool calls), when the env
says the episode is done, after `max_turns` policy turns, or when the
conversation outgrows `max_total_tokens`. What is recorded is the trajectory
record of DESIGN.md: OpenAI-format messages, the tools, per-turn latency and
tokens, every tool outcome, the env's verdict and the reward (the verdict's
score; judges may rescore later).

Failures are sorted by whose fault they are, because training must mask
infrastructure and learn from the model: the env breaking (`EnvInfraError`),
the policy server failing past its retries, or the rollout running out of
time are `error.kind = "infra"` (no verdict, no reward); running out of turns
or tokens without an answer is `error.kind = "model"` (verdict and reward kept).
"""

from __future__ import annotations

import inspect
import time
from collections import Counter
from typing import Any, Literal, Protocol

import anyio

from envs.base import EnvInfraError, Task, ToolCall, ToolOutcome, Verdict
from rollouts.record import Trajectory, TrajectoryError, TurnStats, trajectory_id

from .policy import PolicyTurn, describe_error, is_context_overflow, is_transient
from .retry import RetryConfig


class Policy(Protocol):
    """What a rollout needs from a policy (`ChatPolicy` is the real one)."""

    @property
    def model(self) -> str: ...

    async def act(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]]) -> PolicyTurn: ...


class InfraFailure(Exception):
    """Internal: a failure that is not the model's doing, with the line to record."""


async def act_with_retries(
    policy: Policy,
    messages: list[dict[str, Any]],
    tools: list[dict[str, Any]],
    retry: RetryConfig,
    counter: Counter[str],
) -> PolicyTurn:
    """`policy.act` with exponential backoff + jitter on transient errors; counts retries."""
    async for attempt in retry.retrying(counter):
        with attempt:
            return await policy.act(messages, tools)
    raise AssertionError("unreachable: tenacity reraises the last error")


async def rollout(
    env: Any,
    policy: Policy,
    task: Task,
    *,
    sample: int = 0,
    group: str | None = None,
    max_turns: int = 8,
    max_total_tokens: int | None = None,
    retry: RetryConfig | None = None,
    timeout_s: float | None = None,
) -> Trajectory:
    """Run one episode of `task` and return its trajectory; never raises for infra or model failures."""
    retry = retry or RetryConfig()
    traj = Trajectory(
        id=trajectory_id(env.name, task.id, sample),
        env=env.name,
        task_id=task.id,
        task=task.model_dump(mode="json"),
        model=policy.model,
        sample=sample,
        group=group,
    )
    rec = _Recorder(traj, want_logprobs=bool(getattr(getattr(policy, "config", None), "logprobs", False)))
    started = time.perf_counter()
    try:
        async with env.episode(group=group) as episode:
            # The deadline covers the turns only, so the episode is still closed
            # cleanly (outside the cancelled scope) when time runs out.
            with anyio.move_on_after(timeout_s) as deadline:
                await _loop(episode, policy, task, rec, max_turns, max_total_tokens, retry)
            if deadline.cancelled_caught:
                raise InfraFailure(f"timeout: the rollout ran past {timeout_s:g}s")
    except Exception as exc:  # sorted by whose fault it is; nothing escapes, nothing is dropped
        kind, message = classify_failure(exc)
        rec.fail(kind, message)
    rec.metrics["duration_s"] = time.perf_counter() - started
    if traj.error is None or traj.error.kind == "model":
        await _verify(env, task, rec)
    return rec.finish()


def classify_failure(exc: BaseException) -> tuple[Literal["infra", "model"], str]:
    """(kind, one line) for an exception that ended a rollout."""
    import openai

    from .policy import PolicyError

    exc = _leaf(exc)
    if isinstance(exc, InfraFailure):
        return "infra", str(exc)
    if isinstance(exc, EnvInfraError):
        return "infra", f"env: {describe_error(exc)}"
    if is_context_overflow(exc):
        return "model", f"context_overflow: {describe_error(exc)}"
    if isinstance(exc, openai.OpenAIError | PolicyError) or is_transient(exc):
        return "infra", f"policy: {describe_error(exc)}"
    # A bug in an env, a verifier or here: still not the model's fault, and it
    # must show up in the stats rather than kill a long run.
    return "infra", f"unexpected: {describe_error(exc)}"


def _leaf(exc: BaseException) -> BaseException:
    """The one real error inside task-group wrappers (anyio raises ExceptionGroups)."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc


async def _loop(
    episode: Any,
    policy: Policy,
    task: Task,
    rec: _Recorder,
    max_turns: int,
    max_total_tokens: int | None,
    retry: RetryConfig,
) -> None:
    obs = await episode.reset(task)
    rec.traj.tools = obs.tools
    rec.messages.extend(obs.messages)
    for _ in range(max_turns):
        turn = await act_with_retries(policy, rec.messages, obs.tools, retry, rec.counter)
        rec.add_turn(turn)
        if not turn.tool_calls:
            rec.answer = turn.content
            rec.stop = "answer"
            return
        step_start = time.perf_counter()
        result = await episode.step(turn.tool_calls)
        rec.add_step(turn.tool_calls, result.messages, result.outcomes, time.perf_counter() - step_start)
        if result.done:  # the env ended the episode (e.g. a submit tool): the last text is the answer
            rec.answer = turn.content
            rec.stop = "env_done"
            return
        if max_total_tokens is not None and rec.context_tokens >= max_total_tokens:
            rec.stop = "token_budget"
            rec.fail("model", f"token_budget: {rec.context_tokens} tokens >= {max_total_tokens} without a final answer")
            return
    rec.stop = "max_turns"
    rec.fail("model", f"max_turns: no final answer after {max_turns} turns")


async def _verify(env: Any, task: Task, rec: _Recorder) -> None:
    try:
        verdict = env.verify(task, rec.answer or "", rec.calls)
        if inspect.isawaitable(verdict):
            verdict = await verdict
    except Exception as exc:
        _, message = classify_failure(exc)
        rec.fail("infra", f"verify: {message}")
        return
    if not isinstance(verdict, Verdict):
        verdict = Verdict.model_validate(verdict)
    rec.traj.verdict = verdict.model_dump(mode="json")
    rec.traj.reward = verdict.score


class _Recorder:
    """Accumulates one trajectory as the loop runs, so a failure keeps what happened before it."""

    def __init__(self, traj: Trajectory, *, want_logprobs: bool) -> None:
        self.traj = traj
        self.want_logprobs = want_logprobs
        self.messages: list[dict[str, Any]] = []
        self.calls: list[ToolCall] = []
        self.outcomes: list[ToolOutcome] = []
        self.logprobs: list[dict[str, Any] | None] = []
        self.counter: Counter[str] = Counter()
        self.finish_reasons: list[str | None] = []
        self.metrics: dict[str, Any] = {}
        self.answer: str | None = None
        self.stop = "error"
        self.context_tokens = 0
        self.env_latency_s = 0.0

    def add_turn(self, turn: PolicyTurn) -> None:
        index = len(self.messages)
        self.messages.append(turn.message)
        self.traj.turns.append(
            TurnStats(
                latency_s=turn.latency_s,
                prompt_tokens=turn.prompt_tokens,
                completion_tokens=turn.completion_tokens,
            )
        )
        self.finish_reasons.append(turn.finish_reason)
        self.counter["parse_errors"] += len(turn.parse_errors)
        self.counter["text_tool_call_turns"] += int(turn.text_tool_calls)
        self.context_tokens = turn.prompt_tokens + turn.completion_tokens
        if self.want_logprobs:
            self.logprobs.append(
                None if turn.logprobs is None else {"message_index": index, **turn.logprobs.model_dump()}
            )

    def add_step(
        self,
        calls: list[ToolCall],
        messages: list[dict[str, Any]],
        outcomes: list[ToolOutcome],
        latency_s: float,
    ) -> None:
        self.calls.extend(calls)
        self.messages.extend(messages)
        self.outcomes.extend(outcomes)
        self.env_latency_s += latency_s

    def fail(self, kind: str, message: str) -> None:
        if self.traj.error is None:  # the first failure is the cause; later ones are consequences
            self.traj.error = TrajectoryError(kind=kind, message=message)  # type: ignore[arg-type]

    def finish(self) -> Trajectory:
        traj = self.traj
        traj.messages = self.messages
        if self.want_logprobs:
            traj.logprobs = self.logprobs
        traj.answer = self.answer  # type: ignore[attr-defined]  # an extra field of the record
        turns = traj.turns
        self.metrics.update(
            {
                "turns": len(turns),
                "tool_calls": len(self.calls),
                "tool_outcomes": [outcome.model_dump(mode="json") for outcome in self.outcomes],
                "tool_errors": sum(1 for outcome in self.outcomes if not outcome.ok),
                "parse_errors": self.counter["parse_errors"],
                "text_tool_call_turns": self.counter["text_tool_call_turns"],
                "policy_retries": self.counter["policy_retries"],
                "prompt_tokens": sum(turn.prompt_tokens for turn in turns),
                "completion_tokens": sum(turn.completion_tokens for turn in turns),
                "context_tokens": self.context_tokens,
                "policy_latency_s": sum(turn.latency_s for turn in turns),
                "env_latency_s": self.env_latency_s,
                "finish_reasons": self.finish_reasons,
                "stop_reason": self.stop if traj.error is None or traj.error.kind == "model" else "error",
            }
        )
        traj.metrics = {**self.metrics, **traj.metrics}
        return traj
