"""Crash-safe JSONL: whole lines appended at once, readers that survive a torn tail.

A writer appends each record as one `write()` of one complete line and flushes
it, so a kill at any moment leaves at most one partial last line. Readers skip
such a line (and say so), and the next append starts on a fresh line, so a
resumed run never glues a new record onto a torn one.

Readers stream: one line in memory at a time, however large the file. Files are
created owner-only and never written through a planted link (common.files).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from common.files import atomic_writer, open_private
from contracts import Trajectory


class JsonlFormatError(ValueError):
    """A line in the middle of a file is not JSON (a torn last line is not an error)."""


def iter_jsonl_lines(path: str | Path, *, strict: bool = True) -> Iterator[tuple[int, int, bytes, dict[str, Any]]]:
    """(line number from 1, byte offset, raw line with its newline, the object) for each JSON object,
    read one line at a time. A torn final line (a crash mid-write: no newline after it) is skipped;
    a bad line elsewhere raises JsonlFormatError when `strict`, else is skipped."""
    path = Path(path)
    offset = 0
    with path.open("rb") as fh:
        for number, raw in enumerate(fh, start=1):
            start, offset = offset, offset + len(raw)
            if not raw.strip():
                continue
            try:
                value = json.loads(raw)
            except (json.JSONDecodeError, UnicodeDecodeError):
                if not raw.endswith(b"\n") or not strict:
                    continue  # torn tail from a crash: the record was never complete
                raise JsonlFormatError(f"{path}:{number}: not a JSON line") from None
            if not isinstance(value, dict):
                if strict:
                    raise JsonlFormatError(f"{path}:{number}: expected a JSON object")
                continue
            yield number, start, raw, value


def iter_jsonl(path: str | Path, *, strict: bool = True) -> Iterator[dict[str, Any]]:
    """Yield each JSON object, one line read at a time (see `iter_jsonl_lines`)."""
    for _number, _offset, _raw, value in iter_jsonl_lines(path, strict=strict):
        yield value


def read_jsonl(path: str | Path, *, strict: bool = True) -> list[dict[str, Any]]:
    """Every object of the file in a list: for small files and tests; stream with `iter_jsonl`."""
    return list(iter_jsonl(path, strict=strict))


class NotATrajectory(ValueError):
    """A JSON line of a trajectory file that is not a trajectory."""


def iter_trajectories(path: str | Path) -> Iterator[Trajectory]:
    """The trajectories of a JSONL file, streamed. A line that is not a trajectory raises
    NotATrajectory once the file is read through: a line that is not JSON at all (JsonlFormatError)
    is the error to report first."""
    not_trajectory = None
    for number, raw in enumerate(iter_jsonl(path), start=1):
        if not_trajectory is not None:
            continue
        try:
            traj = Trajectory.model_validate(raw)
        except ValidationError:
            not_trajectory = number
            continue
        yield traj
    if not_trajectory is not None:
        raise NotATrajectory(f"{path}: record {not_trajectory} is not a trajectory")


class JsonlAppender:
    """Appends records to a JSONL file, one whole line per write, flushed (and
    fsynced when `durable`) so what was reported done is on disk. The file is
    created owner-only, and a link at its path is refused (common.files)."""

    def __init__(self, path: str | Path, *, durable: bool = False) -> None:
        self.path = Path(path)
        self.durable = durable
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = open_private(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT)
        needs_newline = not _ends_with_newline(fd)
        self._fh = os.fdopen(fd, "ab")
        if needs_newline:  # a torn tail: start the next record on its own line
            self._fh.write(b"\n")
            self._fh.flush()

    def write(self, record: BaseModel | dict[str, Any]) -> None:
        self._fh.write(_line(record, ensure_ascii=False))
        self._fh.flush()
        if self.durable:
            os.fsync(self._fh.fileno())

    def close(self) -> None:
        self._fh.close()

    def __enter__(self) -> JsonlAppender:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def write_jsonl(path: str | Path, records: Iterable[BaseModel | dict[str, Any]]) -> int:
    """Write a whole file atomically (an unpredictable temp file in its folder, then a rename),
    streaming `records` into it; returns how many. An error while iterating leaves `path` as it was."""
    count = 0
    with atomic_writer(path) as fh:
        for record in records:
            fh.write(_line(record, ensure_ascii=True))
            count += 1
    return count


def _line(record: BaseModel | dict[str, Any], *, ensure_ascii: bool) -> bytes:
    text = record.model_dump_json() if isinstance(record, BaseModel) else json.dumps(record, ensure_ascii=ensure_ascii)
    return text.encode() + b"\n"


def _ends_with_newline(fd: int) -> bool:
    """Whether the file behind `fd` is empty or ends with a newline (read by offset: no seek)."""
    size = os.fstat(fd).st_size
    return size == 0 or os.pread(fd, 1, size - 1) == b"\n"
