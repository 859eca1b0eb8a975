"""A trajectory JSONL file converted to one format: selection, conversion, and the counts of what
was changed or left out (`ExportResult`); llamafactory's dataset_info.json entry beside it."""

from __future__ import annotations

import warnings
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from contracts import Trajectory
from rollouts.jsonl import iter_trajectories, write_jsonl

from .base import ExportFormat, Unexpressible, resolve_format
from .chat import openai_record, trl_record
from .llamafactory import llamafactory_record, read_dataset_info, write_dataset_info
from .selection import selection_reason
from .swift import swift_record

CONVERTERS: dict[ExportFormat, Callable[..., tuple[dict[str, Any], list[str]]]] = {
    "llamafactory": llamafactory_record,
    "swift": swift_record,
    "trl": trl_record,
    "openai": openai_record,
}


def convert(traj: Trajectory, fmt: ExportFormat, *, think: bool = True) -> tuple[dict[str, Any], list[str]]:
    """One record in `fmt` and what was changed to fit it; raises `Unexpressible` (the reason)."""
    return CONVERTERS[fmt](traj, think=think)


class ExportResult(BaseModel):
    """What `export_file` did: every trajectory read is written, not selected, or skipped."""

    format: ExportFormat
    output: Path
    read: int = 0
    written: int = 0
    not_selected: dict[str, int] = Field(default_factory=dict)  # reason -> trajectories
    changed: dict[str, int] = Field(default_factory=dict)  # written, changed to fit: reason -> trajectories
    skipped: dict[str, int] = Field(default_factory=dict)  # selected, but the format cannot hold them
    dataset_info: Path | None = None  # llamafactory: the dataset_info.json holding the entry
    dataset_name: str | None = None

    def summary(self) -> str:
        def counts(items: dict[str, int]) -> str:
            return ", ".join(f"{n} {reason}" for reason, n in sorted(items.items(), key=lambda kv: -kv[1]))

        lines = [f"wrote {self.written} of {self.read} trajectories to {self.output} ({self.format})"]
        if self.changed:
            lines.append(f"  changed {sum(self.changed.values())}: {counts(self.changed)}")
        if self.skipped:
            lines.append(f"  skipped {sum(self.skipped.values())}: {counts(self.skipped)}")
        if self.not_selected:
            lines.append(f"  not selected {sum(self.not_selected.values())}: {counts(self.not_selected)}")
        if self.dataset_info is not None:
            lines.append(f"  LLaMA-Factory dataset {self.dataset_name!r} in {self.dataset_info}")
        return "\n".join(lines)


def export_file(
    src: str | Path,
    dst: str | Path,
    *,
    fmt: str = "llamafactory",
    min_reward: float | None = None,
    success_only: bool = False,
    think: bool = True,
    dataset_name: str | None = None,
) -> ExportResult:
    """Convert a trajectory JSONL file, counting what was changed or left out and why.

    Writes atomically; `llamafactory` also writes its entry (named `dataset_name`, default the
    output file's stem) into `dataset_info.json` beside the output. An old format name works, with a
    `FutureWarning`."""
    name, warning = resolve_format(fmt)
    if warning:
        warnings.warn(warning, FutureWarning, stacklevel=2)
    dst = Path(dst)
    if name == "llamafactory":
        read_dataset_info(dst.parent / "dataset_info.json")  # a broken one fails before anything is written
    result = ExportResult(format=name, output=dst)
    not_selected: Counter[str] = Counter()
    changed: Counter[str] = Counter()
    skipped: Counter[str] = Counter()

    def records() -> Iterator[dict[str, Any]]:
        # Streamed into the output's temp file: a bad line raises before the rename, so `dst` is
        # left as it was (nothing is written), and only one trajectory is in memory at a time.
        for traj in iter_trajectories(src):
            result.read += 1
            reason = selection_reason(traj, min_reward=min_reward, success_only=success_only)
            if reason is not None:
                not_selected[reason] += 1
                continue
            try:
                record, notes = convert(traj, name, think=think)
            except Unexpressible as exc:
                skipped[str(exc)] += 1
                continue
            changed.update(set(notes))
            yield record

    result.written = write_jsonl(dst, records())
    result.not_selected, result.changed, result.skipped = dict(not_selected), dict(changed), dict(skipped)
    if name == "llamafactory":
        result.dataset_name = dataset_name or dst.stem
        result.dataset_info = write_dataset_info(dst.parent, result.dataset_name, dst.name)
    return result
