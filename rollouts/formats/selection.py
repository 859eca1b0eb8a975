"""Which trajectories an export keeps: never infra failures, and what `--min-reward` /
`--success-only` ask for."""

from __future__ import annotations

from contracts import Trajectory


def selection_reason(traj: Trajectory, *, min_reward: float | None = None, success_only: bool = False) -> str | None:
    """Why a trajectory is not exported, or None when it is."""
    if traj.is_infra_failure:
        return "infra failure"
    if success_only and not traj.success:
        return "not verified successful"
    if min_reward is not None and (traj.reward is None or traj.reward < min_reward):
        return "unscored" if traj.reward is None else f"reward below {min_reward}"
    return None


def exportable(traj: Trajectory, *, min_reward: float | None = None, success_only: bool = False) -> bool:
    return selection_reason(traj, min_reward=min_reward, success_only=success_only) is None
