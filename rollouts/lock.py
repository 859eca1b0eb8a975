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

A neighbour who can write the output's folder may plant `<out>.lock` as a link to a file of ours:
the lock is opened with `O_NOFOLLOW` (common.files.open_private), created `0600`, and a link,
another user's file or a hard-linked one is refused with one line before anything is written.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from common.cli import UsageError
from common.files import UnsafePath, link_refused, open_private


class OutputLocked(UsageError):
    """Another process is writing this output file."""


def lock_path(out: str | Path) -> Path:
    out = Path(out)
    return out.with_name(out.name + ".lock")


def _holder(fd: int) -> str:
    """Who holds the lock, from the descriptor we opened (never re-opened by name: that could be a
    link planted since)."""
    try:
        text = os.pread(fd, 32, 0).decode(errors="replace").strip()
    except OSError:
        text = ""
    return f"pid {text}" if text.isdigit() else "another process"


def _open_lock(path: Path, out: str | Path) -> int:
    """The lock file, opened without following a link, created owner-only (common.files)."""
    try:
        fd = open_private(path, os.O_RDWR | os.O_CREAT)
    except UnsafePath as exc:
        raise UnsafePath(f"{exc} (the lock of {out})") from None
    except OSError as exc:
        raise UsageError(f"cannot open the lock {path} of {out}: {exc.strerror}") from None
    info = os.fstat(fd)
    # Another user's file, or one with a second name (a hard link to something else), is not a lock
    # we made: writing our pid into it would change that other file.
    if info.st_uid != os.geteuid() or info.st_nlink != 1:
        os.close(fd)
        whose = f"owned by uid {info.st_uid}" if info.st_uid != os.geteuid() else "hard-linked elsewhere"
        raise UnsafePath(f"{path} ({whose}) is not a lock file this user made; remove it or choose another output")
    return fd


@contextlib.contextmanager
def output_lock(out: str | Path) -> Iterator[Path]:
    """Hold the one-writer lock of `out` (yields the lock file's path); raise `OutputLocked` at once
    when another process holds it, `UnsafePath` when `out` or `<out>.lock` is a link (or the lock is
    someone else's file)."""
    path = lock_path(out)
    if Path(out).is_symlink():  # the writer would append (and resume would read) through it
        raise link_refused(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        fd = _open_lock(path, out)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(fd)
            os.close(fd)
            raise OutputLocked(
                f"{out} is being written by {holder} (lock {path}); wait for it to finish or pass another output"
            ) from None
        # The holder before us may have removed the file between our open and our flock: then we
        # locked an orphan inode and must start over on the file that is there now. lstat: a link
        # swapped in since is a different inode too, and the next open refuses it.
        if _same_file(fd, path):
            break
        os.close(fd)
    try:
        os.ftruncate(fd, 0)  # our own regular file, opened without following a link
        os.write(fd, f"{os.getpid()}\n".encode())
        yield path
    finally:
        # Unlink while still holding the lock, so no one can lock this inode after we let go; only
        # if the name still is our file (never remove what someone put there since).
        if _same_file(fd, path):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
        os.close(fd)


def _same_file(fd: int, path: Path) -> bool:
    try:
        here = os.lstat(path)
    except FileNotFoundError:
        return False
    mine = os.fstat(fd)
    return (mine.st_dev, mine.st_ino) == (here.st_dev, here.st_ino)
