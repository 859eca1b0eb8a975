"""Fresh Python stdio servers for the price of a fork: a zygote per server, a child per rollout.

Starting a Python MCP server costs an interpreter and its imports (fastmcp alone is most of a
second of CPU), so isolating rollouts with a process each used to cap a machine at a few
rollouts a second. A `ForkServer` starts the server's interpreter once, as `envs/_zygote.py`,
which preloads those imports; each rollout then asks it for a child. The child runs the server
script from its first line as `__main__` (its module-level state, files and databases are
made anew), speaking MCP over a socket that stands in for its stdin and stdout. The child is
the rollout's alone and ends with it, exactly like a spawned stdio server.

What is shared is only what the zygote preloaded: the interpreter and installed packages the
script imports at top level (copied on write, so even those are not shared once written).

Used for `per_session` / `per_process` isolation of a stdio server whose command is a Python
interpreter running a `.py` script or `-m module`, on POSIX (`stdio_start="auto"`, the
default); `stdio_start="spawn"` starts a process per rollout as before.

Nothing outlives mcpgym: the zygote and each child run in a process group of their own with a
parent-death signal (`common/launch.py`: the zygote dies with mcpgym, a child with the zygote), a
stopped child's whole group is killed, and this process's reaper (`common.reaper`) kills every
group still running if mcpgym dies. A child's answers are read a line at a time, none past
`max_output_bytes` (`envs.lines`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import select
import signal
import socket
import struct
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
from fastmcp.client.transports import ClientTransport
from mcp.client.stdio import get_default_environment

from common import launch
from common.reaper import unwatch_group, watch_group
from contracts import EnvConfigError, EnvInfraError, StdioStart

from .config import StdioServer
from .config_vars import EPISODE_DIR
from .lines import hang_up, line_session

log = logging.getLogger(__name__)

ZYGOTE = Path(__file__).with_name("_zygote.py")
_REPLY = struct.Struct("!i")  # must match _zygote.REPLY
_PATH_LEN = struct.Struct("!H")  # must match _zygote.PATH_LEN
_READY, _FORK, _FORK_IN = b"R", b"F", b"D"  # must match _zygote
_PYTHON = re.compile(r"python(\d+(\.\d+)?)?")
_EXIT_GRACE_S = 2.0


def python_target(spec: StdioServer) -> list[str] | None:
    """`[script.py, *args]` or `["-m", module, *args]` when `spec` runs a Python server, else None."""
    if spec.command != sys.executable and not _PYTHON.fullmatch(Path(spec.command).name):
        return None
    args = list(spec.args)
    if len(args) >= 2 and args[0] == "-m":
        return args
    if args and args[0].endswith(".py"):
        return args
    return None


def fork_supported() -> bool:
    return hasattr(os, "fork") and hasattr(socket, "send_fds") and sys.platform != "win32"


def use_fork(name: str, spec: StdioServer, mode: StdioStart, *, sandboxed: bool = False) -> bool:
    """Whether fresh servers of `spec` come from a fork server; `mode="fork"` insists."""
    if mode == "spawn":
        return False
    why = None if fork_supported() else "this platform cannot fork"
    if why is None and python_target(spec) is None:
        why = "its command is not a Python interpreter running a .py script or -m module"
    if why is None and sandboxed:
        why = "it runs sandboxed (each server in its own bubblewrap, which a fork cannot enter)"
    if why is None and spec.cwd is not None and EPISODE_DIR in spec.cwd:
        why = "its cwd is the episode folder, which the one fork server cannot start in"
    if why is not None and mode == "fork":
        raise EnvConfigError(f"server '{name}': stdio_start 'fork' is not possible: {why}")
    return why is None


class ForkedChild:
    """One forked server: our end of its stdin/stdout socket and a handle to stop it."""

    def __init__(self, sock: socket.socket, pid: int, pidfd: int | None) -> None:
        self.sock = sock
        self.pid = pid
        self._pidfd = pidfd

    def exited(self) -> bool:
        """Whether the child has ended (never blocks; False where there is no pidfd to ask)."""
        if self._pidfd is None:
            return False
        ready, _, _ = select.select([self._pidfd], [], [], 0)
        return bool(ready)

    def _signal_group(self, sig: signal.Signals) -> None:
        """`sig` to the child's process group (the zygote made it a session leader): the server and
        whatever it started."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, sig)

    async def _exited(self, timeout_s: float) -> bool:
        with anyio.move_on_after(timeout_s):
            if self._pidfd is not None:
                await anyio.wait_readable(self._pidfd)  # a pidfd turns readable when its process ends
                return True
            while True:
                try:
                    os.kill(self.pid, 0)
                except ProcessLookupError:
                    return True
                await anyio.sleep(0.01)
        return False

    async def stop(self) -> None:
        """Its stdin is closed already: wait for it to exit, then SIGTERM, then SIGKILL its group; and
        SIGKILL the group in any case, for what the server started and left running."""
        try:
            with anyio.CancelScope(shield=True):
                for sig in (None, signal.SIGTERM, signal.SIGKILL):
                    if sig is not None:
                        self._signal_group(sig)
                    if await self._exited(_EXIT_GRACE_S):
                        break
                else:
                    log.warning("forked MCP server %d is still alive after SIGKILL; abandoning it", self.pid)
                # While any of the group lives, the kernel keeps its id from naming anything else.
                self._signal_group(signal.SIGKILL)
                unwatch_group(self.pid)
        finally:
            if self._pidfd is not None:
                os.close(self._pidfd)
                self._pidfd = None


class ForkServer:
    """The zygote of one stdio server, started on first use and again if it died."""

    def __init__(self, name: str, spec: StdioServer, *, server_log: Path | None, startup_timeout_s: float) -> None:
        target = python_target(spec)
        if target is None:
            raise EnvConfigError(f"server '{name}': not a Python stdio server, cannot fork it")
        self.name = name
        self._spec = spec
        self._target = target
        self._log = server_log
        self._timeout = startup_timeout_s
        self._proc: asyncio.subprocess.Process | None = None
        self._control: socket.socket | None = None
        self._lock = asyncio.Lock()  # one request at a time on the control socket: replies stay in order
        self._closed = False
        self.starts = 0  # how many zygotes were started (tests: a dead one is replaced)

    async def _start(self) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        log_file = self._log.open("a") if self._log is not None else None
        try:
            self._proc = await asyncio.create_subprocess_exec(
                self._spec.command,
                str(ZYGOTE),
                str(theirs.fileno()),
                str(os.getpid()),  # it dies with this process, and its children with it
                launch.PATH,  # how: loaded by its path, as mcpgym may not be importable there
                "--",
                *self._target,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL,  # a child's stdout is its socket, never this
                stderr=log_file,
                cwd=self._spec.cwd,
                # The environment a spawned stdio server gets (the MCP SDK's safe defaults + `env`).
                env=get_default_environment() | dict(self._spec.env),
                pass_fds=(theirs.fileno(),),
                start_new_session=True,
            )
        except OSError as exc:
            ours.close()
            raise EnvInfraError(f"server '{self.name}': cannot start its fork server: {exc}") from None
        finally:
            theirs.close()
            if log_file is not None:
                log_file.close()
        ours.setblocking(False)
        self._control = ours
        watch_group(self._proc.pid)
        self.starts += 1
        ready = await self._receive(1, self._timeout, "start")
        if ready[0] != _READY:
            await self._discard()
            raise EnvInfraError(f"server '{self.name}': its fork server sent {ready[0]!r} instead of ready")

    async def _receive(self, size: int, timeout_s: float, what: str) -> tuple[bytes, list[int]]:
        control = self._control
        assert control is not None
        data, fds = b"", []
        with anyio.move_on_after(timeout_s):
            while len(data) < size:
                await anyio.wait_readable(control)
                try:
                    chunk, more, _flags, _addr = socket.recv_fds(control, size - len(data), 1)
                except BlockingIOError:
                    continue
                except OSError:
                    chunk, more = b"", []
                fds.extend(more)
                if not chunk:
                    break
                data += chunk
            if len(data) == size:
                return data, fds
            for fd in fds:
                os.close(fd)
            rc = await self._exit_code()
            await self._discard()
            raise EnvInfraError(f"server '{self.name}': its fork server exited ({rc}) during {what} (see its stderr)")
        for fd in fds:
            os.close(fd)
        await self._discard()
        raise EnvInfraError(f"server '{self.name}': its fork server did not answer within {timeout_s:g} s ({what})")

    async def _exit_code(self) -> str:
        proc = self._proc
        if proc is None:
            return "not started"
        with anyio.move_on_after(1):
            return f"exit code {await proc.wait()}"
        return "still running"

    async def fork(self, episode_dir: Path | None = None) -> ForkedChild:
        """A new child (given `episode_dir` as `${MCPGYM_EPISODE_DIR}`); a zygote found dead is replaced
        once before this gives up."""
        async with self._lock:
            for attempt in (1, 2):
                if self._closed:
                    raise EnvInfraError(f"server '{self.name}': the env is closed")
                if self._control is None:
                    await self._start()
                try:
                    return await self._request(episode_dir)
                except _ZygoteGone:
                    await self._discard()
                    if attempt == 2:
                        raise EnvInfraError(f"server '{self.name}': its fork server keeps dying") from None
                    log.warning("the fork server of %r died; starting another", self.name)
            raise AssertionError("unreachable")  # pragma: no cover

    async def _request(self, episode_dir: Path | None) -> ForkedChild:
        control = self._control
        assert control is not None
        message = _FORK
        if episode_dir is not None:  # the folder's path follows, length first: the child fills it in
            path = os.fsencode(episode_dir)
            message = _FORK_IN + _PATH_LEN.pack(len(path)) + path
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            try:
                socket.send_fds(control, [message], [theirs.fileno()])
            except OSError:  # a broken pipe: the zygote is gone
                raise _ZygoteGone() from None
            try:
                data, fds = await self._receive(_REPLY.size, self._timeout, "a fork")
            except EnvInfraError:
                raise _ZygoteGone() from None
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()  # the child holds its own copy; ours would keep its stdin from ever closing
        (pid,) = _REPLY.unpack(data)
        if pid < 0:
            ours.close()
            raise EnvInfraError(f"server '{self.name}': fork failed: {os.strerror(-pid)}")
        watch_group(pid)
        return ForkedChild(ours, pid, fds[0] if fds else None)

    async def _discard(self) -> None:
        control, self._control = self._control, None
        proc, self._proc = self._proc, None
        if control is not None:
            control.close()  # the zygote exits when its control socket closes
        if proc is not None:
            with anyio.CancelScope(shield=True):
                if proc.returncode is None:
                    with anyio.move_on_after(_EXIT_GRACE_S):
                        await proc.wait()
                if proc.returncode is None:
                    with contextlib.suppress(ProcessLookupError):
                        proc.kill()
                    await proc.wait()
            unwatch_group(proc.pid)

    async def aclose(self) -> None:
        """Stop the zygote. Children already forked end with their own sessions."""
        self._closed = True
        async with self._lock:
            await self._discard()


class _ZygoteGone(Exception):
    """The zygote closed the control socket or stopped answering."""


class ForkTransport(ClientTransport):
    """An MCP client session over a freshly forked server's stdin/stdout socket."""

    def __init__(
        self, server: ForkServer, *, max_output_bytes: int, label: str, episode_dir: Path | None = None
    ) -> None:
        self._server = server
        self._episode_dir = episode_dir
        self._limit = max_output_bytes
        self._label = label
        self._child: ForkedChild | None = None
        self._reader: asyncio.StreamReader | None = None

    @property
    def alive(self) -> bool:
        """False once the child is known gone: a warm spare killed while it waited in the pool
        is discarded by the pool instead of being handed to an episode."""
        if self._reader is not None and self._reader.at_eof():
            return False
        return self._child is None or not self._child.exited()

    @contextlib.asynccontextmanager
    async def connect_session(self, *, transport_options: Any = None, **session_kwargs: Any) -> AsyncIterator[Any]:
        child = self._child = await self._server.fork(self._episode_dir)
        try:
            reader, writer = await asyncio.open_unix_connection(sock=child.sock)
            self._reader = reader
        except BaseException:
            child.sock.close()
            await child.stop()
            raise
        try:
            async with line_session(reader, writer, limit=self._limit, label=self._label, **session_kwargs) as session:
                yield session
        finally:
            await hang_up(reader, writer, _EXIT_GRACE_S)
            await child.stop()
