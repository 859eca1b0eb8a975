"""The built-in energy env: bundled data, task sets, verifier, isolation, and its server over stdio and HTTP."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

import envs
from envs import MCPEnv, StdioServer, Task, ToolCall
from envs.energy import data as energy_data
from envs.energy.gen_data import DATA_DIR, dump_json, generate
from envs.energy.tasks_gen import generate_tasks
from envs.verify import verify_answer
from tests.fixtures.common import free_port


def call(name: str, call_id: str = "c1", **arguments: Any) -> ToolCall:
    return ToolCall(id=call_id, name=name, arguments=json.dumps(arguments))


def test_bundled_data_is_what_the_seeded_generator_makes() -> None:
    data = generate()
    assert (DATA_DIR / "energy.json").read_text(encoding="utf-8") == dump_json(data)
    lines = (DATA_DIR / "tasks.jsonl").read_text(encoding="utf-8").splitlines()
    assert [json.loads(line) for line in lines] == generate_tasks(data)


def test_task_sets_have_every_kind_and_no_leaks() -> None:
    env = envs.load("energy")
    sizes = {split: len(env.tasks(split)) for split in env.splits()}
    assert sizes["train"] >= 300 and sizes["val"] >= 50 and sizes["test"] >= 100
    everything = [t for split in env.splits() for t in env.tasks(split)]
    assert len({t.id for t in everything}) == len(everything)
    assert len({t.question for t in everything}) == len(everything)  # no question in two splits
    for split in ("train", "test"):
        kinds = Counter(t.kind for t in env.tasks(split))
        assert {"single", "multi_step", "parallel", "no_tool"} <= set(kinds), (split, kinds)
    multi = next(t for t in env.tasks("train") if t.kind == "multi_step")
    assert sorted({c.step for c in multi.expected_calls}) == [0, 1]


async def _solve(episode: Any, task: Task) -> tuple[str, list[ToolCall]]:
    """Make the task's expected calls step by step; answer with the tool results' JSON."""
    await episode.reset(task)
    made: list[ToolCall] = []
    for step in sorted({c.step for c in task.expected_calls}):
        calls = [
            call(c.name, f"c{len(made) + i}", **c.arguments)
            for i, c in enumerate(c for c in task.expected_calls if c.step == step)
        ]
        result = await episode.step(calls)
        assert all(o.ok for o in result.outcomes), result.messages
        made += calls
    return json.dumps(task.answer), made


async def test_every_task_is_solved_by_its_expected_calls() -> None:
    """The answers are what the real server returns for the expected calls (fresh session per task)."""
    async with envs.load("energy") as env:
        tools = {t["function"]["name"] for t in await env.tools()}
        assert len(tools) >= 8 and {"book_capacity", "convert_units", "get_price"} <= tools
        for split in env.splits():
            for task in env.tasks(split):
                async with env.episode() as episode:
                    answer, made = await _solve(episode, task)
                verdict = env.verify(task, answer, made)
                assert verdict.success, (task.id, task.question, verdict.reason)


def test_verifier_right_and_wrong_answers() -> None:
    number = Task(id="n", question="price?", answer=3.412, tolerance=0.01)
    assert verify_answer(number, "The Henry Hub price was $3.41/MMBtu.", []).success
    assert not verify_answer(number, "About 3.2 USD/MMBtu.", []).success
    assert verify_answer(Task(id="b", question="q", answer=1362150.0), "1,362,150 GJ", []).success
    pair = Task(id="p", question="q", answer={"Waha": 1.05, "TTF": 12.9}, kind="parallel")
    both = verify_answer(pair, "Waha 1.05 and TTF 12.90", [])
    one = verify_answer(pair, "Waha was 1.05", [])
    assert both.success and not one.success and one.score == 0.5
    guesses = " ".join(str(x / 100) for x in range(300, 400))
    assert not verify_answer(number, guesses, []).success  # spraying numbers does not pass
    knowledge = Task(id="k", question="What does LNG stand for?", answer="liquefied natural gas", kind="no_tool")
    assert verify_answer(knowledge, "LNG means Liquefied Natural Gas.", []).success
    assert not verify_answer(knowledge, "LNG means Liquefied Natural Gas.", [call("get_price")]).success
    assert not verify_answer(Task(id="o", question="q", kind="open"), "anything", []).success


async def test_bad_arguments_reach_the_model_as_tool_errors() -> None:
    async with envs.load("energy") as env, env.episode() as episode:
        await episode.reset(env.tasks("train")[0])
        result = await episode.step(
            [
                call("get_price", "a", hub="Henry Hub", date="2024-12-31"),
                call("get_price", "b", hub="Nowhere Hub", date="2025-01-02"),
                call("get_storage", "c", region="East", week_ending="January 3rd"),
            ]
        )
    assert [o.ok for o in result.outcomes] == [False, False, False]
    texts = [m["content"] for m in result.messages]
    assert "data covers 2025-01-01 to 2025-03-31" in texts[0]
    assert "Nowhere Hub" in texts[1] and "YYYY-MM-DD" in texts[2]


async def _book_twice(env: MCPEnv) -> list[float]:
    """Two episodes of one group book the same pipeline-day one after the other."""
    remaining = []
    for _ in range(2):
        async with env.episode(group="g") as episode:
            await episode.reset(env.tasks("train")[0])
            step = await episode.step([call("book_capacity", pipeline="Transco", date="2025-01-10", volume_mmcfd=100)])
            remaining.append(json.loads(step.messages[0]["content"])["remaining_mmcfd"])
    return remaining


@pytest.mark.parametrize("isolation", ["per_session", "per_process"])
async def test_bookings_are_isolated_per_rollout(isolation: str) -> None:
    free = energy_data.spare_capacity("Transco", "2025-01-10")
    async with envs.load("energy", isolation=isolation) as env:
        assert await _book_twice(env) == [free - 100, free - 100]


async def test_shared_isolation_lets_bookings_accumulate() -> None:
    free = energy_data.spare_capacity("Transco", "2025-01-10")
    async with envs.load("energy", isolation="shared") as env:
        assert await _book_twice(env) == [free - 100, free - 200]


async def test_server_over_stdio() -> None:
    server = StdioServer(command=sys.executable, args=["-m", "envs.energy.server", "--transport", "stdio"])
    async with envs.load("energy") as reference:
        task = next(t for t in reference.tasks("test") if t.kind == "multi_step")
    async with MCPEnv(server, name="energy-stdio", tasks={"test": [task]}) as env, env.episode() as episode:
        answer, made = await _solve(episode, task)
        assert verify_answer(task, answer, made).success


@pytest.fixture(scope="module")
def energy_http() -> Iterator[str]:
    """`python -m envs.energy.server --transport http` on a free port; yields its base URL once healthy."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "envs.energy.server", "--transport", "http", "--port", str(port)],
        stdout=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(f"{base}/mcp/health", timeout=1)
                break
            except httpx.HTTPError:
                assert time.monotonic() < deadline and proc.poll() is None, "energy HTTP server did not start"
                time.sleep(0.1)
        yield base
    finally:
        proc.kill()
        proc.wait(timeout=10)


async def test_server_over_http_with_health_route(energy_http: str) -> None:
    async with httpx.AsyncClient() as client:
        health = await client.get(f"{energy_http}/mcp/health")
    assert health.json() == {"status": "ok", "server": "energy"}
    async with MCPEnv(f"{energy_http}/mcp", name="energy-http") as env, env.episode() as episode:
        await episode.reset(Task(id="t", question="Henry Hub on Jan 2?"))
        result = await episode.step([call("get_price", hub="Henry Hub", date="2025-01-02")])
    assert json.loads(result.messages[0]["content"]) == energy_data.price("Henry Hub", "2025-01-02")


def test_server_cli_bad_flag_is_one_line_exit_2() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "envs.energy.server", "--transport", "carrier-pigeon"], capture_output=True, text=True
    )
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
