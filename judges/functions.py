"""A reward function as a judge: `(trajectory) -> float | dict[str, float]`.

    def brevity(traj: Trajectory) -> dict[str, float]:
        return {"correct": float(traj.success), "short": 1.0 if len(traj.answer or "") < 200 else 0.0}

A number is the reward. A dict names components: its `"reward"` key is the reward when it has one,
else the mean of its values; every other key is recorded as a component, under
`reward_parts["<judge>/<key>"]` (`<judge>` is the name it was asked for: `mypkg.rewards:brevity`).
The function gets the trajectory record (`contracts.Trajectory`: `task`, `messages`, `answer`,
`verdict`, `tool_outcomes`, ...) and may be `async def`. What it raises, or a value that is not a
finite number (or a dict of them), makes that trajectory an infra failure of the judge (masked,
with the error's line), never a reward of 0.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Awaitable, Callable
from typing import Any

from contracts import Trajectory

from .base import Judge, mark_infra

RewardValue = float | dict[str, float]
RewardFunction = Callable[[Trajectory], RewardValue | Awaitable[RewardValue]]
REWARD_KEY = "reward"


def reward_of(value: Any) -> tuple[float, dict[str, float]]:
    """(the reward, the named components) of what a reward function returned; ValueError otherwise."""
    if isinstance(value, dict):
        if not value:
            raise ValueError("returned an empty dict")
        parts = {str(key): _number(item, f"[{key!r}]") for key, item in value.items()}
        reward = parts.pop(REWARD_KEY) if REWARD_KEY in parts else sum(parts.values()) / len(parts)
        return reward, parts
    return _number(value, ""), {}


def _number(value: Any, where: str) -> float:
    if not isinstance(value, int | float) or not math.isfinite(value):
        shown = repr(value) if isinstance(value, int | float) else f"a {type(value).__name__}"
        raise ValueError(f"returned{' ' + where if where else ''} {shown}: expected a finite number")
    return float(value)


class RewardFunctionJudge(Judge):
    """Each live trajectory scored by `function` on its own (an absolute judge)."""

    def __init__(self, function: RewardFunction, *, name: str = "reward", concurrency: int = 8) -> None:
        super().__init__(concurrency=concurrency)
        self.function = function
        self.name = name

    async def _score(self, live: list[Trajectory]) -> None:
        for traj in live:
            try:
                value = self.function(traj)
                if inspect.isawaitable(value):
                    value = await value
                reward, parts = reward_of(value)
            except Exception as exc:  # the user's function: its failure is the judge's, never a 0
                mark_infra(traj, f"judge {self.name}: {type(exc).__name__}: {exc}")
                self.stats.judge_failures += 1
                continue
            traj.reward = reward
            traj.reward_parts.update({f"{self.name}/{key}": part for key, part in parts.items()})


def verdict_score(traj: Trajectory) -> float:
    """The `env` judge: the env's verdict score, unchanged (no verdict: 0, the env passed nothing)."""
    return traj.verdict.score if traj.verdict is not None else 0.0
