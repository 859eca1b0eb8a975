"""A GRPO run's steps as people read them (train.grpo_loop): `reward_curve.png` drawn from
`metrics.jsonl`, and each step's log line.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any


def read_rows(path: Path) -> list[dict[str, Any]]:
    """The step rows of a `metrics.jsonl` (none when it is not there yet; bad lines skipped)."""
    from rollouts.jsonl import iter_jsonl

    return list(iter_jsonl(path, strict=False)) if path.is_file() else []


def finite(value: Any) -> bool:
    """A number that can be logged and plotted (not None, NaN or inf)."""
    return isinstance(value, int | float) and math.isfinite(value)


def fmt(value: Any) -> str:
    """A metric in a log line: three decimals, `-` when there is none."""
    return f"{value:.3f}" if finite(value) else "-"


def step_line(row: dict[str, Any]) -> str:
    """The log line of one step's metrics row (train.grpo_loop.Run.grpo_step)."""
    return (
        f"step {row['iteration']}: reward {fmt(row['reward_mean'])} ± {fmt(row['reward_std'])}, sampled success "
        f"{fmt(row['success_rate'])}, greedy {fmt(row['greedy_before'])} -> {fmt(row['greedy_after'])}, "
        f"{row['groups_trained']}/{row['groups']} groups trained ({row['groups_guided']} guided; "
        f"rollouts {row['rollout_s']:.0f}s, train {row['train_s']:.0f}s)"
    )


def plot_curve(rows: list[dict[str, Any]], path: Path, title: str, *, val0: float | None = None) -> Path | None:
    """Per step: reward mean ± std, sampled success, greedy success on the step's own tasks before
    and after its update; val success as squares, from step 0 (`val0`: the starting checkpoint)."""
    if not rows:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = [row["iteration"] for row in rows]
    mean = [row.get("reward_mean") or 0.0 for row in rows]
    std = [row.get("reward_std") or 0.0 for row in rows]
    figure, axis = plt.subplots(figsize=(7, 4), dpi=100)
    try:
        axis.plot(x, mean, marker="o", label="reward mean")
        axis.fill_between(
            x,
            [m - s for m, s in zip(mean, std, strict=True)],
            [m + s for m, s in zip(mean, std, strict=True)],
            alpha=0.2,
        )
        axis.plot(x, [row.get("success_rate") or 0.0 for row in rows], marker=".", label="sampled success")
        for key, style, label in (
            ("greedy_before", "v:", "greedy, step's tasks, before"),
            ("greedy_after", "^-", "greedy, step's tasks, after"),
        ):
            points = [(row["iteration"], row[key]) for row in rows if row.get(key) is not None]
            if points:
                axis.plot(*zip(*points, strict=True), style, label=label)
        val = [(0, val0)] if val0 is not None else []
        val += [(row["iteration"], row["val_success_rate"]) for row in rows if row.get("val_success_rate") is not None]
        if val:
            axis.plot(*zip(*val, strict=True), "s--", label="val success")
        axis.set_xlabel("step")
        axis.set_title(title)
        axis.grid(alpha=0.3)
        axis.legend(fontsize=7)
        figure.tight_layout()
        path.parent.mkdir(parents=True, exist_ok=True)
        figure.savefig(path)
    finally:
        plt.close(figure)
    return path
