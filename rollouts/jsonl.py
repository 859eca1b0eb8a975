"""Crash-safe JSONL: whole lines appended at once, readers that survive a torn tail.

A writer appends each record as one `write()` of one complete line and flushes
it, so a kill at any moment leaves at most one partial last line. Readers skip
such a line (and say so), and the next append starts on a fresh line, so a
resumed run never glues a new record onto a torn one.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pydantic import BaseModel


class JsonlFormatError(ValueError):
    """A line in the middle of a file is not JSON (a torn last line is not an error)."""


def iter_jsonl(path: str | Path, *, strict: bool = True) -> Iterator[dict[str, Any]]:
    """Yield each JSON object. A torn final line (a crash mid-write) is skipped;
    a bad line elsewhere raises JsonlFormatError when `strict`, else is skipped."""
    path = Path(path)
    with path.open("rb") as fh:
        lines = fh.read().split(b"\n")
    last = len(lines) - 1
    for number, raw in enumerate(lines):
        if not raw.strip():
            continue
        try:
            value = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError):
            if number == last or not strict:
                continue  # torn tail from a crash: the record was never complete
            raise JsonlFormatError(f"{path}:{number + 1}: not a JSON line") from None
        if not isinstance(value, dict):
            if strict:
                raise JsonlFormatError(f"{path}:{number + 1}: expected a JSON object")
            continue
        yield value


def read_jsonl(path: str | Path, *, strict: bool = True) -> list[dict[str, Any]]:
    return list(iter_jsonl(path, strict=strict))


class JsonlAppender:
    """Appends records to a JSONL file, one whole line per write, flushed (and
    fsynced when `durable`) so what was reported done is on disk."""

    def __init__(self, path: str | Path, *, durable: bool = False) -> None:
        self.path = Path(path)
        self.durable = durable
        self.path.parent.mkdir(parents=True, exist_ok=True)
        needs_newline = self.path.exists() and self.path.stat().st_size > 0 and not _ends_with_newline(self.path)
        self._fh = self.path.open("ab")
        if needs_newline:  # a torn tail: start the next record on its own line
            self._fh.write(b"\n")
            self._fh.flush()

    def write(self, record: BaseModel | dict[str, Any]) -> None:
        if isinstance(record, BaseModel):
            text = record.model_dump_json()
        else:
            text = json.dumps(record, ensure_ascii=False)
        self._fh.write(text.encode() + b"\n")
        self._fh.flush()
        if self.durable:
            os.fsync(self._fh.fileno())

    def close(self) -> None:
        self._fh.close()

    def __enter__(self) -> JsonlAppender:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def write_jsonl(path: str | Path, records: list[BaseModel] | list[dict[str, Any]]) -> None:
    """Write a whole file atomically (temp file + rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", encoding="utf-8") as fh:
        for record in records:
            fh.write((record.model_dump_json() if isinstance(record, BaseModel) else json.dumps(record)) + "\n")
    os.replace(tmp, path)


def _ends_with_newline(path: Path) -> bool:
    with path.open("rb") as fh:
        fh.seek(-1, os.SEEK_END)
        return fh.read(1) == b"\n"
