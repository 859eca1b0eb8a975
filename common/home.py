"""mcpgym's cache root and the lock that guards filling it.

One place for both: the embedded model (serve.store), vLLM's cache and logs (serve.vllm) and the
GGUF converter (serve.export) all live under it. train imports serve, never the other way.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from .files import open_private

HOME_ENV = "MCPGYM_HOME"


def mcpgym_home() -> Path:
    """mcpgym's cache root: `$MCPGYM_HOME`, else `~/.cache/mcpgym` (read at call time, not import)."""
    value = os.environ.get(HOME_ENV)
    return Path(value).expanduser() if value else Path.home() / ".cache" / "mcpgym"


@contextlib.contextmanager
def file_lock(lock_path: Path) -> Iterator[None]:
    """Exclusive inter-process lock, so concurrent first uses fill a cache entry only once."""
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    fd = open_private(lock_path, os.O_RDWR | os.O_CREAT)  # never through a planted link
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
