"""Attacks on containment that must fail: orphaned servers, and tool results too large to hold.

Orphans. A stdio MCP server that ignores the end of its stdin and SIGTERM, and starts a child that
does the same (`fixtures/_stubborn_server.py`), run by a real mcpgym process
(`fixtures/_orphan_host.py`: an env with an episode open and a warm pool of spares; servers spawned,
or forked from a zygote). The test `kill -9`s that process and scans /proc for anything whose
command line carries the run's marker: nothing may be left, nor the reaper.

Large results. A real server's tool returns 100 MB; a real rollout calls it, then calls another
tool on the same session, then answers. The rollout must finish, the model must see a short error
saying the result was too large, the next call must work, and the client must never have held
anything near 100 MB (tracemalloc's peak while the rollout ran, in a client process of its own for a
server on a wire, `fixtures/_big_result_client.py`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import select
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from contracts import Trajectory
from envs import MCPEnv, StdioServer, Task, ToolCall
from envs.limits import DEFAULT_MAX_OUTPUT_BYTES, answered_id
from tests.fixtures._big_result_client import measure
from tests.fixtures.envs_fixtures import HttpMcpServer
from tests.fixtures.envs_servers import build_calc

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).parent / "fixtures"
STUBBORN = FIXTURES / "_stubborn_server.py"
WARM = 2  # the host's warm pool
MB = 1024 * 1024

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="scans /proc; the parent-death signal is Linux's"
)


# -- orphans --------------------------------------------------------------------------------------


def _marked(marker: str) -> dict[int, str]:
    """Live processes whose command line carries `marker`: pid -> command line (zombies have none)."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            raw = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if marker.encode() in raw:
            found[int(entry.name)] = raw.replace(b"\0", b" ").decode(errors="replace")
    return found


def _reapers(host: int) -> list[int]:
    """The reaper of process `host` (its command line: python -I -S .../common/reaper.py HOST)."""
    return [pid for pid, cmd in _marked("common/reaper.py").items() if cmd.split()[-1:] == [str(host)]]


def _wait_gone(marker: str, host: int | None = None, timeout_s: float = 20.0) -> dict[int, str]:
    """What is still running of `marker`'s processes (and `host`'s reaper) after up to `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while True:
        left = _marked(marker) | ({pid: "reaper" for pid in _reapers(host)} if host is not None else {})
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.1)


def _clean_up(marker: str, host: subprocess.Popen[str] | None = None) -> None:
    """After a failed test: SIGKILL what this test started and still runs, found again by marker."""
    if host is not None and host.poll() is None:
        host.kill()
        host.wait()
    for pid in [*_marked(marker), *(_reapers(host.pid) if host is not None else [])]:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)


def _start_host(start: str, marker: str, *extra: str) -> tuple[subprocess.Popen[str], dict[str, int]]:
    env = os.environ | {"PYTHONPATH": str(ROOT)}
    host = subprocess.Popen(
        # As a module: run as a script, its folder would come first on sys.path, and its `common.py`
        # would shadow mcpgym's `common`.
        [sys.executable, "-m", "tests.fixtures._orphan_host", start, marker, *extra],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
        cwd=ROOT,
    )
    assert host.stdout is not None
    ready, _, _ = select.select([host.stdout], [], [], 180)
    line = host.stdout.readline() if ready else ""
    if not line:
        _clean_up(marker, host)
        pytest.fail(f"the mcpgym host ({start}) did not get its servers up")
    return host, json.loads(line)


def _expected(start: str) -> int:
    """Processes carrying the marker: each server and its child, and for `fork` the zygote."""
    servers = 1 + WARM
    return 2 * servers + (1 if start == "fork" else 0)


@pytest.mark.parametrize("start", ["spawn", "fork"])
def test_kill_9_of_mcpgym_leaves_no_server_and_nothing_a_server_started(start: str) -> None:
    marker = f"mcpgym-orphan-{uuid.uuid4().hex}"
    host, info = _start_host(start, marker, "--ignore-term")
    try:
        before = _marked(marker)
        assert info["server"] in before and info["child"] in before, before
        assert len(before) >= _expected(start), before  # the episode's server, the spares, the zygote
        assert len(_reapers(host.pid)) == 1
        os.kill(host.pid, signal.SIGKILL)
        host.wait(timeout=10)
        left = _wait_gone(marker, host.pid)
        assert not left, f"left running after kill -9 of mcpgym: {left}"
    finally:
        _clean_up(marker, host)


@pytest.mark.parametrize("start", ["spawn", "fork"])
def test_servers_die_with_mcpgym_by_the_parent_death_signal_alone(start: str) -> None:
    """Without the reaper (killed first), each server (and the zygote, and its children) still goes:
    the kernel's parent-death signal. What a server started then lives on: that is the reaper's job."""
    marker = f"mcpgym-orphan-{uuid.uuid4().hex}"
    host, info = _start_host(start, marker)
    try:
        before = _marked(marker)
        servers = {pid for pid, cmd in before.items() if STUBBORN.name in cmd}
        assert info["server"] in servers and len(servers) >= 1 + WARM + (1 if start == "fork" else 0), before
        (reaper,) = _reapers(host.pid)
        os.kill(reaper, signal.SIGKILL)
        os.kill(host.pid, signal.SIGKILL)
        host.wait(timeout=10)
        deadline = time.monotonic() + 20
        while (left := set(_marked(marker)) & servers) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not left, f"servers left running after kill -9 of mcpgym: {left}"
    finally:
        _clean_up(marker, host)


@pytest.mark.parametrize("start", ["spawn", "fork"])
async def test_a_closed_episode_takes_what_its_server_started_with_it(start: str) -> None:
    """A server that exits when its stdin ends but leaves its child running: closing the episode
    kills the server's whole process group, not only the server."""
    marker = f"mcpgym-orphan-{uuid.uuid4().hex}"
    spec = StdioServer(command=sys.executable, args=[str(STUBBORN), marker, "--polite"])
    try:
        async with MCPEnv(spec, isolation="per_process", stdio_start=start, warm_pool=0) as env:  # type: ignore[arg-type]
            async with env.episode() as ep:
                await ep.reset(Task(id="t", question="q"))
                result = await ep.step([ToolCall(id="c", name="pids", arguments="{}")])
                pids = json.loads(result.messages[0]["content"])
                assert {pids["server"], pids["child"]} <= set(_marked(marker))
        left = _wait_gone(marker, timeout_s=10)
        assert not left, f"left running after the episode closed: {left}"
    finally:
        _clean_up(marker)


# -- results too large to hold --------------------------------------------------------------------

BIG = 100_000_000  # characters the tool returns: 100 MB


@pytest.fixture(scope="module")
def json_http() -> Iterator[HttpMcpServer]:
    server = HttpMcpServer(json_response=True)
    try:
        yield server
    finally:
        server.stop()


@pytest.mark.parametrize("kind", ["fork", "spawn", "http-events", "http-json", "memory"])
async def test_a_100_mb_tool_result_is_dropped_at_the_transport(kind: str, request: pytest.FixtureRequest) -> None:
    if kind == "memory":  # a server in this process: measured here
        measured = await measure(MCPEnv(build_calc, warm_pool=0), BIG)
    else:  # read off a wire: measured in a client process of its own (fixtures/_big_result_client.py)
        url = {"http-events": "calc_http", "http-json": "json_http"}.get(kind)
        where = request.getfixturevalue(url).url if url else "-"
        argv = [sys.executable, "-m", "tests.fixtures._big_result_client", kind.split("-")[0], where, str(BIG)]
        done = await asyncio.to_thread(
            subprocess.run, argv, cwd=ROOT, capture_output=True, text=True, timeout=300, check=False
        )
        assert done.returncode == 0, done.stderr[-2000:]
        measured = json.loads(done.stdout.strip().splitlines()[-1])
    traj, peak = Trajectory.model_validate(measured["trajectory"]), measured["peak"]
    assert traj.error is None and traj.stop_reason == "answer", traj.error
    big, small = (m for m in traj.messages if m["role"] == "tool")
    assert big["content"].startswith(
        f"Error: tool 'big' failed: the server's answer is larger than {DEFAULT_MAX_OUTPUT_BYTES} bytes"
    ), big["content"][:300]
    assert len(big["content"]) < 300
    assert small["content"] == "3"  # the same session goes on: only that one call failed
    outcome = traj.tool_outcomes[0]
    assert (outcome.ok, outcome.error, outcome.truncated) == (False, "tool_error", True)
    # Read off a wire: never near the 100 MB (the limit, 8 MiB, and change). In this process the
    # tool's own 100 MB string is ours too, but nothing may copy it.
    assert peak < (40 * MB if kind != "memory" else BIG + 20 * MB), f"peak {peak / MB:.0f} MB for a 100 MB result"


def test_a_dropped_answer_fails_the_request_it_answered_whatever_the_key_order() -> None:
    pending = {3, 4, "x"}
    python_sdk = b'{"jsonrpc":"2.0","id":4,"result":{"content":[{"type":"text","text":"xxxx'
    typescript_sdk = b'xxxx"}]},"jsonrpc":"2.0","id":"x"}\n'
    assert answered_id(python_sdk, b"xxx", pending) == 4
    assert answered_id(b"xxxx", typescript_sdk, pending) == "x"
    # A nested "id" at either edge never counts; with several requests waiting, none is guessed.
    nested = b'{"jsonrpc":"2.0","result":{"id":3,"text":"xx'
    assert answered_id(nested, b'xx","item":{"id":3}}}', pending) is None
    assert answered_id(b'{"id":9,', b"}", pending) is None  # not ours: not pending
    assert answered_id(b"xx", b"xx", {7}) == 7  # only one waits: it is that one
