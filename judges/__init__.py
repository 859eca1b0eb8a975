"""Judges: rewards and metrics for trajectories (contracts.Trajectory).

- `compute_metrics(trajs)` — function-calling metrics (judges.metrics);
- `rule_reward(traj, config)` — the rule rubric (ranked by default), no LLM (judges.rules);
- `build_judge(spec, ...)` — "rules" | "env" | "ruler" | "llm" | "module:function" | "ruler:0.7+rules:0.3":
  a `Judge` with `score_group(group)` and `score(trajs)` (judges.compose; the names: judges.registry);
- `register(name, reward_function)` — a judge of one's own by name, in one line (judges.registry);
  `default_judge_of(env)` — the spec `--judge` means when not given;
- `scored_groups(trajs)` — the groups fit for GRPO, and how many were dropped;
  `signal_groups(scored, spread)` — those that also carry signal to train on (judges.groups).

Infra-failed trajectories are never scored (reward None, masked), and a
judge that fails marks what it could not score as infra, never 0.
"""

from __future__ import annotations

import os

# litellm (under ART's RULER) fetches a price list from the network when it is
# first imported unless told not to; judges must work offline.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from importlib import import_module
from typing import TYPE_CHECKING, Any

# Names resolve on first use, so `python -m judges.metrics` does not find its own module
# already imported by the package (runpy warns about that) and `import judges` stays light.
_EXPORTS = {
    "Judge": "base",
    "JudgeFailure": "base",
    "JudgeStats": "base",
    "Spread": "groups",
    "group_key": "groups",
    "group_trajectories": "groups",
    "scored_groups": "groups",
    "signal_groups": "groups",
    "build_judge": "compose",
    "parse_spec": "compose",
    "compute_metrics": "metrics",
    "RubricConfig": "rules",
    "rule_reward": "rules",
    "JUDGES": "registry",
    "JudgeOptions": "registry",
    "default_judge_of": "registry",
    "register": "registry",
    "RewardFunctionJudge": "functions",
}

if TYPE_CHECKING:
    from .base import Judge, JudgeFailure, JudgeStats
    from .compose import build_judge, parse_spec
    from .functions import RewardFunctionJudge
    from .groups import Spread, group_key, group_trajectories, scored_groups, signal_groups
    from .metrics import compute_metrics
    from .registry import JUDGES, JudgeOptions, default_judge_of, register
    from .rules import RubricConfig, rule_reward


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module 'judges' has no attribute {name!r}")


__all__ = [
    "JUDGES",
    "Judge",
    "JudgeFailure",
    "JudgeOptions",
    "JudgeStats",
    "RewardFunctionJudge",
    "RubricConfig",
    "Spread",
    "build_judge",
    "compute_metrics",
    "default_judge_of",
    "group_key",
    "group_trajectories",
    "parse_spec",
    "register",
    "rule_reward",
    "scored_groups",
    "signal_groups",
]
