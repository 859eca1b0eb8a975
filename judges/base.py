"""What every judge shares: masking of infra failures, stats, scoring group by group.

A judge scores groups (the rollouts of one task that GRPO compares: judges.groups). It never
scores an infra-failed trajectory: that one keeps `reward = None` and is masked, because it says
nothing about the model. A group-relative judge (RULER) needs two scored members to compare; a
group with fewer is dropped (its members keep `reward = None`) and counted. When the judge itself
fails (malformed replies past the retries, the judge server down), the members it could not score
become infra failures (`error.kind = "infra"`), never 0.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any

import anyio
from pydantic import BaseModel

from contracts import Trajectory, TrajectoryError

from .groups import comparable, group_trajectories, live_members


class JudgeFailure(Exception):
    """The judge could not give a verdict (after its retries)."""


class JudgeStats(BaseModel):
    groups: int = 0
    groups_scored: int = 0
    groups_dropped: int = 0  # fewer than two scored members for a relative judge
    groups_infra: int = 0  # the judge failed on a whole group: members marked infra
    judge_failures: int = 0  # trajectories marked infra because the judge failed on them
    trajectories_masked: int = 0  # infra failures left unscored
    judge_calls: int = 0  # requests actually sent (cache hits are free)
    cache_hits: int = 0
    retries: int = 0
    malformed_replies: int = 0
    latency_s: float = 0.0  # summed over judge calls
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0

    def add_usage(self, usage: dict[str, Any]) -> None:
        self.prompt_tokens += int(usage.get("prompt_tokens") or 0)
        self.completion_tokens += int(usage.get("completion_tokens") or 0)
        self.cost_usd += float(usage.get("cost_usd") or 0.0)


def mark_infra(traj: Trajectory, message: str) -> None:
    """The judge failed on this trajectory: mask it like any infra failure, keeping what it was."""
    if traj.error is not None:
        traj.metrics["prior_error"] = traj.error.model_dump()
    traj.error = TrajectoryError(kind="infra", message=message)
    traj.reward = None
    traj.reward_parts = {}
    traj.metrics["judge_error"] = message


def verdict_parts(traj: Trajectory) -> dict[str, float]:
    """The part every judged trajectory keeps: the env's verdict score, under `env`."""
    return {"env": traj.verdict.score} if traj.verdict is not None else {}


class Judge(ABC):
    """Scores trajectories. Subclasses implement `_score(live)`: set `reward` and
    `metrics` on the (copied, non-infra) members in place, or raise JudgeFailure.

    Each scored member's `reward_parts` is rebuilt: the verdict's score (`env`), whatever
    components `_score` adds (`<name>/<component>`), and the judge's reward under its `name`
    (which the registry sets to the name the judge was asked for: judges.registry)."""

    name: str = "judge"
    relative: bool = False  # compares members of a group, so needs at least two
    records_part: bool = True  # its reward goes into `reward_parts[name]` (a composition's does not)

    def __init__(self, *, concurrency: int = 8) -> None:
        self.stats = JudgeStats()
        self.limiter = anyio.CapacityLimiter(concurrency)  # bounds judge requests, not groups

    @abstractmethod
    async def _score(self, live: list[Trajectory]) -> None: ...

    async def score_group(self, group: list[Trajectory]) -> list[Trajectory]:
        """Copies of `group` with `reward` and `metrics` set; infra failures masked."""
        copies = [traj.model_copy(deep=True) for traj in group]
        self.stats.groups += 1
        for traj in copies:
            if traj.is_infra_failure:
                traj.reward = None
                traj.reward_parts = {}
                traj.metrics["masked"] = "infra"
                self.stats.trajectories_masked += 1
        live = live_members(copies, scored=False)  # before scoring: no reward yet
        for traj in live:
            traj.reward_parts = verdict_parts(traj)  # what an earlier judge made of it is not this judge's
        if not live or (self.relative and not comparable(live)):
            for traj in live:
                traj.reward = None
                traj.reward_parts = {}
                traj.metrics["group_dropped"] = f"{len(live)} scored member(s): nothing to compare"
            self.stats.groups_dropped += 1
            return copies
        try:
            await self._score(live)
        except JudgeFailure as exc:
            for traj in live:
                mark_infra(traj, f"judge {self.name}: {exc}")
            self.stats.groups_infra += 1
            self.stats.judge_failures += len(live)
            return copies
        for traj in live:
            if traj.reward is None:
                traj.reward_parts = {}
            elif self.records_part:
                traj.reward_parts.setdefault(self.name, traj.reward)
        self.stats.groups_scored += 1
        return copies

    async def score(
        self,
        trajs: list[Trajectory],
        *,
        on_group: Callable[[list[Trajectory]], None] | None = None,
    ) -> list[Trajectory]:
        """Group by `traj.group` (else task), score every group concurrently, keep the input order."""
        order = {id(traj): index for index, traj in enumerate(trajs)}
        out: list[Trajectory | None] = [None] * len(trajs)

        async def run(group: list[Trajectory]) -> None:
            scored = await self.score_group(group)
            for original, copy in zip(group, scored, strict=True):
                out[order[id(original)]] = copy
            if on_group is not None:
                on_group(scored)

        async with anyio.create_task_group() as tg:
            for group in group_trajectories(trajs):
                tg.start_soon(run, group)
        return [traj for traj in out if traj is not None]

    async def aclose(self) -> None:
        """Release connections (judges that hold a client override this)."""
        return None

    def report(self) -> dict[str, float]:
        """Stats as a flat table (composed judges prefix their parts' names)."""
        return dict(self.stats.model_dump())


class Timer:
    """Wall time of one judge call."""

    def __enter__(self) -> Timer:
        self.start = time.perf_counter()
        self.elapsed = 0.0
        return self

    def __exit__(self, *exc: object) -> None:
        self.elapsed = time.perf_counter() - self.start
