"""GRPO groups: which trajectories form one, which members count, which groups carry signal.

A group is the rollouts of one task that GRPO compares (`Trajectory.group`, else every rollout of
its task). Only live members count: an infra failure says nothing about the model, and neither
does a member left without a reward. GRPO learns from differences within a group, so a group needs
`MIN_MEMBERS` live members to compare (a relative judge such as RULER needs them too), and to be
trained on, a spread of rewards (`has_signal`).

The one place these rules are written: the judges (`Judge.score_group`, `scored_groups`) and the
GRPO loop (`signal_groups`) all use them.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Literal

from contracts import Trajectory, group_id

# What a group needs to be trained on: its rewards differ (reward), or it holds a success and a
# failure (success).
Spread = Literal["reward", "success"]
MIN_MEMBERS = 2  # fewer live members than this: nothing to compare
_TIE = 1e-6  # reward spreads below this are ties whatever `min_spread` says


def group_key(traj: Trajectory) -> str:
    """The group a trajectory belongs to: its `group`, else every rollout of its task."""
    return traj.group or group_id(traj.env, traj.task_id)


def group_trajectories(trajs: Iterable[Trajectory]) -> list[list[Trajectory]]:
    """The trajectories by group, groups in order of first appearance, members in input order."""
    groups: dict[str, list[Trajectory]] = {}
    for traj in trajs:
        groups.setdefault(group_key(traj), []).append(traj)
    return list(groups.values())


def live_members(group: Iterable[Trajectory], *, scored: bool = True) -> list[Trajectory]:
    """The members that say something about the model: no infra failure and, when `scored`
    (after judging), a reward."""
    return [traj for traj in group if not traj.is_infra_failure and (not scored or traj.reward is not None)]


def comparable(live: Sequence[Trajectory], min_size: int = MIN_MEMBERS) -> bool:
    """Whether `live` members are enough to compare (GRPO, a relative judge)."""
    return len(live) >= min_size


def has_signal(live: Sequence[Trajectory], spread: Spread = "reward", *, min_spread: float = 0.0) -> bool:
    """Whether scored `live` members differ enough to train on: a reward spread (max - min) of at
    least `min_spread` (no spread: no advantage, no gradient; a near-tie: noise trained at full
    strength, since ART scales a group's advantages by its std), and with `spread="success"` a
    success and a failure too (groups that all fail still differ in process reward, and training on
    those teaches caution rather than solving the task)."""
    rewards = [traj.reward for traj in live if traj.reward is not None]
    if not rewards or max(rewards) - min(rewards) < max(min_spread, _TIE):
        return False
    return spread != "success" or len({bool(traj.success) for traj in live}) == 2


def scored_groups(trajs: list[Trajectory], *, min_size: int = MIN_MEMBERS) -> tuple[list[list[Trajectory]], int]:
    """(groups fit to train on, number dropped): only live members count, and a group with fewer
    than `min_size` of them is dropped (GRPO learns nothing from a group it cannot compare)."""
    kept: list[list[Trajectory]] = []
    dropped = 0
    for group in group_trajectories(trajs):
        members = live_members(group)
        if comparable(members, min_size):
            kept.append(members)
        else:
            dropped += 1
    return kept, dropped


def signal_groups(
    scored: list[Trajectory], spread: Spread = "reward", *, min_spread: float = 0.0
) -> tuple[list[list[Trajectory]], dict[str, int]]:
    """The groups worth training on, their live members only, and the counts of what was left out:
    groups with too few live members to compare, and groups without signal (`has_signal`)."""
    kept, counts = [], {"groups": 0, "groups_no_signal": 0, "groups_too_small": 0, "n_infra": 0}
    for group in group_trajectories(scored):
        counts["groups"] += 1
        counts["n_infra"] += sum(1 for traj in group if traj.is_infra_failure)
        live = live_members(group)
        if not comparable(live):
            counts["groups_too_small"] += 1
        elif not has_signal(live, spread, min_spread=min_spread):
            counts["groups_no_signal"] += 1
        else:
            kept.append(live)
    return kept, counts
