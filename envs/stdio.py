"""A spawned stdio MCP server that never outlives mcpgym, nor leaves what it started behind.

The MCP SDK's stdio client spawns the server in a session of its own, but it gives the server no
parent-death signal, kills the process group only when the server itself will not exit, and reads
each line of the server's output whole. So mcpgym spawns stdio servers itself:

- through `common/launch.py` (`common.procs.launcher_argv`): its own session and process group,
  and SIGTERM when mcpgym dies, even by SIGKILL; the launcher execs the server with the environment
  the SDK would give it (its safe defaults plus the server's own `env`), nothing more;
- watched by this process's reaper (`common.reaper`), which kills the whole group if mcpgym dies;
- stopped as the SDK stops it (stdin closed, a grace period, SIGTERM, SIGKILL), and then its whole
  group is killed, whatever the server left running;
- read through `envs.lines`, no line past `max_output_bytes`.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import shutil
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
from fastmcp.client.transports import ClientTransport
from mcp.client.stdio import get_default_environment

from common.procs import launcher_argv
from common.reaper import unwatch_group, watch_group

from .config import StdioServer
from .lines import hang_up, line_session

_EXIT_GRACE_S = 2.0  # as the MCP SDK: after stdin closes, and again after SIGTERM


def _check_command(command: str, env: dict[str, str], cwd: str | None) -> None:
    """Raise what spawning `command` directly would (no such file, not executable): through the
    launcher a missing command would show only as a server that closed during start-up."""
    if os.sep in command:
        path = Path(cwd or ".", command) if not os.path.isabs(command) else Path(command)
        if not path.exists():
            raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), command)
        if path.is_dir() or not os.access(path, os.X_OK):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), command)
    elif shutil.which(command, path=env.get("PATH", os.defpath)) is None:
        raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), command)


async def _exited(process: asyncio.subprocess.Process, timeout_s: float) -> bool:
    # returncode, not wait(): on 3.11+ wait() also waits for the pipes, which a child may hold open.
    with anyio.move_on_after(timeout_s):
        while process.returncode is None:  # noqa: ASYNC110  (set by the loop's child watcher; no event to wait on)
            await anyio.sleep(0.01)
        return True
    return False


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


async def stop_group(process: asyncio.subprocess.Process, grace_s: float = _EXIT_GRACE_S) -> None:
    """After stdin closed: wait `grace_s` for the server to exit, then SIGTERM, then SIGKILL its group;
    and SIGKILL the group in any case, for what the server started and left running. Shielded: it
    always finishes."""
    pgid = process.pid  # a session leader: its pid is its group's id
    with anyio.CancelScope(shield=True):
        if not await _exited(process, grace_s):
            _signal_group(pgid, signal.SIGTERM)
            if not await _exited(process, _EXIT_GRACE_S):
                _signal_group(pgid, signal.SIGKILL)
                await _exited(process, _EXIT_GRACE_S)
        _signal_group(pgid, signal.SIGKILL)  # the rest of the group: grandchildren the server left
        unwatch_group(pgid)


class SpawnTransport(ClientTransport):
    """An MCP client session with a freshly spawned stdio server, one process per session."""

    def __init__(self, spec: StdioServer, *, server_log: Path | None, max_output_bytes: int, label: str) -> None:
        self._spec = spec
        self._log = server_log
        self._limit = max_output_bytes
        self._label = label
        self._process: asyncio.subprocess.Process | None = None

    @property
    def alive(self) -> bool:
        """False once the server is known to have exited (a warm spare that died while it waited)."""
        return self._process is None or self._process.returncode is None

    @contextlib.asynccontextmanager
    async def connect_session(self, *, transport_options: Any = None, **session_kwargs: Any) -> AsyncIterator[Any]:
        spec = self._spec
        env = get_default_environment() | dict(spec.env)  # exactly what the SDK's stdio client gives
        _check_command(spec.command, env, spec.cwd)
        log_file = self._log.open("a") if self._log is not None else None
        try:
            process = await asyncio.create_subprocess_exec(
                *launcher_argv([spec.command, *spec.args]),
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=log_file,  # None: ours
                cwd=spec.cwd,
                env=env,
                start_new_session=True,
            )
        finally:
            if log_file is not None:
                log_file.close()
        self._process = process
        watch_group(process.pid)
        assert process.stdout is not None and process.stdin is not None
        try:
            async with line_session(
                process.stdout, process.stdin, limit=self._limit, label=self._label, **session_kwargs
            ) as session:
                yield session
        finally:
            # One grace period from the end of stdin, as the SDK gives: to say its last words, and exit.
            deadline = anyio.current_time() + _EXIT_GRACE_S
            await hang_up(process.stdout, process.stdin, _EXIT_GRACE_S)
            await stop_group(process, max(0.1, deadline - anyio.current_time()))
