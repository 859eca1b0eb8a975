"""Kill every process group mcpgym still owns once mcpgym is gone, even by SIGKILL.

A parent-death signal (`common.launch`) reaches only a server itself: what the server started (a
`sleep`, a browser, a database) lives on in its process group after it dies. So each process that
starts servers runs one small reaper beside it. The reaper holds the read end of a pipe whose only
writer is that process; mcpgym tells it each group it starts and each group it has stopped:

    watch_group(pgid)      # a server was started in its own process group
    unwatch_group(pgid)    # that group was stopped and is gone

When the pipe reaches end of file (the kernel closes it when mcpgym exits, however it ends), or
the reaper finds itself reparented, it sends SIGTERM to every group still watched, gives them a
moment, SIGKILLs what is left, and exits. It is started on the first `watch_group`, in its own
session (a Ctrl-C of mcpgym's terminal does not stop it first), as `python -I -S reaper.py`:
standard library only, no environment.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import signal
import sys
import threading
import time

log = logging.getLogger(__name__)

_GRACE_S = 1.0  # between SIGTERM and SIGKILL once mcpgym is gone


class _Client:
    """This process's side: the pipe to its reaper, started on first use and again if it died."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pid: int | None = None
        self._fd: int | None = None  # the write end; its closing is what tells the reaper
        self._watched: set[int] = set()

    def _alive(self) -> bool:
        if self._pid is None:
            return False
        try:
            return os.waitpid(self._pid, os.WNOHANG) == (0, 0)
        except ChildProcessError:  # reaped by someone else: gone all the same
            return False

    def _start(self) -> None:
        """A new reaper, told every group still watched (an old one's pipe is closed: it kills those
        groups it knew only if it is still alive, and then they are gone anyway)."""
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
        read_end, self._fd = os.pipe()  # both close-on-exec; the reaper gets the read end as its stdin
        try:
            self._pid = os.posix_spawn(
                sys.executable,
                [sys.executable, "-I", "-S", os.path.abspath(__file__), str(os.getpid())],
                {},  # no environment: it needs none, and holds nothing to leak
                file_actions=[
                    (os.POSIX_SPAWN_DUP2, read_end, 0),
                    (os.POSIX_SPAWN_OPEN, 1, os.devnull, os.O_WRONLY, 0),
                ],
                setsid=True,  # a Ctrl-C in mcpgym's terminal must not stop it before it has done its job
            )
        finally:
            os.close(read_end)
        self._write("".join(f"+{pgid}\n" for pgid in self._watched))

    def _write(self, text: str) -> None:
        if text and self._fd is not None:
            os.write(self._fd, text.encode())

    def _send(self, line: str) -> None:
        try:
            if not self._alive():
                self._start()  # the new reaper is told the whole watch list, this change included
                return
            try:
                self._write(line)
            except OSError:
                self._start()
        except OSError as exc:  # a safety net that cannot start must not stop the servers it guards
            log.warning("cannot start the reaper of orphaned servers: %s", exc)

    def watch(self, pgid: int) -> None:
        with self._lock:
            self._watched.add(pgid)
            self._send(f"+{pgid}\n")

    def unwatch(self, pgid: int) -> None:
        with self._lock:
            if pgid in self._watched:
                self._watched.discard(pgid)
                self._send(f"-{pgid}\n")

    def forget_after_fork(self) -> None:
        """In a forked child: the pipe and the groups are the parent's. Closing our copy of the write
        end keeps the reaper's end of file tied to the parent alone."""
        self._lock = threading.Lock()
        fd, self._fd, self._pid = self._fd, None, None
        self._watched = set()
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)


_CLIENT = _Client()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_CLIENT.forget_after_fork)


def watch_group(pgid: int) -> None:
    """Have the reaper kill process group `pgid` if this process dies before `unwatch_group(pgid)`."""
    if os.name == "posix":
        _CLIENT.watch(pgid)


def unwatch_group(pgid: int) -> None:
    """The group is stopped and gone: the reaper forgets it (its id may name another group later)."""
    if os.name == "posix":
        _CLIENT.unwatch(pgid)


def kill_groups(groups: set[int], grace_s: float = _GRACE_S) -> None:
    """SIGTERM each group, then SIGKILL whatever of them is still there after `grace_s`."""
    for pgid in groups:
        with contextlib.suppress(OSError):
            os.killpg(pgid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline and any(group_alive(pgid) for pgid in groups):
        time.sleep(0.02)
    for pgid in groups:
        with contextlib.suppress(OSError):
            os.killpg(pgid, signal.SIGKILL)


def group_alive(pgid: int) -> bool:
    """Whether any process of group `pgid` is left (one we may not signal counts)."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def main(parent_pid: int) -> None:
    """The reaper: follow the watch list on stdin until it closes or the parent is gone, then kill."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # only the parent's end decides
    groups: set[int] = set()
    pending = b""
    stdin = sys.stdin.fileno()
    while os.getppid() == parent_pid:
        ready, _, _ = select.select([stdin], [], [], 1.0)  # also wakes to see whether it was reparented
        if not ready:
            continue
        data = os.read(stdin, 65536)
        if not data:
            break
        *lines, pending = (pending + data).split(b"\n")
        for line in lines:
            if line[:1] == b"+" and line[1:].isdigit() and int(line[1:]) > 1:  # never 0: "my own group"
                groups.add(int(line[1:]))
            elif line[:1] == b"-" and line[1:].isdigit():
                groups.discard(int(line[1:]))
    if groups:
        kill_groups(groups)


if __name__ == "__main__":
    main(int(sys.argv[1]))
