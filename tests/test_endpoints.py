"""Rollouts and judges over several replicas of one endpoint (rollouts.endpoints): least-loaded
routing, a dead replica taken out and the request retried elsewhere, infra only when every replica
failed. Real parts: several scripted policy (and judge) servers on their own free ports over real
HTTP, the real OpenAI client, the energy env's FastMCP server, `python -m rollouts.generate`.

Every run checks nothing lost (one record per task), nothing doubled (one record per id, each
conversation exactly the scripted turns) and every failure named (infra, never scored)."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from common.flags import parse_base_urls
from contracts import Trajectory
from judges.endpoint import JudgeEndpoint
from judges.llm_judge import LLMJudge
from rollouts import ChatPolicy, PolicyConfig, RetryConfig, run_rollouts
from rollouts.endpoints import EndpointPool
from tests.fixtures.common import free_port
from tests.fixtures.judge_data import PRICE, make_trajectory
from tests.fixtures.judge_server import JudgeServer
from tests.fixtures.policy_server import ScriptedServer, energy_tasks

ROOT = Path(__file__).resolve().parents[1]
FAST = RetryConfig(retries=1, initial_s=0.01, max_s=0.02, jitter_s=0.01)


@pytest.fixture
def replicas() -> Iterator[list[ScriptedServer]]:
    """Three scripted policy servers, each on a free port of its own."""
    tasks = energy_tasks()
    servers = [ScriptedServer(tasks).start() for _ in range(3)]
    yield servers
    for server in servers:
        server.stop()


def policy_over(urls: list[str], **config: Any) -> ChatPolicy:
    return ChatPolicy(PolicyConfig(base_url=",".join(urls), model="scripted", request_timeout_s=5, **config))


def lines_of(path: Path) -> list[dict[str, Any]]:
    raw = path.read_bytes()
    assert raw.endswith(b"\n"), "the file ends in a torn line"
    return [json.loads(line) for line in raw.decode().splitlines()]


def assert_whole(out: Path, tasks: list[Any]) -> list[dict[str, Any]]:
    """One record per task, none doubled, every conversation the scripted one (nothing answered twice)."""
    records = lines_of(out)
    counts = Counter(record["id"] for record in records)
    assert set(counts) == {f"energy:{task.id}:s0" for task in tasks}
    assert set(counts.values()) == {1}
    for record in records:
        if record["error"] is None:  # tool-call turns, then one answer: each turn recorded once
            assistant = [m for m in record["messages"] if m["role"] == "assistant"]
            assert assistant[-1].get("content") and not assistant[-1].get("tool_calls")
            assert len(assistant) == len(record["turns"]) >= 2
    return records


# -- the URL list ------------------------------------------------------------------------------


def test_base_url_takes_one_or_several_and_rejects_bad_ones() -> None:
    assert parse_base_urls("http://a:1/v1") == ["http://a:1/v1"]
    assert parse_base_urls("http://a:1/v1, http://b:2/v1") == ["http://a:1/v1", "http://b:2/v1"]
    for bad in ("", "http://a/v1,", "a:1/v1", "ftp://a/v1", "http://a/v1,http://a/v1/"):
        with pytest.raises(ValueError):
            parse_base_urls(bad)


@pytest.mark.parametrize("module", ["rollouts.generate", "rollouts.questions", "train.bfcl", "serve.bench"])
def test_a_bad_base_url_is_one_line_and_exit_2(module: str) -> None:
    bad = "http://a/v1,http://a/v1" if module != "serve.bench" else "http://a/v1,http://b/v1"
    done = subprocess.run(
        [sys.executable, "-m", module, "--base-url", bad], capture_output=True, text=True, cwd=ROOT, timeout=120
    )
    assert done.returncode == 2, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and "--base-url" in done.stderr, done.stderr


# -- routing -----------------------------------------------------------------------------------


async def test_the_least_loaded_replica_gets_the_request() -> None:
    """Unit of the pool's choice (no network): fewest in flight, then fewest sent; cooling down: last."""
    now = [100.0]
    pool = EndpointPool(["http://a/v1", "http://b/v1", "http://c/v1"], lambda url: url, clock=lambda: now[0])
    a, b, c = pool.replicas
    a.stats.in_flight, b.stats.in_flight, c.stats.in_flight = 2, 1, 1
    b.stats.requests, c.stats.requests = 5, 3
    assert pool.pick() == 2  # c: as few in flight as b, fewer sent
    c.out_until = 110.0
    assert pool.pick() == 1  # c cooling down
    a.out_until = b.out_until = 105.0
    assert pool.pick() == 0  # all cooling down: the one back first
    now[0] = 111.0
    assert pool.pick() == 2  # cool-downs over: c again


async def test_rollouts_spread_over_replicas(energy_env: Any, replicas: list[ScriptedServer], tmp_path: Path) -> None:
    for server in replicas:
        server.set_script(delay_s=0.02)  # replies take a while, so requests overlap
    tasks = energy_env.tasks("train")[:12]
    out = tmp_path / "t.jsonl"
    async with policy_over([s.base_url for s in replicas]) as policy:
        result = await run_rollouts(energy_env, policy, tasks, out=out, concurrency=6, retry=FAST, progress=False)
    assert_whole(out, tasks)
    assert result.stats.errors == {}
    turns = sum(len(traj.turns) for traj in result.trajectories)
    got = [len(server.requests) for server in replicas]
    assert sum(got) == turns  # every turn asked once, on one replica
    assert min(got) >= turns // 6, got  # least-loaded: each replica takes a real share
    stats = result.stats.endpoints
    assert [item.url for item in stats] == [s.base_url for s in replicas]
    assert [item.requests for item in stats] == got and all(item.failures == 0 for item in stats)


async def test_a_replica_killed_mid_run_is_taken_out_and_nothing_is_lost(
    energy_env: Any, replicas: list[ScriptedServer], tmp_path: Path
) -> None:
    for server in replicas:
        server.set_script(delay_s=0.02)
    victim = replicas[1]
    tasks = energy_env.tasks("train")[:16]
    out = tmp_path / "t.jsonl"
    seen: list[Trajectory] = []
    killed = threading.Event()

    def on_trajectory(traj: Trajectory) -> None:
        seen.append(traj)
        if len(seen) == 3:  # mid-run: 13 rollouts still to go, 6 in flight
            killed.set()
            # stop() joins the server thread: off the event loop, so the run goes on meanwhile
            threading.Thread(target=victim.stop, daemon=True).start()

    async with policy_over([s.base_url for s in replicas], cooldown_s=60) as policy:
        result = await run_rollouts(
            energy_env, policy, tasks, out=out, concurrency=6, retry=FAST, progress=False, on_trajectory=on_trajectory
        )
    assert killed.is_set(), "the victim was never killed"
    records = assert_whole(out, tasks)
    assert all(record["error"] is None and record["verdict"]["success"] for record in records)  # none infra
    stats = {item.url: item for item in result.stats.endpoints}
    dead = stats[victim.base_url]
    assert dead.failures >= 1 and dead.taken_out == 1  # out once, for the whole cool-down
    turns = sum(len(traj.turns) for traj in result.trajectories)
    answered = sum(item.requests - item.failures for item in stats.values())
    assert answered == turns  # every turn answered exactly once: nothing doubled by fail-over
    assert sum(len(s.requests) for s in replicas if s is not victim) + len(victim.requests) == turns


async def test_infra_only_when_every_replica_failed(energy_env: Any, tmp_path: Path) -> None:
    tasks = energy_env.tasks("train")[:4]
    with ScriptedServer(energy_tasks()) as up, ScriptedServer(energy_tasks()) as broken:
        broken.set_script(fail_status=503, fail_times=-1)
        nobody = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens: connection refused
        one_up = tmp_path / "one_up.jsonl"
        async with policy_over([nobody, broken.base_url, up.base_url]) as policy:
            result = await run_rollouts(energy_env, policy, tasks, out=one_up, retry=FAST, progress=False)
        records = assert_whole(one_up, tasks)
        assert all(record["error"] is None for record in records)
        stats = result.stats.endpoints
        assert stats[0].failures >= 1 and stats[1].failures >= 1 and stats[2].failures == 0
        assert stats[0].taken_out >= 1 and stats[1].taken_out >= 1

        all_down = tmp_path / "all_down.jsonl"
        up.set_script(fail_status=500, fail_times=-1)
        async with policy_over([nobody, broken.base_url, up.base_url]) as policy:
            result = await run_rollouts(energy_env, policy, tasks, out=all_down, retry=FAST, progress=False)
    for record in assert_whole(all_down, tasks):
        assert record["error"]["kind"] == "infra" and record["reward"] is None and record["verdict"] is None
        assert record["error"]["message"].startswith("policy: ")
    # each rollout: (1 + FAST.retries) attempts, each tried on all three replicas
    assert [item.requests for item in result.stats.endpoints] == [len(tasks) * 2] * 3


def test_generate_cli_over_two_replicas(tmp_path: Path) -> None:
    import os

    with ScriptedServer(energy_tasks()) as first, ScriptedServer(energy_tasks()) as second:
        out = tmp_path / "t.jsonl"
        urls = f"{first.base_url},{second.base_url}"
        args = ["--env", "energy", "--limit", "6", "--model", "scripted", "--base-url", urls, "--out", str(out)]
        done = subprocess.run(
            [sys.executable, "-m", "rollouts.generate", *args, "--no-progress", "--no-weave", "--concurrency", "4"],
            capture_output=True,
            text=True,
            cwd=ROOT,
            timeout=120,
            env={**os.environ, "PYTHONPATH": str(ROOT), "LITELLM_LOCAL_MODEL_COST_MAP": "True"},
        )
        sent = [len(first.requests), len(second.requests)]
    assert done.returncode == 0, done.stderr
    assert f"endpoints: {first.base_url}: {sent[0]} requests; {second.base_url}: {sent[1]} requests" in done.stdout
    stats = json.loads(out.with_name("t.stats.json").read_text())
    assert [item["requests"] for item in stats["endpoints"]] == sent and min(sent) > 0


# -- the judges' endpoint ------------------------------------------------------------------------


async def test_the_judge_fails_over_to_a_live_replica() -> None:
    trajs = [make_trajectory(PRICE, [], answer=f"answer {i}", sample=i, group="g") for i in range(6)]
    with JudgeServer() as up:
        nobody = f"http://127.0.0.1:{free_port()}/v1"
        judge = LLMJudge(JudgeEndpoint(model="m", base_url=f"{nobody},{up.base_url}"), backoff_s=0.0, retries=1)
        scored = await judge.score(trajs)
        await judge.aclose()
    assert all(not traj.is_infra_failure and traj.reward == 0.5 for traj in scored)
    assert len(up.requests) == 6
    dead, live = judge.endpoint_stats()
    assert dead.failures >= 1 and dead.taken_out >= 1 and live.requests == 6 and live.failures == 0
    report = judge.report()
    assert report[f"endpoint {nobody} taken_out"] >= 1 and report[f"endpoint {up.base_url} requests"] == 6

    # every replica down: masked as infra, never a 0
    judge = LLMJudge(JudgeEndpoint(model="m", base_url=f"{nobody},http://127.0.0.1:{free_port()}/v1"), backoff_s=0.0)
    failed = await judge.score([make_trajectory(PRICE, [], answer="x", sample=0, group="h")])
    await judge.aclose()
    assert failed[0].is_infra_failure and failed[0].reward is None


async def test_eval_reports_each_replica(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`train.eval --base-url LIVE,DEAD`: every task scored (none infra), the dead one named."""
    from train.eval import main

    with ScriptedServer(energy_tasks()) as up:
        nobody = f"http://127.0.0.1:{free_port()}/v1"
        out = tmp_path / "report.json"
        argv = ["--env", "energy", "--base-url", f"{up.base_url},{nobody}", "--model", "scripted", "--limit", "4"]
        code = await main([*argv, "--report", str(out), "--no-progress"])
        sent = len(up.requests)
    assert code == 0
    report = json.loads(out.read_text())["reports"][0]
    assert report["n_infra"] == 0 and report["success_rate"] == 1.0
    live, dead = report["endpoints"]
    assert live["url"] == up.base_url and live["requests"] == sent and live["failures"] == 0
    assert dead["url"] == nobody and dead["failures"] >= 1 and dead["taken_out"] >= 1
    assert f"endpoints: {up.base_url}: {sent} requests; {nobody}:" in capsys.readouterr().err


async def test_ruler_fails_over_through_litellm() -> None:
    """RULER goes through litellm (`api_base` per replica): the dead replica is taken out there too."""
    from judges.ruler import RulerJudge

    group = [make_trajectory(PRICE, [], answer=f"answer {i}", sample=i, group="g") for i in range(3)]
    with JudgeServer() as up:
        nobody = f"http://127.0.0.1:{free_port()}/v1"
        judge = RulerJudge(JudgeEndpoint(model="m", base_url=f"{nobody},{up.base_url}"), backoff_s=0.0, retries=1)
        scored = await judge.score(group)
    assert all(not traj.is_infra_failure and traj.reward is not None for traj in scored)
    dead, live = judge.endpoint_stats()
    assert dead.failures == 1 and dead.taken_out == 1 and live.requests == 1 == len(up.requests)
