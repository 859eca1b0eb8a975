"""The policy over real HTTP: a real openai client against the scripted test server."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator

import openai
import pytest

from contracts import ExpectedCall, Task
from rollouts.errors import is_transient
from rollouts.policy import ChatPolicy, PolicyConfig
from rollouts.rollout import RetryConfig, act_with_retries
from tests.fixtures.policy_server import ScriptedServer

TASK = Task(
    id="t1",
    question="What was the day-ahead price in DE at hour 3, and the load in FR?",
    answer=42.5,
    kind="parallel",
    expected_calls=[
        ExpectedCall(name="get_price", arguments={"zone": "DE", "hour": 3}),
        ExpectedCall(name="get_load", arguments={"zone": "FR"}),
    ],
)
TOOLS = [
    {"type": "function", "function": {"name": name, "description": name, "parameters": {"type": "object"}}}
    for name in ("get_price", "get_load")
]
START = [{"role": "system", "content": "You are an energy analyst."}, {"role": "user", "content": TASK.question}]
FAST_RETRY = RetryConfig(retries=3, initial_s=0.01, max_s=0.05, jitter_s=0.01)


@pytest.fixture(scope="module")
def server() -> Iterator[ScriptedServer]:
    with ScriptedServer([TASK]) as srv:
        yield srv


@pytest.fixture
def fresh(server: ScriptedServer) -> ScriptedServer:
    server.set_script()
    return server


def policy_for(server: ScriptedServer, **overrides: object) -> ChatPolicy:
    return ChatPolicy(PolicyConfig(base_url=server.base_url, model="scripted", **overrides))


async def test_native_parallel_calls_then_answer(fresh: ScriptedServer) -> None:
    async with policy_for(fresh) as policy:
        client = policy.client
        turn = await policy.act(START, TOOLS)
        assert [(c.name, c.parsed_arguments()) for c in turn.tool_calls] == [
            ("get_price", {"zone": "DE", "hour": 3}),
            ("get_load", {"zone": "FR"}),
        ]
        assert turn.finish_reason == "tool_calls" and turn.latency_s > 0
        assert turn.prompt_tokens > 0 and turn.completion_tokens > 0
        history = [*START, turn.message] + [
            {"role": "tool", "tool_call_id": c.id, "content": "1"} for c in turn.tool_calls
        ]
        final = await policy.act(history, TOOLS)
        assert final.tool_calls == [] and final.content == "42.5"
        assert policy.client is client  # one client (one connection pool) for every turn
    body = fresh.requests[0]
    assert body["tools"] == TOOLS and body["tool_choice"] == "auto" and body["model"] == "scripted"
    assert "logprobs" not in body


@pytest.mark.parametrize("form", ["text", "json"])
async def test_text_form_tool_calls_are_parsed(fresh: ScriptedServer, form: str) -> None:
    fresh.set_script(tool_call_form=form)
    async with policy_for(fresh) as policy:
        turn = await policy.act(START, TOOLS)
    assert turn.text_tool_calls
    assert [c.name for c in turn.tool_calls] == ["get_price", "get_load"]
    assert turn.message["tool_calls"][0]["function"]["name"] == "get_price"


@pytest.mark.parametrize("think", ["inline", "open", "field"])
async def test_thinking_is_kept_apart_from_the_answer(fresh: ScriptedServer, think: str) -> None:
    fresh.set_script(think=think)
    async with policy_for(fresh) as policy:
        turn = await policy.act(START, TOOLS)
        assert turn.message["reasoning_content"].startswith("I need get_price")
        assert turn.message["content"] == "" and len(turn.tool_calls) == 2
        history = [*START, turn.message] + [
            {"role": "tool", "tool_call_id": c.id, "content": "1"} for c in turn.tool_calls
        ]
        await policy.act(history, TOOLS)
    sent = fresh.requests[1]["messages"][2]
    assert "reasoning_content" not in sent
    assert sent["content"].startswith("<think>\nI need get_price")  # Qwen3 keeps it within the tool loop


async def test_keep_think_off_drops_thinking(fresh: ScriptedServer) -> None:
    fresh.set_script(think="inline")
    async with policy_for(fresh, keep_think=False) as policy:
        turn = await policy.act(START, TOOLS)
    assert "reasoning_content" not in turn.message and turn.reasoning


async def test_logprobs_and_token_ids_are_requested_and_recorded(fresh: ScriptedServer) -> None:
    async with policy_for(fresh, logprobs=True) as policy:
        turn = await policy.act(START, TOOLS)
    body = fresh.requests[0]
    assert body["logprobs"] is True and body["top_logprobs"] == 0
    assert body["return_tokens_as_token_ids"] is True  # extra_body lands in the JSON body
    assert turn.logprobs is not None
    assert len(turn.logprobs.token_ids) == len(turn.logprobs.logprobs) == len(turn.logprobs.tokens) > 0
    assert all(isinstance(i, int) for i in turn.logprobs.token_ids)


async def test_api_key_comes_from_the_environment_and_is_never_stored(
    fresh: ScriptedServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = "sk-test-NEVER-WRITE-ME-123"
    monkeypatch.setenv("OPENAI_API_KEY", secret)
    policy = policy_for(fresh)
    async with policy:
        turn = await policy.act(START, TOOLS)
    assert fresh.auth_headers[0] == f"Bearer {secret}"
    assert secret not in policy.config.model_dump_json()
    assert secret not in turn.model_dump_json()


async def test_transient_errors_are_retried_with_backoff(fresh: ScriptedServer) -> None:
    fresh.set_script(fail_status=429, fail_times=2)
    counter: Counter[str] = Counter()
    async with policy_for(fresh) as policy:
        turn = await act_with_retries(policy, START, TOOLS, FAST_RETRY, counter)
    assert len(turn.tool_calls) == 2
    assert counter["policy_retries"] == 2 and len(fresh.requests) == 3


async def test_retries_give_up_and_non_transient_errors_are_not_retried(fresh: ScriptedServer) -> None:
    fresh.set_script(fail_status=500, fail_times=-1)
    counter: Counter[str] = Counter()
    async with policy_for(fresh) as policy:
        with pytest.raises(openai.InternalServerError):
            await act_with_retries(policy, START, TOOLS, FAST_RETRY, counter)
        assert len(fresh.requests) == FAST_RETRY.retries + 1
        fresh.set_script(fail_status=400, fail_times=-1)
        with pytest.raises(openai.BadRequestError) as info:
            await act_with_retries(policy, START, TOOLS, FAST_RETRY, counter)
        assert not is_transient(info.value) and len(fresh.requests) == 1


async def test_slow_replies_time_out_as_transient_errors(fresh: ScriptedServer) -> None:
    fresh.set_script(delay_s=0.5)
    async with policy_for(fresh, request_timeout_s=0.1) as policy:
        start = time.perf_counter()
        with pytest.raises(openai.APITimeoutError) as info:
            await policy.act(START, TOOLS)
        assert time.perf_counter() - start < 0.45
    assert is_transient(info.value)
