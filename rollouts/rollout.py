"""One rollout: reset, then policy turn / env step until an answer, and record it all.

The loop stops at a final answer (a turn without tool calls), when the env
says the episode is done, after `max_turns` policy turns, or when the
conversation outgrows `max_total_tokens`. What is recorded is the trajectory
record of `contracts.record`: OpenAI-format messages, the tools, per-turn latency,
tokens and finish reason, every tool outcome, the stop reason, the env's verdict
and the reward (the verdict's score; judges may rescore later).

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
from typing import Any, Literal

import anyio

from contracts import (
    EnvInfraError,
    Environment,
    Episode,
    Policy,
    PolicyTurn,
    StopReason,
    Task,
    ToolCall,
    ToolOutcome,
    Trajectory,
    TrajectoryError,
    TurnLogprobs,
    TurnStats,
    Verdict,
    trajectory_id,
)

from .errors import describe_error, is_context_overflow, is_transient
from .retry import RetryConfig


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
    env: Environment,
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
        task=task,
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
    episode: Episode,
    policy: Policy,
    task: Task,
    rec: _Recorder,
    max_turns: int,
    max_total_tokens: int | None,
    retry: RetryConfig,
) -> None:
    """User turn after user turn: each runs until an answer or `max_turns` policy turns, then the
    episode gives the next user turn (`next_user`) or ends the conversation (None)."""
    obs = await episode.reset(task)
    tools = obs.tools
    rec.traj.tools = tools
    rec.messages.extend(obs.messages)
    while True:
        stop = await _user_turn(episode, policy, tools, rec, max_turns, max_total_tokens, retry)
        if stop in ("env_done", "token_budget"):
            rec.stop = stop
            return
        following = await episode.next_user(rec.answer or "")
        if following is None:
            rec.stop = stop
            if stop == "max_turns":
                rec.fail("model", f"max_turns: no final answer after {max_turns} turns")
            return
        rec.next_user_turn(following.messages)
        if following.tools is not None:
            tools = rec.traj.tools = following.tools


async def _user_turn(
    episode: Episode,
    policy: Policy,
    tools: list[dict[str, Any]],
    rec: _Recorder,
    max_turns: int,
    max_total_tokens: int | None,
    retry: RetryConfig,
) -> StopReason:
    """Policy turn / env step until an answer, the env's end, the token budget or `max_turns`."""
    for _ in range(max_turns):
        turn = await act_with_retries(policy, rec.messages, tools, retry, rec.counter)
        rec.add_turn(turn)
        if not turn.tool_calls:
            rec.answer = turn.content
            return "answer"
        step_start = time.perf_counter()
        result = await episode.step(turn.tool_calls)
        rec.add_step(turn.tool_calls, result.messages, result.outcomes, time.perf_counter() - step_start)
        if result.done:  # the env ended the episode (e.g. a submit tool): the last text is the answer
            rec.answer = turn.content
            return "env_done"
        if max_total_tokens is not None and rec.context_tokens >= max_total_tokens:
            rec.fail("model", f"token_budget: {rec.context_tokens} tokens >= {max_total_tokens} without a final answer")
            return "token_budget"
    return "max_turns"


async def _verify(env: Environment, task: Task, rec: _Recorder) -> None:
    try:
        if len(rec.turn_calls) > 1:  # several user turns: the verifier gets the calls of each
            verdict = env.verify(task, rec.answer or "", rec.calls, turns=rec.turn_calls)
        else:
            verdict = env.verify(task, rec.answer or "", rec.calls)
        if inspect.isawaitable(verdict):
            verdict = await verdict
    except Exception as exc:
        _, message = classify_failure(exc)
        rec.fail("infra", f"verify: {message}")
        return
    if not isinstance(verdict, Verdict):
        verdict = Verdict.model_validate(verdict)
    rec.traj.verdict = verdict
    rec.traj.reward = verdict.score
    rec.traj.reward_parts = {"env": verdict.score}


class _Recorder:
    """Accumulates one trajectory as the loop runs, so a failure keeps what happened before it."""

    def __init__(self, traj: Trajectory, *, want_logprobs: bool) -> None:
        self.traj = traj
        self.want_logprobs = want_logprobs
        self.messages: list[dict[str, Any]] = []
        self.calls: list[ToolCall] = []
        self.turn_calls: list[list[ToolCall]] = [[]]  # the calls of each user turn
        self.outcomes: list[ToolOutcome] = []
        self.logprobs: list[TurnLogprobs | None] = []
        self.counter: Counter[str] = Counter()
        self.metrics: dict[str, Any] = {}
        self.answer: str | None = None
        self.stop: StopReason = "error"
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
                finish_reason=turn.finish_reason,
            )
        )
        self.counter["parse_errors"] += len(turn.parse_errors)
        self.counter["text_tool_call_turns"] += int(turn.text_tool_calls)
        self.context_tokens = turn.prompt_tokens + turn.completion_tokens
        if self.want_logprobs:
            self.logprobs.append(
                None if turn.logprobs is None else TurnLogprobs(message_index=index, **turn.logprobs.model_dump())
            )

    def add_step(
        self,
        calls: list[ToolCall],
        messages: list[dict[str, Any]],
        outcomes: list[ToolOutcome],
        latency_s: float,
    ) -> None:
        self.calls.extend(calls)
        self.turn_calls[-1].extend(calls)
        self.messages.extend(messages)
        self.outcomes.extend(outcomes)
        self.env_latency_s += latency_s

    def next_user_turn(self, messages: list[dict[str, Any]]) -> None:
        self.messages.extend(messages)
        self.turn_calls.append([])

    def fail(self, kind: str, message: str) -> None:
        if self.traj.error is None:  # the first failure is the cause; later ones are consequences
            self.traj.error = TrajectoryError(kind=kind, message=message)  # type: ignore[arg-type]

    def finish(self) -> Trajectory:
        traj = self.traj
        traj.messages = self.messages
        if self.want_logprobs:
            traj.logprobs = self.logprobs
        traj.answer = self.answer
        traj.tool_outcomes = self.outcomes
        traj.stop_reason = self.stop if traj.error is None or traj.error.kind == "model" else "error"
        turns = traj.turns
        self.metrics.update(
            {
                "turns": len(turns),
                "tool_calls": len(self.calls),
                "user_turns": len(self.turn_calls),
                "tool_errors": sum(1 for outcome in self.outcomes if not outcome.ok),
                "parse_errors": self.counter["parse_errors"],
                "text_tool_call_turns": self.counter["text_tool_call_turns"],
                "policy_retries": self.counter["policy_retries"],
                "prompt_tokens": sum(turn.prompt_tokens for turn in turns),
                "completion_tokens": sum(turn.completion_tokens for turn in turns),
                "context_tokens": self.context_tokens,
                "policy_latency_s": sum(turn.latency_s for turn in turns),
                "env_latency_s": self.env_latency_s,
            }
        )
        traj.metrics = {**self.metrics, **traj.metrics}
        return traj
