"""Files mcpgym writes, safe against a hostile neighbour: owner-only, never through a planted link.

Outputs hold what tools returned, so every file mcpgym creates (trajectories, exports, locks, state,
reports) is created `0600` unless `MCPGYM_FILE_MODE` (octal, e.g. `0644`) asks for another mode,
which is then applied exactly (the umask is not consulted: the variable is the user's explicit
choice). Folders are left as they are: the mode of a file is what protects it.

- `open_private(path, flags)`: `os.open` with `O_NOFOLLOW | O_CLOEXEC`; a file it creates gets the
  mode above, an existing one is opened as it is. A symbolic link at `path` is refused with
  `UnsafePath`, one line, so nothing is ever written (or truncated) through it.
- `atomic_writer(path)` / `write_private_atomic(path, data)`: the whole file written to a
  `tempfile.mkstemp` name in `path`'s folder (unpredictable, created exclusively: a link planted
  there cannot be followed), fsynced, then `os.replace`d onto `path` (which replaces a link at
  `path` rather than writing through it). A crash leaves the old file, never half a new one.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from .cli import UsageError

FILE_MODE_ENV = "MCPGYM_FILE_MODE"
DEFAULT_FILE_MODE = 0o600
MODE_HELP = f"created {DEFAULT_FILE_MODE:04o}; {FILE_MODE_ENV}=0644 widens"


class UnsafePath(UsageError):
    """A path mcpgym would write is a symbolic link (or not a regular file): refused, not followed."""


def file_mode() -> int:
    """The mode new files get: `$MCPGYM_FILE_MODE` (octal) or 0600. Raises UsageError on a value
    that is not an octal mode of read/write bits (execute and special bits are never wanted here)."""
    value = os.environ.get(FILE_MODE_ENV, "").strip()
    if not value:
        return DEFAULT_FILE_MODE
    try:
        mode = int(value, 8)
    except ValueError:
        mode = -1
    if mode < 0 or mode & ~0o666 or not mode & stat.S_IRUSR or not mode & stat.S_IWUSR:
        raise UsageError(f"{FILE_MODE_ENV}={value!r}: not a file mode like 0600 or 0644 (owner read+write, no x bits)")
    return mode


def link_refused(path: str | Path) -> UnsafePath:
    """The one-line error for a symbolic link where mcpgym would write a file."""
    return UnsafePath(f"{path} is a symbolic link; refusing to write through it (remove it or choose another path)")


def open_private(path: str | Path, flags: int) -> int:
    """`os.open(path, flags)` that never follows a link at `path` and creates files with
    `file_mode()`. Returns the descriptor (close-on-exec). Raises `UnsafePath` for a link or a
    path that is not a regular file; other `OSError`s pass through."""
    path = Path(path)
    mode = file_mode()
    base = flags | os.O_NOFOLLOW | os.O_CLOEXEC
    for _ in range(3):  # the file may appear or vanish between the two opens below
        if flags & os.O_CREAT:
            try:
                # O_EXCL: create a fresh file or fail; it never follows a link, dangling or not.
                fd = os.open(path, base | os.O_EXCL, DEFAULT_FILE_MODE)
            except FileExistsError:
                pass
            else:
                if mode != DEFAULT_FILE_MODE:
                    os.fchmod(fd, mode)  # our own fresh descriptor: no window where it is wider
                return fd
        try:
            fd = os.open(path, base & ~(os.O_CREAT | os.O_EXCL))
        except FileNotFoundError:
            if flags & os.O_CREAT:
                continue
            raise
        except OSError:
            if path.is_symlink():  # ELOOP on Linux, EMLINK on some BSDs
                raise link_refused(path) from None
            raise
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise UnsafePath(f"{path} is not a regular file; refusing to write to it")
        return fd
    raise UnsafePath(f"{path} keeps appearing and vanishing; refusing to write to it")


@contextlib.contextmanager
def atomic_writer(path: str | Path, *, durable: bool = True) -> Iterator[IO[bytes]]:
    """A binary file handle whose content replaces `path` atomically when the block ends without an
    error (and is discarded otherwise). `durable`: fsync before the rename, so the rename never
    publishes a file whose data is not on disk yet."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")  # 0600, O_EXCL
    try:
        with os.fdopen(fd, "wb") as fh:
            mode = file_mode()
            if mode != DEFAULT_FILE_MODE:
                os.fchmod(fd, mode)
            yield fh
            fh.flush()
            if durable:
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def write_private_atomic(path: str | Path, data: str | bytes, *, durable: bool = True) -> None:
    """Write `data` (text is UTF-8) as the whole of `path`, atomically and owner-only (see module)."""
    with atomic_writer(path, durable=durable) as fh:
        fh.write(data.encode("utf-8") if isinstance(data, str) else data)
