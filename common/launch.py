"""Die with the parent: the one parent-death signal every child mcpgym starts gets, and a launcher.

The kernel sends a child the signal set by `prctl(PR_SET_PDEATHSIG)` when the thread that started
it ends, even by SIGKILL, so a server never lives on as an orphan. Three ways in, one mechanism:

- `common.procs.spawn_group` (vLLM) calls `set_parent_death_signal` in the child before exec;
- a command that a library spawns itself (an MCP stdio server) runs under this file as a launcher,
  which makes itself a session leader (its own process group), sets the signal and execs the
  command, keeping the environment it was given exactly as it is:

      python -I -S common/launch.py PARENT_PID -- command args...

- the fork server's zygote (`envs/_zygote.py`), which runs under a server's own interpreter that
  may not have mcpgym installed, loads this file by its path and calls `die_with_parent` in
  itself and in every child it forks.

So this file imports only the standard library and runs on any Python 3 a server may use.
Linux only; elsewhere the calls are no-ops and the launcher only execs.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys

PR_SET_PDEATHSIG = 1
PATH = os.path.abspath(__file__)  # what runs as the launcher, and what the zygote loads
# Loaded before any fork: a child between fork and exec may only make the call, not dlopen.
_LIBC = ctypes.CDLL(None, use_errno=True) if sys.platform.startswith("linux") else None


def set_parent_death_signal(sig: int = signal.SIGTERM) -> None:
    """Ask the kernel to send `sig` to this process when its parent dies. Linux only; else a no-op."""
    if _LIBC is not None:
        with contextlib.suppress(Exception):
            _LIBC.prctl(PR_SET_PDEATHSIG, int(sig))


def die_with_parent(parent_pid: int, sig: int = signal.SIGTERM) -> None:
    """`set_parent_death_signal`, then exit at once if `parent_pid` died before the call took effect
    (the kernel only signals for a death that comes after it)."""
    set_parent_death_signal(sig)
    if _LIBC is not None and os.getppid() != parent_pid:
        os._exit(1)


def main(argv: list[str]) -> None:
    """`launch.py PARENT_PID -- command args...`: own session, die with the parent, exec."""
    if len(argv) < 3 or argv[1] != "--" or not argv[0].isdigit():
        sys.stderr.write("usage: launch.py PARENT_PID -- command [args...]\n")
        os._exit(2)
    if os.getsid(0) != os.getpid():
        os.setsid()  # its own session and process group: stopping it takes what it starts too
    die_with_parent(int(argv[0]))
    command = argv[2:]
    try:
        os.execvp(command[0], command)  # the environment stays the one this process was given
    except OSError as exc:
        sys.stderr.write(f"cannot run {command[0]}: {exc.strerror}\n")
        os._exit(127)


if __name__ == "__main__":
    main(sys.argv[1:])
