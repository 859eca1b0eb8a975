"""Child processes that never outlive their owner: ports, process groups, parent-death signal, logs.

A long-lived server (vLLM, an MCP server) is started in its own process group with its output in
a log file, so stopping it takes its workers too and a failure can quote the log's tail. What is
here knows nothing about what the child is:

    process = spawn_group(argv, env=env, log=log_file)   # own group; SIGTERM if we die
    argv = launcher_argv(argv)                            # the same for a command a library spawns
    kill_at_exit(owner)                                   # owner.kill_now() at interpreter exit
    signal_group(process.pid, signal.SIGTERM)
    wait_group(process, time.monotonic() + 20)            # the whole group, not only the leader
    kill_group(process)                                   # SIGKILL whatever is left, reap it
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, Any, Protocol

from . import launch
from .launch import set_parent_death_signal
from .reaper import group_alive, unwatch_group, watch_group


def free_port(host: str = "127.0.0.1") -> int:
    """A port nobody listens on now (the OS picks it; it can be taken again before it is bound)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def port_free(host: str, port: int) -> bool:
    """True when `port` on `host` can be bound now (a server asked for that port can start)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def launcher_argv(argv: Sequence[str]) -> list[str]:
    """`argv` run through `common/launch.py`: in its own session, SIGTERM when this process dies, then
    exec'd with the environment it is given (for a command some library spawns, where there is no
    `preexec_fn` to pass). A bare interpreter (`-I -S`) so the launcher costs one small exec."""
    return [sys.executable, "-I", "-S", launch.PATH, str(os.getpid()), "--", *argv]


def spawn_group(argv: Sequence[str], *, env: Mapping[str, str], log: IO[bytes]) -> subprocess.Popen[bytes]:
    """Start `argv` in a new process group (its pid is the group id), stdout and stderr into `log`.

    A plain Popen, not an asyncio subprocess: the child outlives any one event loop (pytest's
    session loop, `asyncio.run` in a CLI) and must be stoppable from atexit.
    """
    process = subprocess.Popen(
        list(argv),
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        env=dict(env),
        start_new_session=True,  # its own process group: stopping it takes its workers too
        # In the child before exec: if this Python dies (even by SIGKILL) the server gets SIGTERM
        # instead of living on as an orphan holding gigabytes.
        preexec_fn=set_parent_death_signal if sys.platform.startswith("linux") else None,
    )
    # The death signal reaches the leader only; the reaper takes the workers it started too.
    watch_group(process.pid)
    return process


def signal_group(pgid: int, sig: signal.Signals) -> None:
    """Send `sig` to every process of the group; a group already gone is not an error."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def wait_group(process: subprocess.Popen[bytes], deadline: float) -> None:
    """Block until the leader and the rest of its group are gone, or `deadline` (time.monotonic)."""
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=max(0.0, deadline - time.monotonic()))
    while group_alive(process.pid) and time.monotonic() < deadline:
        time.sleep(0.1)


def kill_group(process: subprocess.Popen[bytes], *, wait_s: float = 10.0) -> None:
    """SIGKILL the group (whatever ignored SIGTERM), reap the leader, give the rest 5 s to vanish."""
    signal_group(process.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=wait_s)
    for _ in range(50):  # reaped children of the group can take a moment to vanish
        if not group_alive(process.pid):
            break
        time.sleep(0.1)
    unwatch_group(process.pid)


class Killable(Protocol):
    def kill_now(self) -> None: ...


_LIVE: set[Any] = set()


def kill_at_exit(owner: Killable) -> None:
    """Call `owner.kill_now()` at interpreter exit unless `forget_at_exit(owner)` came first."""
    _LIVE.add(owner)


def forget_at_exit(owner: Killable) -> None:
    _LIVE.discard(owner)


@atexit.register
def _stop_leftovers() -> None:
    """Last resort when an owner forgot to stop its child (or the loop died first)."""
    for owner in list(_LIVE):
        owner.kill_now()


def prune_logs(log_dir: Path, keep: int) -> None:
    """Delete the oldest `*.log` files of `log_dir` so that `keep - 1` remain (room for a new one)."""
    logs = sorted(log_dir.glob("*.log"), key=lambda p: p.stat().st_mtime)
    for old in logs[: max(0, len(logs) - (keep - 1))]:
        old.unlink(missing_ok=True)


def log_tail(path: Path | None, lines: int = 40, *, max_bytes: int = 64 * 1024) -> str:
    """The last `lines` lines of a log (read from its last `max_bytes`); "" when there is none."""
    if path is None or not path.is_file():
        return ""
    with open(path, "rb") as handle:
        handle.seek(0, os.SEEK_END)
        handle.seek(max(0, handle.tell() - max_bytes))
        text = handle.read().decode("utf-8", errors="replace")
    return "\n".join(text.splitlines()[-lines:])
