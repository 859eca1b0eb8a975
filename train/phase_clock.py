"""Where a run's time goes: seconds per phase, each phase's own time only (a phase run inside
another, such as a validation inside the GRPO loop, is taken out of the outer one), so the phases
add up to the run's wall time and each one's share of it can be read off."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

# Phases whose time is RL proper: sampling the groups, judging, guiding and training them.
RL_PREFIX = "grpo"


class PhaseClock:
    """Adds each phase's exclusive seconds to `seconds` (the run's state keeps the dict, so a
    resumed run goes on adding to it)."""

    def __init__(self, seconds: dict[str, float]) -> None:
        self.seconds = seconds
        self._inner: list[float] = []  # per open phase: the seconds of the phases inside it

    def add(self, phase: str, seconds: float) -> None:
        self.seconds[phase] = self.seconds.get(phase, 0.0) + seconds

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        started = time.perf_counter()
        self._inner.append(0.0)
        try:
            yield
        finally:
            inner = self._inner.pop()
            total = time.perf_counter() - started
            self.add(name, total - inner)
            if self._inner:
                self._inner[-1] += total


def phase_table(seconds: dict[str, float]) -> dict[str, dict[str, float]]:
    """{phase: {seconds, share}} in the order the phases first ran, plus `total` and `rl` (the
    phases under `grpo`, validations excluded)."""
    total = sum(seconds.values())
    rows = {name: {"seconds": value, "share": value / total if total else 0.0} for name, value in seconds.items()}
    rl = sum(value for name, value in seconds.items() if name.split(":")[0] == RL_PREFIX)
    rows["rl"] = {"seconds": rl, "share": rl / total if total else 0.0}
    rows["total"] = {"seconds": total, "share": 1.0 if total else 0.0}
    return rows


def format_phases(table: dict[str, dict[str, float]]) -> str:
    lines = [f"{'phase':<22}{'seconds':>10}{'share':>9}"]
    for name, row in table.items():
        if name == "rl":
            lines.append("-" * 41)
        lines.append(f"{name:<22}{row['seconds']:>10.1f}{row['share']:>8.1%}")
    return "\n".join(lines)
