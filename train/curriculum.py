"""Which training tasks each GRPO step runs (train.grpo_loop).

Random draws gave the 18 tasks of the default six steps 11 of the 19 energy signatures: a
conversion and a no-tool question three times each, `get_price_stats` never. So the steps walk one
seeded stratified order instead (train.warmstart.stratified_tasks), and a resumed run gets the same
tasks for the same step.
"""

from __future__ import annotations

from collections.abc import Sequence

from contracts import Task
from train.warmstart import stratified_tasks


def step_tasks(tasks: Sequence[Task], per_step: int, iteration: int, *, seed: int = 0) -> list[Task]:
    """The tasks of step `iteration` (1-based): consecutive slices of one seeded stratified order
    (`stratified_tasks`), so every step mixes task signatures and the steps go round all of them
    before repeating one."""
    order = stratified_tasks(tasks, len(tasks), seed=seed * 1_000_003 + 17, shuffled=False)
    if not order:
        return []
    start = (iteration - 1) * per_step
    return [order[(start + offset) % len(order)] for offset in range(min(per_step, len(order)))]
