"""Two evaluations of the same tasks, compared task by task: what was fixed, what was lost, and
whether the difference is more than noise.

One task is 1/n of the success rate, so on 40 tasks a single lucky answer moves it 2.5 points and
the standard error of one run is ~7.7 points. A paired comparison looks only at the tasks whose
outcome changed: McNemar's exact test asks how likely that many fixes against that many losses
are if a change is a coin flip (two-sided binomial on the discordant pairs), and a paired bootstrap
over tasks gives a 95% interval of the difference in success rate.

    comparison = compare_runs(before_trajs, after_trajs, before="warm_start", after="grpo")
    print(format_comparison(comparison))
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence

from pydantic import BaseModel, Field

from contracts import Trajectory


def mcnemar_exact(fixed: int, lost: int) -> float:
    """Two-sided exact McNemar p-value: P(a split of the `fixed + lost` discordant tasks at least as
    uneven as this one | each is a fair coin). 1.0 when nothing changed."""
    n = fixed + lost
    if n == 0:
        return 1.0
    low = min(fixed, lost)
    tail = sum(math.comb(n, k) for k in range(low + 1)) / 2**n
    return min(1.0, 2 * tail)


def bootstrap_interval(
    before: Sequence[bool], after: Sequence[bool], *, samples: int = 10_000, seed: int = 0, level: float = 0.95
) -> tuple[float, float]:
    """Percentile interval of mean(after) - mean(before), resampling tasks (pairs) with replacement."""
    if len(before) != len(after):
        raise ValueError("paired samples need the same tasks")
    n = len(before)
    if n == 0:
        return (0.0, 0.0)
    deltas = [int(b) - int(a) for a, b in zip(before, after, strict=True)]
    rng = random.Random(seed)
    means = sorted(sum(deltas[rng.randrange(n)] for _ in range(n)) / n for _ in range(samples))
    tail = (1 - level) / 2
    return means[int(tail * (samples - 1))], means[math.ceil((1 - tail) * (samples - 1))]


class KindRow(BaseModel):
    """Success and plan success of one task kind, before and after."""

    kind: str
    n: int
    success_before: float
    success_after: float
    plan_before: float
    plan_after: float


class Comparison(BaseModel):
    """`after` against `before` on the tasks both ran (infra failures left out of both)."""

    before: str
    after: str
    n_tasks: int
    success_before: float
    success_after: float
    plan_before: float
    plan_after: float
    fixed: list[str] = Field(default_factory=list)  # task ids: failed before, solved after
    lost: list[str] = Field(default_factory=list)  # solved before, failed after
    p_mcnemar: float = 1.0
    diff: float = 0.0
    ci95: tuple[float, float] = (0.0, 0.0)
    by_kind: list[KindRow] = Field(default_factory=list)
    only_one: int = 0  # tasks that ran in only one of the two (or failed for infrastructure)

    @property
    def significant(self) -> bool:
        return self.p_mcnemar < 0.05


def _outcomes(trajs: Sequence[Trajectory]) -> dict[str, tuple[bool, bool, str]]:
    """task id -> (success, plan success, kind) for greedy single-sample evaluations."""
    from judges.metrics import analyze

    out: dict[str, tuple[bool, bool, str]] = {}
    for traj in trajs:
        if traj.is_infra_failure or traj.sample != 0:
            continue
        out[traj.task_id] = (traj.success, analyze(traj).plan_ok, traj.task.kind)
    return out


def _rate(values: Sequence[bool]) -> float:
    return sum(values) / len(values) if values else 0.0


def compare_runs(
    before: Sequence[Trajectory], after: Sequence[Trajectory], *, before_label: str = "A", after_label: str = "B"
) -> Comparison:
    """The paired comparison of two evaluations (trajectory lists) on their common tasks."""
    a, b = _outcomes(before), _outcomes(after)
    common = sorted(set(a) & set(b))
    success_a = [a[task][0] for task in common]
    success_b = [b[task][0] for task in common]
    fixed = [task for task in common if not a[task][0] and b[task][0]]
    lost = [task for task in common if a[task][0] and not b[task][0]]
    kinds: dict[str, list[str]] = {}
    for task in common:
        kinds.setdefault(a[task][2], []).append(task)
    rows = [
        KindRow(
            kind=kind,
            n=len(tasks),
            success_before=_rate([a[t][0] for t in tasks]),
            success_after=_rate([b[t][0] for t in tasks]),
            plan_before=_rate([a[t][1] for t in tasks]),
            plan_after=_rate([b[t][1] for t in tasks]),
        )
        for kind, tasks in sorted(kinds.items())
    ]
    return Comparison(
        before=before_label,
        after=after_label,
        n_tasks=len(common),
        success_before=_rate(success_a),
        success_after=_rate(success_b),
        plan_before=_rate([a[task][1] for task in common]),
        plan_after=_rate([b[task][1] for task in common]),
        fixed=fixed,
        lost=lost,
        p_mcnemar=mcnemar_exact(len(fixed), len(lost)),
        diff=_rate(success_b) - _rate(success_a),
        ci95=bootstrap_interval(success_a, success_b),
        by_kind=rows,
        only_one=len(set(a) ^ set(b)),
    )


def format_comparison(comparison: Comparison) -> str:
    """A few lines: the rates per kind, the changed tasks, the paired test."""
    c = comparison
    lines = [f"paired: {c.after} vs {c.before} on {c.n_tasks} tasks"]
    width = max([len("all"), *(len(row.kind) for row in c.by_kind)])
    lines.append(f"  {'kind'.ljust(width)}  {'n':>4}  success {c.before} -> {c.after}   plan success")
    for row in [
        KindRow(
            kind="all",
            n=c.n_tasks,
            success_before=c.success_before,
            success_after=c.success_after,
            plan_before=c.plan_before,
            plan_after=c.plan_after,
        ),
        *c.by_kind,
    ]:
        lines.append(
            f"  {row.kind.ljust(width)}  {row.n:>4}  {row.success_before:6.1%} -> {row.success_after:6.1%}"
            f"   {row.plan_before:6.1%} -> {row.plan_after:6.1%}"
        )
    lines.append(
        f"  fixed {len(c.fixed)}, lost {len(c.lost)}; difference {c.diff:+.1%} "
        f"(95% bootstrap interval {c.ci95[0]:+.1%} .. {c.ci95[1]:+.1%}); McNemar exact p = {c.p_mcnemar:.3g}"
    )
    if c.only_one:
        lines.append(f"  ({c.only_one} tasks ran in only one of the two, or failed for infrastructure: left out)")
    return "\n".join(lines)
