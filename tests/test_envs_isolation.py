"""State isolation between concurrent episodes in each mode, with stateful tools.

`book` keeps a total per MCP session (`ctx.get_state`), `bump` a counter per
server instance (per process for stdio). Two episodes run at once and book
different amounts; what each sees tells whether they shared state."""

from __future__ import annotations

import asyncio
import json

import pytest

from envs import EnvConfigError, MCPEnv, Task, ToolCall
from tests.fixtures.envs_fixtures import HttpMcpServer, calc_stdio
from tests.fixtures.envs_servers import build_calc

TASK = Task(id="t1", question="Book some capacity.")


def call(name: str, **arguments: object) -> ToolCall:
    return ToolCall(id=name, name=name, arguments=json.dumps(arguments))


async def _two_concurrent_episodes(env: MCPEnv) -> list[list[str]]:
    """Each episode books its amount twice and bumps the server counter; both run at once."""
    gate = asyncio.Barrier(2)

    async def episode(amount: int) -> list[str]:
        async with env.episode(group="g1") as ep:
            await ep.reset(TASK)
            seen = [(await ep.step([call("book", amount=amount)])).messages[0]["content"]]
            await gate.wait()  # both have booked once before either books again
            seen.append((await ep.step([call("book", amount=amount)])).messages[0]["content"])
            await gate.wait()
            seen.append((await ep.step([call("bump")])).messages[0]["content"])
            return seen

    return list(await asyncio.gather(episode(1), episode(100)))


async def test_shared_episodes_see_each_other() -> None:
    async with MCPEnv(build_calc, isolation="shared") as env:
        first, second = await _two_concurrent_episodes(env)
    # One session: after both booked once the total is 101, then each adds again.
    assert sorted([int(first[1]), int(second[1])]) in ([102, 202], [201, 202])
    assert sorted([first[2], second[2]]) == ["1", "2"]


async def test_per_session_isolates_session_state_on_one_server() -> None:
    async with MCPEnv(build_calc, isolation="per_session") as env:
        first, second = await _two_concurrent_episodes(env)
        assert first[:2] == ["1", "2"] and second[:2] == ["100", "200"]
        # Same server object: state the server keeps outside the session is shared.
        assert sorted([first[2], second[2]]) == ["1", "2"]
        async with env.episode() as later:  # a later episode starts from the initial state too
            await later.reset(TASK)
            assert (await later.step([call("book", amount=5)])).messages[0]["content"] == "5"


async def test_per_session_over_http_isolates_session_state() -> None:
    server = HttpMcpServer()
    try:
        async with MCPEnv(server.url, isolation="per_session") as env:
            first, second = await _two_concurrent_episodes(env)
        assert first[:2] == ["1", "2"] and second[:2] == ["100", "200"]
    finally:
        server.stop()


async def test_per_process_with_factory_gives_fresh_servers() -> None:
    async with MCPEnv(build_calc, isolation="per_process", warm_pool=2) as env:
        first, second = await _two_concurrent_episodes(env)
        assert first == ["1", "2", "1"] and second == ["100", "200", "1"]


async def test_per_process_stdio_gives_fresh_processes() -> None:
    async with MCPEnv(calc_stdio(), isolation="per_process", warm_pool=1) as env:
        first, second = await _two_concurrent_episodes(env)
        assert first == ["1", "2", "1"] and second == ["100", "200", "1"]


async def test_per_session_on_stdio_means_a_process_per_episode() -> None:
    async with MCPEnv(calc_stdio(), isolation="per_session", warm_pool=1) as env:
        pids = []
        for _ in range(2):
            async with env.episode() as ep:
                await ep.reset(TASK)
                pids.append((await ep.step([call("pid")])).messages[0]["content"])
                assert (await ep.step([call("bump")])).messages[0]["content"] == "1"
        assert pids[0] != pids[1]


async def test_group_members_start_equal() -> None:
    """Every member of a GRPO group sees the same initial state, whatever ran before."""
    async with MCPEnv(build_calc, isolation="per_process", warm_pool=2) as env:
        async with env.episode(group="warmup") as ep:
            await ep.reset(TASK)
            await ep.step([call("bump")])

        async def member() -> str:
            async with env.episode(group="g7") as ep:
                await ep.reset(TASK)
                result = await ep.step([call("bump")])
                assert result.info == {"group": "g7"}
                return result.messages[0]["content"]

        assert await asyncio.gather(*(member() for _ in range(4))) == ["1"] * 4


async def test_warm_pool_prestarts_fresh_servers() -> None:
    builds = 0

    def factory():  # counts how many servers the env builds ahead of need
        nonlocal builds
        builds += 1
        return build_calc()

    async with MCPEnv(factory, isolation="per_process", warm_pool=3) as env:
        await env.start()
        for _ in range(100):
            if builds >= 3:
                break
            await asyncio.sleep(0.01)
        assert builds == 3  # listing tools used one, then the pool filled to 3
        before = builds
        async with env.episode() as ep:
            await ep.reset(TASK)  # takes a warm one and starts a replacement
        for _ in range(100):
            if builds > before:
                break
            await asyncio.sleep(0.01)
        assert builds == before + 1


async def test_per_process_needs_a_factory_not_an_instance() -> None:
    with pytest.raises(EnvConfigError, match="per_process isolation needs a factory"):
        MCPEnv(build_calc(), isolation="per_process")


def test_unknown_isolation_mode() -> None:
    with pytest.raises(EnvConfigError, match="isolation must be one of"):
        MCPEnv(build_calc, isolation="per_thread")  # type: ignore[arg-type]
