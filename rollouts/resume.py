"""Resume, the same way for every resumable writer: one record per id, infra failures run again.

`resume_records(out)` is called by each writer (rollouts' runner, so `rollouts.generate`,
`train.eval` and GRPO's evaluations; `judges.score`, `train.bfcl`, `rollouts.questions`) while it
holds `rollouts.lock.output_lock(out)`. It reads `out` and

- keeps ONE record per id, the last one written (a file from an older version, or one that two
  unlocked runs wrote at once, may hold an id twice);
- takes out the records `retry(record)` selects (by default: `error.kind == "infra"`), so the
  writer runs those ids again; `retry=None` keeps them (`--keep-infra`);
- when it dropped anything (a duplicate, a record to retry, a torn tail from a crash), rewrites
  `out` atomically (an unpredictable temp file in its folder, fsync, rename) with just the kept
  lines, byte for byte, in file order.

So the file is compacted before the writer appends anything: at every moment it holds at most one
record per id, and a reader (ours, `jq`, pandas) needs no "last one wins" rule of its own. A crash
during the rewrite leaves the old file (the rename is atomic); a crash after it leaves the kept
records and whatever was appended since, still one per id.

Memory: the file is streamed, one line at a time, twice at most (once to learn which line is the
last of each id, once to copy the kept lines). What stays in memory is one entry per distinct id:
its last line's byte offset and whether it is retried (the sets `done_ids` and `retry_ids` name
the same ids). Never the records: a writer that wants them streams `Resumed.iter_records()`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from common.files import atomic_writer

from .jsonl import iter_jsonl, iter_jsonl_lines

Record = dict[str, Any]


def is_infra_record(record: Record) -> bool:
    """A record whose work failed on infrastructure (the trajectory record's `error.kind`)."""
    error = record.get("error")
    return isinstance(error, dict) and error.get("kind") == "infra"


class Resumed(BaseModel):
    """What a writer resumes from."""

    path: Path | None = None  # the file resumed from (None: there was none)
    done_ids: set[str] = Field(default_factory=set)  # kept: one record each, in `path`
    retry_ids: set[str] = Field(default_factory=set)  # taken out of `path` to be run again
    duplicates: int = 0  # older records of an id that a later one replaced
    compacted: bool = False  # whether `path` was rewritten

    def iter_records(self) -> Iterator[Record]:
        """The kept records, one per id in file order, streamed from `path` (read them before
        appending: after compaction the file holds exactly these)."""
        if self.path is not None:
            yield from iter_jsonl(self.path)


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
    # id -> byte offset of its last line, negated (minus one) when that record is to be run again.
    last: dict[str, int] = {}
    lines = 0
    for _number, offset, _raw, record in iter_jsonl_lines(path):
        lines += 1
        ident = str(record.get(key))
        last.pop(ident, None)  # re-inserted below: a replaced record moves to where it was rewritten
        last[ident] = -offset - 1 if retry is not None and retry(record) else offset
    done = {ident for ident, offset in last.items() if offset >= 0}
    result = Resumed(
        path=path, done_ids=done, retry_ids=set(last) - done, duplicates=lines - len(last), compacted=False
    )
    if len(done) != lines or _torn_tail(path):
        _rewrite(path, last, key)
        result.compacted = True
    return result


def _torn_tail(path: Path) -> bool:
    with path.open("rb") as fh:
        size = fh.seek(0, 2)
        if size == 0:
            return False
        fh.seek(size - 1)
        return fh.read(1) != b"\n"


def _rewrite(path: Path, last: dict[str, int], key: str) -> None:
    """Copy the kept lines (the last of each id, not retried) into a new `path`, streaming."""
    with atomic_writer(path) as fh:
        for _number, offset, raw, record in iter_jsonl_lines(path):
            if last.get(str(record.get(key))) == offset:
                fh.write(raw if raw.endswith(b"\n") else raw + b"\n")
