"""MCPEnv over every transport, end to end against real servers, and infra failures."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time

import pytest

from contracts import Environment, Episode
from envs import EnvInfraError, MCPEnv, StdioServer, Task, ToolCall
from envs.config import HttpServer
from tests.fixtures.envs_fixtures import SERVER_SCRIPT, HttpMcpServer, calc_stdio
from tests.fixtures.envs_servers import build_calc, build_other

TASK = Task(id="t1", question="What is 2 + 3?", answer=5)


def call(name: str, call_id: str = "c1", **arguments: object) -> ToolCall:
    return ToolCall(id=call_id, name=name, arguments=json.dumps(arguments))


async def _round_trip(env: MCPEnv) -> None:
    tools = await env.tools()
    names = {t["function"]["name"] for t in tools}
    assert {"add", "book", "sleep", "fail", "big"} <= names
    add = next(t for t in tools if t["function"]["name"] == "add")
    assert add["type"] == "function"
    assert add["function"]["description"] == "Add two integers."
    assert add["function"]["parameters"]["required"] == ["a", "b"]
    async with env.episode() as episode:
        assert isinstance(episode, Episode) and isinstance(env, Environment)
        obs = await episode.reset(TASK)
        assert obs.messages == [
            {"role": "system", "content": "Use the tools."},
            {"role": "user", "content": "What is 2 + 3?"},
        ]
        assert obs.tools == tools
        result = await episode.step([call("add", a=2, b=3)])
        assert result.messages == [{"role": "tool", "tool_call_id": "c1", "name": "add", "content": "5"}]
        assert result.outcomes[0].ok and result.outcomes[0].error is None
        assert result.outcomes[0].latency_s > 0
        assert result.done is False
        final = await episode.step([])
        assert final.done is True and final.messages == []


async def test_in_process_object() -> None:
    async with MCPEnv(build_calc(), name="calc", system_prompt="Use the tools.", isolation="shared") as env:
        await _round_trip(env)


async def test_in_process_factory() -> None:
    async with MCPEnv(build_calc, name="calc", system_prompt="Use the tools.") as env:
        await _round_trip(env)


async def test_stdio_subprocess() -> None:
    async with MCPEnv(calc_stdio(), system_prompt="Use the tools.", isolation="shared") as env:
        await _round_trip(env)
        # One process serves every episode in shared mode: the session is pooled.
        pids = set()
        for _ in range(3):
            async with env.episode() as episode:
                await episode.reset(TASK)
                pids.add((await episode.step([call("pid")])).messages[0]["content"])
        assert len(pids) == 1


async def test_streamable_http(calc_http: HttpMcpServer) -> None:
    async with MCPEnv(calc_http.url, system_prompt="Use the tools.", isolation="shared") as env:
        await _round_trip(env)
    async with MCPEnv(HttpServer(url=calc_http.url), system_prompt="Use the tools.", isolation="per_session") as env:
        await _round_trip(env)


async def test_sse(calc_sse: HttpMcpServer) -> None:
    # The legacy SSE transport, to a FastMCP server run with transport="sse": a `/sse` URL is SSE.
    async with MCPEnv(calc_sse.url, system_prompt="Use the tools.", isolation="shared") as env:
        assert env.handles["mcp"].kind == "sse"
        await _round_trip(env)
    async with MCPEnv(HttpServer(url=calc_sse.url, type="sse"), isolation="per_session") as env:
        booked = []
        for _ in range(2):  # each episode its own SSE session, so its own session state
            async with env.episode() as episode:
                await episode.reset(TASK)
                booked.append((await episode.step([call("book", amount=3)])).messages[0]["content"])
        assert booked == ["3", "3"]


async def test_gym_style_reset_and_step_on_the_env() -> None:
    async with MCPEnv(build_calc, isolation="per_session") as env:
        obs = await env.reset(TASK)
        assert obs.messages[-1]["content"] == TASK.question
        assert (await env.step([call("book", amount=2)])).messages[0]["content"] == "2"
        await env.reset(TASK)  # a new episode starts from the initial state
        assert (await env.step([call("book", amount=3)])).messages[0]["content"] == "3"


async def test_openai_tool_call_dicts_are_accepted() -> None:
    async with MCPEnv(build_calc) as env, env.episode() as episode:
        await episode.reset(TASK)
        openai_call = {"id": "x9", "type": "function", "function": {"name": "add", "arguments": '{"a": 1, "b": 1}'}}
        result = await episode.step([openai_call])
        assert result.messages[0] == {"role": "tool", "tool_call_id": "x9", "name": "add", "content": "2"}


async def test_several_servers_namespace_only_colliding_names() -> None:
    async with MCPEnv({"calc": build_calc, "other": build_other}, isolation="shared") as env:
        names = [t["function"]["name"] for t in await env.tools()]
        assert "calc__add" in names and "other__add" in names and "add" not in names
        assert "echo" in names and "book" in names  # unique names stay as they are
        assert env.tool_servers()["echo"] == "other"
        async with env.episode() as episode:
            await episode.reset(TASK)
            result = await episode.step(
                [call("calc__add", "a", a=1, b=2), call("other__add", "b", a=1, b=2), call("echo", "c", text="hi")]
            )
        assert [m["content"] for m in result.messages] == ["3", "other:3.0", "hi"]
        assert [m["tool_call_id"] for m in result.messages] == ["a", "b", "c"]


async def test_mixed_transports_in_one_env() -> None:
    async with MCPEnv({"calc": calc_stdio(), "other": build_other}, isolation="shared") as env:
        assert {t["function"]["name"] for t in await env.tools()} >= {"calc__add", "other__add", "echo", "pid"}
        async with env.episode() as episode:
            await episode.reset(TASK)
            result = await episode.step([call("calc__add", "a", a=2, b=2), call("echo", "b", text="x")])
        assert [m["content"] for m in result.messages] == ["4", "x"]


async def test_stdio_server_killed_mid_episode_raises_infra_error_fast() -> None:
    async with MCPEnv(calc_stdio(), isolation="per_process", warm_pool=0) as env, env.episode() as episode:
        await episode.reset(TASK)
        pid = int((await episode.step([call("pid")])).messages[0]["content"])
        pending = asyncio.create_task(episode.step([call("sleep", seconds=60)]))
        await asyncio.sleep(0.3)  # the call is in flight on the server
        started = time.monotonic()
        os.kill(pid, signal.SIGKILL)
        with pytest.raises(EnvInfraError, match="connection closed"):
            await asyncio.wait_for(pending, timeout=10)
        assert time.monotonic() - started < 3
        with pytest.raises(EnvInfraError):  # the episode stays failed, it does not hang
            await asyncio.wait_for(episode.step([call("add", a=1, b=1)]), timeout=5)


async def test_shared_session_is_reopened_after_the_server_died() -> None:
    async with MCPEnv(calc_stdio(), isolation="shared") as env:
        async with env.episode() as episode:
            await episode.reset(TASK)
            pid = int((await episode.step([call("pid")])).messages[0]["content"])
            os.kill(pid, signal.SIGKILL)
            with pytest.raises(EnvInfraError):
                await asyncio.wait_for(episode.step([call("add", a=1, b=1)]), timeout=10)
        async with env.episode() as episode:  # the next episode gets a working session again
            await episode.reset(TASK)
            assert (await episode.step([call("add", a=1, b=1)])).messages[0]["content"] == "2"


async def test_http_server_gone_is_an_infra_error() -> None:
    server = HttpMcpServer()
    try:
        async with MCPEnv(server.url, isolation="per_session", warm_pool=0) as env, env.episode() as episode:
            await episode.reset(TASK)
            server.stop()
            with pytest.raises(EnvInfraError):
                await asyncio.wait_for(episode.step([call("add", a=1, b=1)]), timeout=10)
        with pytest.raises(EnvInfraError, match="failed to start"):  # connection refused
            await asyncio.wait_for(MCPEnv(server.url, isolation="shared").start(), timeout=10)
    finally:
        server.stop()


@pytest.mark.parametrize(
    ("server", "match"),
    [
        (StdioServer(command="/nonexistent/mcp-server"), "failed to start"),
        (StdioServer(command=sys.executable, args=["-c", "raise SystemExit(3)"]), "closed the connection"),
    ],
)
async def test_stdio_server_that_cannot_start(server: StdioServer, match: str) -> None:
    env = MCPEnv(server, startup_timeout_s=10)
    with pytest.raises(EnvInfraError, match=match):
        await asyncio.wait_for(env.start(), timeout=15)
    await env.aclose()


async def test_startup_timeout() -> None:
    # Reads its stdin and never answers `initialize`.
    silent = StdioServer(command=sys.executable, args=["-c", "import sys; sys.stdin.read()"])
    env = MCPEnv(silent, startup_timeout_s=0.5)
    started = time.monotonic()
    with pytest.raises(EnvInfraError, match=r"did not start within 0\.5 s"):
        await env.start()
    assert time.monotonic() - started < 5  # includes stopping the silent process
    await env.aclose()


def test_server_script_is_self_contained() -> None:
    # The stdio fixture must start from any directory: it imports only fastmcp.
    text = SERVER_SCRIPT.read_text()
    assert "from tests" not in text and "import envs" not in text
