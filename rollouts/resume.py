"""Resume, the same way for every resumable writer: one record per id, infra failures run again.

`resume_records(out)` is called by each writer (rollouts' runner, so `rollouts.generate`,
`train.eval` and GRPO's evaluations; `judges.score`, `train.bfcl`, `rollouts.questions`) while it
holds `rollouts.lock.output_lock(out)`. It reads `out` and

- keeps ONE record per id, the last one written (a file from an older version, or one that two
  unlocked runs wrote at once, may hold an id twice);
- takes out the records `retry(record)` selects (by default: `error.kind == "infra"`), so the
  writer runs those ids again; `retry=None` keeps them (`--keep-infra`);
- when it dropped anything (a duplicate, a record to retry, a torn tail from a crash), rewrites
  `out` atomically (temp file, fsync, rename) with just the kept records, in file order.

So the file is compacted before the writer appends anything: at every moment it holds at most one
record per id, and a reader (ours, `jq`, pandas) needs no "last one wins" rule of its own. A crash
during the rewrite leaves the old file (the rename is atomic); a crash after it leaves the kept
records and whatever was appended since, still one per id.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from .jsonl import iter_jsonl

Record = dict[str, Any]


def is_infra_record(record: Record) -> bool:
    """A record whose work failed on infrastructure (the trajectory record's `error.kind`)."""
    error = record.get("error")
    return isinstance(error, dict) and error.get("kind") == "infra"


class Resumed(BaseModel):
    """What a writer resumes from."""

    records: list[Record] = Field(default_factory=list)  # kept: one per id, file order
    retry: list[Record] = Field(default_factory=list)  # taken out to be run again (last record of each id)
    duplicates: int = 0  # older records of an id that a later one replaced
    compacted: bool = False  # whether `out` was rewritten

    @property
    def done_ids(self) -> set[str]:
        return {str(record.get("id")) for record in self.records}

    @property
    def retry_ids(self) -> set[str]:
        return {str(record.get("id")) for record in self.retry}


def resume_records(
    out: str | Path,
    *,
    retry: Callable[[Record], bool] | None = is_infra_record,
    key: str = "id",
) -> Resumed:
    """Read `out` for a resume (see the module docstring); call it holding `output_lock(out)`.
    A line in the middle that is not JSON raises `JsonlFormatError` and leaves the file alone."""
    path = Path(out)
    if not path.exists():
        return Resumed()
    latest: dict[str, Record] = {}
    lines = 0
    for record in iter_jsonl(path):
        lines += 1
        ident = str(record.get(key))
        latest.pop(ident, None)  # re-inserted below: a replaced record moves to where it was rewritten
        latest[ident] = record
    kept = [record for record in latest.values() if retry is None or not retry(record)]
    again = [record for record in latest.values() if retry is not None and retry(record)]
    result = Resumed(records=kept, retry=again, duplicates=lines - len(latest))
    if len(kept) != lines or _torn_tail(path):
        _rewrite(path, kept)
        result.compacted = True
    return result


def _torn_tail(path: Path) -> bool:
    size = path.stat().st_size
    if size == 0:
        return False
    with path.open("rb") as fh:
        fh.seek(-1, os.SEEK_END)
        return fh.read(1) != b"\n"


def _rewrite(path: Path, records: list[Record]) -> None:
    tmp = path.with_name(path.name + ".compact.tmp")
    with tmp.open("wb") as fh:
        for record in records:
            fh.write(json.dumps(record, ensure_ascii=False).encode() + b"\n")
        fh.flush()
        os.fsync(fh.fileno())  # the rename must not publish a file whose data is not on disk yet
    os.replace(tmp, path)
