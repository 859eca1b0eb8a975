"""Summary numbers of a set of trajectories: what the stats JSON of a run holds."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable
from typing import Any

from pydantic import BaseModel, Field

from contracts import Trajectory
from envs.replay import MISS_PREFIX
from rollouts.endpoints import EndpointStats


class Percentiles(BaseModel):
    n: int = 0
    mean: float = 0.0
    p50: float = 0.0
    p90: float = 0.0
    p99: float = 0.0
    max: float = 0.0


class RunStats(BaseModel):
    """Success is counted over scored trajectories only: infra failures are masked, never a 0."""

    count: int = 0
    new: int = 0  # written by this run
    resumed: int = 0  # already in the file and skipped
    retried: int = 0  # of `new`: ids the file held as infra failures, run again on resume
    scored: int = 0  # count minus infra failures
    success: int = 0
    success_rate: float = 0.0
    mean_reward: float | None = None
    errors: dict[str, int] = Field(default_factory=dict)  # by kind: infra / model
    error_messages: dict[str, int] = Field(default_factory=dict)  # the first words of each error, counted
    tool_calls_total: int = 0
    tool_calls_mean: float = 0.0
    tool_usage: dict[str, int] = Field(default_factory=dict)  # calls per tool name
    tool_exec_rate: float | None = None  # share of calls that ran without error
    tool_errors: dict[str, int] = Field(default_factory=dict)
    # record/replay of tool results (envs.replay): calls answered from the store, calls it lacked (called
    # live under auto; under replay each ends its rollout as an infra error), calls recorded under record
    replay_hits: int = 0
    replay_misses: int = 0
    replay_recorded: int = 0
    parse_errors: int = 0
    policy_retries: int = 0
    turns_mean: float = 0.0
    stop_reasons: dict[str, int] = Field(default_factory=dict)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    rollout_latency_s: Percentiles = Field(default_factory=Percentiles)
    turn_latency_s: Percentiles = Field(default_factory=Percentiles)
    wall_s: float | None = None  # of this run
    rollouts_per_s: float | None = None  # of this run
    # per policy replica (--base-url URL,URL,...): requests, failures, times taken out, over the run
    endpoints: list[EndpointStats] = Field(default_factory=list)


def percentiles(values: Iterable[float]) -> Percentiles:
    data = sorted(values)
    if not data:
        return Percentiles()

    def rank(q: float) -> float:  # nearest rank: a value that was actually observed
        return data[max(0, math.ceil(q * len(data)) - 1)]

    return Percentiles(
        n=len(data), mean=sum(data) / len(data), p50=rank(0.5), p90=rank(0.9), p99=rank(0.99), max=data[-1]
    )


def compute_stats(
    trajectories: Iterable[Trajectory], *, new: int | None = None, wall_s: float | None = None
) -> RunStats:
    trajs = list(trajectories)
    errors: Counter[str] = Counter()
    messages: Counter[str] = Counter()
    usage: Counter[str] = Counter()
    tool_errors: Counter[str] = Counter()
    stops: Counter[str] = Counter()
    replay: Counter[str | None] = Counter()
    rewards: list[float] = []
    outcomes_total = outcomes_ok = 0
    stats = RunStats(count=len(trajs))
    for traj in trajs:
        metrics: dict[str, Any] = traj.metrics
        if traj.error is not None:
            errors[traj.error.kind] += 1
            messages[f"{traj.error.kind}: {traj.error.message.split(':')[0]}"] += 1
            if traj.error.kind == "infra" and MISS_PREFIX in traj.error.message:
                replay["miss"] += 1
        stops[traj.stop_reason or "unknown"] += 1
        stats.parse_errors += int(metrics.get("parse_errors", 0))
        stats.policy_retries += int(metrics.get("policy_retries", 0))
        stats.tool_calls_total += int(metrics.get("tool_calls", 0))
        for outcome in traj.tool_outcomes:
            usage[outcome.name] += 1
            replay[outcome.replay] += 1
            outcomes_total += 1
            if outcome.ok:
                outcomes_ok += 1
            else:
                tool_errors[str(outcome.error)] += 1
        stats.prompt_tokens += sum(turn.prompt_tokens for turn in traj.turns)
        stats.completion_tokens += sum(turn.completion_tokens for turn in traj.turns)
        if traj.is_infra_failure:
            continue
        stats.scored += 1
        stats.success += int(traj.success)
        if traj.reward is not None:
            rewards.append(traj.reward)
    stats.success_rate = stats.success / stats.scored if stats.scored else 0.0
    stats.mean_reward = sum(rewards) / len(rewards) if rewards else None
    stats.errors = dict(errors)
    stats.error_messages = dict(messages.most_common(20))
    stats.tool_usage = dict(usage.most_common())
    stats.tool_errors = dict(tool_errors)
    stats.replay_hits, stats.replay_misses, stats.replay_recorded = replay["hit"], replay["miss"], replay["recorded"]
    stats.tool_exec_rate = outcomes_ok / outcomes_total if outcomes_total else None
    stats.tool_calls_mean = stats.tool_calls_total / len(trajs) if trajs else 0.0
    stats.turns_mean = sum(len(traj.turns) for traj in trajs) / len(trajs) if trajs else 0.0
    stats.stop_reasons = dict(stops)
    stats.rollout_latency_s = percentiles(float(traj.metrics.get("duration_s", 0.0)) for traj in trajs)
    stats.turn_latency_s = percentiles(turn.latency_s for traj in trajs for turn in traj.turns)
    stats.new = len(trajs) if new is None else new
    stats.resumed = len(trajs) - stats.new
    if wall_s is not None:
        stats.wall_s = wall_s
        stats.rollouts_per_s = stats.new / wall_s if wall_s > 0 else None
    return stats
