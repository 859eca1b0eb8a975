"""One writer per output file: an exclusive, non-blocking `flock` on a sibling `<out>.lock`.

Every resumable writer (`rollouts.generate`, `judges.score`, `train.bfcl`, `rollouts.questions`,
`train.eval` and the evaluations GRPO runs: each trajectory file) holds `output_lock(out)` for as
long as it reads, compacts and appends to `out`. A second process on the same file does not
wait: it gets `OutputLocked`, a `UsageError`, so its CLI prints one line naming the holder's pid
and exits 2.

Why a sibling file and not `out` itself: a run may move `out` aside (`--no-resume`) or replace
it atomically (compaction on resume), which would leave a lock on `out` guarding an inode no
one writes any more. The lock file is removed on release; a process that locked a lock file
which was removed (or replaced) in the meantime notices the inode changed and tries again, so
two processes can never both believe they hold the lock. `flock` is released by the kernel when
its holder dies, so a `kill -9` never leaves a stale lock behind (at most an empty lock file).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from common.cli import UsageError


class OutputLocked(UsageError):
    """Another process is writing this output file."""


def lock_path(out: str | Path) -> Path:
    out = Path(out)
    return out.with_name(out.name + ".lock")


def _holder(path: Path) -> str:
    try:
        text = path.read_text().strip()
    except OSError:
        text = ""
    return f"pid {text}" if text.isdigit() else "another process"


@contextlib.contextmanager
def output_lock(out: str | Path) -> Iterator[Path]:
    """Hold the one-writer lock of `out` (yields the lock file's path); raise `OutputLocked` at once
    when another process holds it."""
    path = lock_path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise OutputLocked(
                f"{out} is being written by {_holder(path)} (lock {path}); wait for it to finish or pass another output"
            ) from None
        # The holder before us may have removed the file between our open and our flock: then we
        # locked an orphan inode and must start over on the file that is there now.
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield path
    finally:
        # Unlink while still holding the lock, so no one can lock this inode after we let go.
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        os.close(fd)
