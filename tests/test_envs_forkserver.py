"""Isolated stdio episodes from a fork server: each rollout its own fresh server process.

Real parts: `tests/fixtures/_notes_server.py` keeps its state in a sqlite file it creates when the
module runs, plus a module-level counter; episodes run concurrently and write interleaved, and
what each reads back tells whether any state crossed between them.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest

from envs import EnvConfigError, EnvInfraError, MCPEnv, StdioServer, Task, ToolCall
from tests.fixtures.envs_fixtures import calc_stdio

NOTES_SCRIPT = Path(__file__).parent / "fixtures" / "_notes_server.py"
TASK = Task(id="t", question="Take notes.")

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="fork servers need POSIX fork")


def notes_stdio(*args: str, env: dict[str, str] | None = None) -> StdioServer:
    return StdioServer(command=sys.executable, args=[str(NOTES_SCRIPT), *args], env=env or {})


def call(name: str, **arguments: object) -> ToolCall:
    return ToolCall(id=name, name=name, arguments=json.dumps(arguments))


async def text(ep: Any, name: str, **arguments: object) -> str:
    return (await ep.step([call(name, **arguments)])).messages[0]["content"]


async def whoami(ep: Any) -> dict[str, Any]:
    return json.loads(await text(ep, "whoami"))


async def test_concurrent_episodes_never_see_each_others_state() -> None:
    n, rounds = 8, 3
    gate = asyncio.Barrier(n)

    async def episode(env: MCPEnv, k: int) -> tuple[list[str], dict[str, Any]]:
        async with env.episode() as ep:
            await ep.reset(TASK)
            seen = []
            for r in range(rounds):
                seen.append(await text(ep, "note", text=f"e{k}r{r}"))
                await gate.wait()  # every episode wrote round r before any writes round r + 1
            return seen, await whoami(ep)

    async with MCPEnv({"notes": notes_stdio()}, isolation="per_session", warm_pool=4) as env:
        assert env.handles["notes"].forks  # auto: a Python script server is forked
        results = await asyncio.gather(*(episode(env, k) for k in range(n)))
        zygote = env.handles["notes"].fork_server
        assert zygote is not None and zygote.starts == 1
    for k, (seen, info) in enumerate(results):
        # Only its own notes, in its own order: no other episode's row in its database.
        assert seen == [",".join(f"e{k}r{i}" for i in range(r + 1)) for r in range(rounds)]
        assert info["calls"] == rounds  # the module-level counter started at 0 in this process
    infos = [info for _, info in results]
    assert len({i["pid"] for i in infos}) == n and len({i["db"] for i in infos}) == n
    assert len({i["ppid"] for i in infos}) == 1 and infos[0]["ppid"] != os.getpid()  # all from one zygote
    assert not _any_exists(i["db"] for i in infos)  # each server's own exit code ran (its finally)


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="lists a process's children through /proc")
async def test_the_warm_pool_sizes_itself_to_the_concurrency() -> None:
    n = 5
    gate = asyncio.Barrier(n)

    async def episode(env: MCPEnv) -> int:
        async with env.episode() as ep:
            await ep.reset(TASK)
            await gate.wait()  # all n hold a server at once
            return (await whoami(ep))["pid"]

    async with MCPEnv({"notes": notes_stdio()}, isolation="per_session", warm_pool=1) as env:
        pool = env._providers["notes"]
        assert pool.target == 1  # type: ignore[union-attr]
        pids = await asyncio.gather(*(episode(env) for _ in range(n)))
        assert pool.target == n  # type: ignore[union-attr]
        zygote = env.handles["notes"].fork_server._proc.pid  # type: ignore[union-attr]
        deadline = asyncio.get_running_loop().time() + 30
        while len(pool._ready) < n:  # type: ignore[union-attr]  # refilled in the background, initialized
            assert asyncio.get_running_loop().time() < deadline, f"only {len(pool._ready)} spares"  # type: ignore[union-attr]
            await asyncio.sleep(0.05)
        spares = set(_children(zygote)) - set(pids)
        # The next n episodes take those ready servers: fresh ones, none of them a used one.
        fresh = await asyncio.gather(*(episode(env) for _ in range(n)))
    assert len(set(pids)) == n and len(spares) == n and set(fresh) == spares


async def test_an_edited_server_script_runs_as_edited(tmp_path: Path) -> None:
    script = tmp_path / "versioned_server.py"
    source = (
        "from fastmcp import FastMCP\n\nmcp = FastMCP('v')\n\n\n@mcp.tool\ndef version() -> str:\n"
        "    return {version!r}\n\n\nmcp.run(show_banner=False)\n"
    )
    script.write_text(source.format(version="one"))
    async with MCPEnv(StdioServer(command=sys.executable, args=[str(script)]), warm_pool=0) as env:
        assert env.handles["mcp"].forks
        for version in ("one", "second"):  # the zygote compiles the script once, and again when it changed
            script.write_text(source.format(version=version))
            async with env.episode() as ep:
                await ep.reset(TASK)
                assert await text(ep, "version") == version
        assert env.handles["mcp"].fork_server.starts == 1  # type: ignore[union-attr]


async def test_a_forked_server_starts_like_a_spawned_one(tmp_path: Path) -> None:
    spec = notes_stdio("--tag", "x", env={"NOTES_TAG": "from-config"})
    spec = spec.model_copy(update={"cwd": str(tmp_path)})
    seen = {}
    for start in ("fork", "spawn"):
        async with MCPEnv(spec, isolation="per_session", stdio_start=start, warm_pool=0) as env, env.episode() as ep:
            await ep.reset(TASK)
            seen[start] = await whoami(ep)
    fork, spawn = seen["fork"], seen["spawn"]
    same = ("argv", "file", "name", "path0", "cwd", "env_tag")
    assert {k: fork[k] for k in same} == {k: spawn[k] for k in same}
    assert fork["name"] == "__main__" and fork["env_tag"] == "from-config"
    assert fork["argv"] == [str(NOTES_SCRIPT), "--tag", "x"]
    assert spawn["ppid"] == os.getpid() and fork["ppid"] != os.getpid()


async def test_shared_isolation_keeps_one_spawned_process() -> None:
    async with MCPEnv({"notes": notes_stdio()}, isolation="shared") as env:
        assert env.handles["notes"].fork_server is None
        for k in range(2):
            async with env.episode() as ep:
                await ep.reset(TASK)
                last = await text(ep, "note", text=f"n{k}")
    assert last == "n0,n1"  # one server saw both: shared means shared


async def test_a_killed_child_fails_its_episode_as_infra_and_the_next_is_fresh() -> None:
    async with MCPEnv(calc_stdio(), isolation="per_session", warm_pool=2) as env:
        async with env.episode() as ep:
            await ep.reset(TASK)
            assert await text(ep, "bump") == "1"
            os.kill(int(await text(ep, "pid")), signal.SIGKILL)
            with pytest.raises(EnvInfraError, match="connection closed"):
                await asyncio.wait_for(ep.step([call("bump")]), timeout=10)
        async with env.episode() as ep:
            await ep.reset(TASK)
            assert await text(ep, "bump") == "1"  # a fresh server: the dead one's state is gone too


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="lists a process's children through /proc")
async def test_dead_spares_and_a_dead_zygote_are_replaced() -> None:
    async with MCPEnv(calc_stdio(), isolation="per_session", warm_pool=3) as env:
        handle = env.handles["mcp"]
        assert handle.fork_server is not None
        async with env.episode() as ep:
            await ep.reset(TASK)
            child = int(await text(ep, "pid"))
        await asyncio.sleep(0.5)  # the pool refills its spares
        zygote_pid = handle.fork_server._proc.pid  # type: ignore[union-attr]
        spares = _children(zygote_pid)
        assert child != zygote_pid and len(spares) >= 3
        for pid in spares:  # every warm spare dies while it waits, then the zygote
            os.kill(pid, signal.SIGKILL)
        os.kill(zygote_pid, signal.SIGKILL)
        await asyncio.sleep(0.2)
        for _ in range(3):  # no episode is handed a dead spare; the zygote is started again
            async with env.episode() as ep:
                await ep.reset(TASK)
                assert await asyncio.wait_for(text(ep, "add", a=1, b=2), timeout=20) == "3"
        assert handle.fork_server.starts == 2


async def test_a_server_script_that_fails_is_an_infra_error_at_start(tmp_path: Path) -> None:
    broken = tmp_path / "broken_server.py"
    broken.write_text("raise RuntimeError('no database')\n")
    env = MCPEnv(StdioServer(command=sys.executable, args=[str(broken)]), isolation="per_session", warm_pool=0)
    with pytest.raises(EnvInfraError, match="closed the connection during start-up"):
        await asyncio.wait_for(env.start(), timeout=30)
    await env.aclose()


def test_fork_is_refused_for_a_server_that_is_not_a_python_script() -> None:
    not_python = StdioServer(command="node", args=["server.js"])
    with pytest.raises(EnvConfigError, match="stdio_start 'fork' is not possible"):
        MCPEnv(not_python, isolation="per_session", stdio_start="fork")
    assert not MCPEnv(not_python, isolation="per_session").handles["mcp"].forks  # auto: spawned
    module = StdioServer(command="python3", args=["-m", "envs.energy.server"])
    assert MCPEnv(module, isolation="per_session").handles["mcp"].forks
    with pytest.raises(EnvConfigError, match="stdio_start must be one of"):
        MCPEnv(module, stdio_start="clone")  # type: ignore[arg-type]


def _children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()] if path.exists() else []


def _any_exists(paths: Iterable[str]) -> bool:
    return any(Path(path).exists() for path in paths)
