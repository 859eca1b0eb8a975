"""Model mistakes become tool messages and the episode goes on; parallel calls run at once."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator

import pytest

from envs import Episode, MCPEnv, Task, ToolCall
from tests.fixtures.envs_servers import build_calc

TASK = Task(id="t1", question="q")


@pytest.fixture
async def episode() -> AsyncIterator[Episode]:
    async with MCPEnv(build_calc, call_timeout_s=0.5, max_output_chars=100) as env, env.episode() as ep:
        await ep.reset(TASK)
        yield ep


def call(name: str, arguments: str | dict[str, object] = "{}", call_id: str = "c1") -> ToolCall:
    return ToolCall(id=call_id, name=name, arguments=arguments)


async def _one(ep: Episode, tool_call: ToolCall) -> tuple[str, str | None]:
    result = await ep.step([tool_call])
    assert result.done is False
    (message,), (outcome,) = result.messages, result.outcomes
    assert message["role"] == "tool" and message["tool_call_id"] == tool_call.id and message["name"] == tool_call.name
    assert outcome.ok is (outcome.error is None)
    return message["content"], outcome.error


async def _still_works(ep: Episode) -> None:
    assert await _one(ep, call("add", {"a": 40, "b": 2})) == ("42", None)


async def test_unknown_tool(episode: Episode) -> None:
    content, error = await _one(episode, call("multiply", {"a": 1}))
    assert error == "unknown_tool"
    assert "unknown tool 'multiply'" in content and "add" in content  # names the tools that exist
    await _still_works(episode)


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [
        ('{"a": 1, "b": ', "not valid JSON"),
        ("[1, 2]", "must be a JSON object"),
        ("add(1, 2)", "not valid JSON"),
    ],
)
async def test_arguments_that_are_not_a_json_object(episode: Episode, arguments: str, expected: str) -> None:
    content, error = await _one(episode, call("add", arguments))
    assert error == "bad_arguments"
    assert expected in content and content.startswith("Error")
    await _still_works(episode)


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [
        ({"a": 1}, "'b' is a required property"),
        ({"a": "one", "b": 2}, "at 'a': 'one' is not of type 'integer'"),
        ({"a": 1, "b": 2, "c": 3}, "'c' was unexpected"),
    ],
)
async def test_arguments_that_do_not_match_the_schema(
    episode: Episode, arguments: dict[str, object], expected: str
) -> None:
    content, error = await _one(episode, call("add", arguments))
    assert error == "bad_arguments"
    assert content.startswith("Error: invalid arguments for 'add'") and expected in content
    await _still_works(episode)


async def test_tool_that_raises(episode: Episode) -> None:
    content, error = await _one(episode, call("fail", {"message": "pipeline closed for maintenance"}))
    assert error == "tool_error"
    assert content.startswith("Error") and "pipeline closed for maintenance" in content
    await _still_works(episode)


async def test_oversized_output_is_capped_with_a_marker(episode: Episode) -> None:
    result = await episode.step([call("big", {"size": 5000})])
    content = result.messages[0]["content"]
    assert content.startswith("x" * 100) and not content.startswith("x" * 101)
    assert "[truncated: 4900 more characters not shown]" in content
    assert result.outcomes[0].truncated and result.outcomes[0].ok
    small = await episode.step([call("big", {"size": 100})])
    assert small.messages[0]["content"] == "x" * 100 and not small.outcomes[0].truncated


async def test_timeout_is_reported_and_the_episode_goes_on(episode: Episode) -> None:
    started = time.monotonic()
    content, error = await _one(episode, call("sleep", {"seconds": 5}))
    assert time.monotonic() - started < 2
    assert error == "timeout" and "timed out after 0.5 s" in content
    await _still_works(episode)


async def test_parallel_calls_run_concurrently_and_keep_call_order(episode: Episode) -> None:
    calls = [
        call("sleep", {"seconds": 0.3}, "a"),
        call("add", {"a": 1, "b": 2}, "b"),
        call("nope", "{}", "c"),
        call("sleep", {"seconds": 0.3}, "d"),
    ]
    started = time.monotonic()
    result = await episode.step(calls)
    assert time.monotonic() - started < 0.55  # two 0.3 s sleeps overlapped
    assert [m["tool_call_id"] for m in result.messages] == ["a", "b", "c", "d"]
    assert [m["content"] for m in result.messages][:2] == ["slept 0.3", "3"]
    assert [o.error for o in result.outcomes] == [None, None, "unknown_tool", None]


async def test_step_before_reset_is_a_usage_error() -> None:
    async with MCPEnv(build_calc) as env:
        with pytest.raises(RuntimeError, match="reset"):
            await env.episode().step([call("add", {"a": 1, "b": 1})])
        with pytest.raises(RuntimeError, match="reset"):
            await env.step([call("add", {"a": 1, "b": 1})])


async def test_raw_dict_arguments_and_structured_results() -> None:
    async with MCPEnv(build_calc, isolation="shared") as env, env.episode() as ep:
        await ep.reset(TASK)
        result = await ep.step([call("add", {"a": 2, "b": 2})])
        assert json.loads(result.messages[0]["content"]) == 4
