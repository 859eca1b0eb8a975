"""Fault injection: servers that fail, processes that die, two writers on one file.

Every case checks the same three things: nothing lost (every task has a record), nothing doubled
(one record per id, every line whole), and every failure named (an infra failure is typed infra,
with no reward and no verdict, never scored as the model's). Real parts only: the scripted policy
and judge servers over real HTTP, the energy env's FastMCP server, `python -m rollouts.generate`
and `python -m judges.score` as real subprocesses.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from contracts import Trajectory
from rollouts import ChatPolicy, PolicyConfig, RetryConfig, run_rollouts
from rollouts.lock import lock_path, output_lock
from tests.fixtures.common import free_port
from tests.fixtures.judge_data import NO_TOOL, PARALLEL, PRICE, make_trajectory
from tests.fixtures.judge_server import JudgeServer
from tests.fixtures.policy_server import ScriptedServer

ROOT = Path(__file__).resolve().parents[1]
FAST = RetryConfig(retries=1, initial_s=0.01, max_s=0.02, jitter_s=0.01)


def lines_of(path: Path) -> list[dict[str, Any]]:
    """Every line of `path` parsed: a torn or broken line fails the test (no lenient reader here)."""
    raw = path.read_bytes()
    assert raw.endswith(b"\n"), "the file ends in a torn line"
    return [json.loads(line) for line in raw.decode().splitlines()]


def assert_one_per_id(path: Path, ids: set[str]) -> list[dict[str, Any]]:
    records = lines_of(path)
    counts = Counter(record["id"] for record in records)
    assert set(counts) == ids, f"missing {ids - set(counts)}, extra {set(counts) - ids}"
    assert set(counts.values()) == {1}, f"doubled: {[i for i, n in counts.items() if n > 1]}"
    return records


def assert_infra_not_scored(record: dict[str, Any]) -> None:
    assert record["error"]["kind"] == "infra", record["error"]
    assert record["reward"] is None and record["verdict"] is None


def cli_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("WANDB_API_KEY", "OPENAI_API_KEY", "JUDGE_API_KEY")}
    return env | {"LITELLM_LOCAL_MODEL_COST_MAP": "True", "PYTHONPATH": str(ROOT)}


def generate(server_url: str, out: Path, *more: str) -> list[str]:
    return [
        sys.executable, "-m", "rollouts.generate", "--env", "energy", "--split", "train", "--base-url", server_url,
        "--model", "scripted", "--out", str(out), "--no-progress", "--no-weave", *more,
    ]  # fmt: skip


def run(args: list[str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout, env=cli_env(), cwd=ROOT, check=False)


# -- a policy server that fails ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("fault", "expect"),
    [
        ({"fail_status": 429}, "HTTP 429"),
        ({"fail_status": 500}, "HTTP 500"),
        ({"malformed_body": True}, "policy: PolicyError: the server's reply is not JSON"),
        ({"hang_s": 1.0}, "APITimeoutError"),
    ],
    ids=["429", "500", "malformed-body", "hang"],
)
async def test_policy_faults_are_infra_then_resume_retries_them(
    energy_env: Any, scripted_server: ScriptedServer, tmp_path: Path, fault: dict[str, Any], expect: str
) -> None:
    tasks = energy_env.tasks("train")[:3]
    ids = {f"energy:{task.id}:s0" for task in tasks}
    out = tmp_path / "t.jsonl"
    scripted_server.set_script(fail_times=-1, **fault)
    policy = ChatPolicy(PolicyConfig(base_url=scripted_server.base_url, model="scripted", request_timeout_s=0.3))
    async with policy:
        first = await run_rollouts(energy_env, policy, tasks, out=out, retry=FAST, progress=False, concurrency=3)
        for record in assert_one_per_id(out, ids):
            assert_infra_not_scored(record)
            assert expect in record["error"]["message"], record["error"]["message"]
        assert first.stats.errors == {"infra": 3} and first.stats.scored == 0

        # --keep-infra: nothing runs again, the failures stay as they were.
        kept = await run_rollouts(energy_env, policy, tasks, out=out, retry=FAST, progress=False, retry_infra=False)
        assert kept.trajectories == [] and kept.retried == 0

        scripted_server.set_script()  # the server is back
        second = await run_rollouts(energy_env, policy, tasks, out=out, retry=FAST, progress=False)
    assert second.retried == 3 and second.stats.retried == 3 and second.stats.new == 3
    records = assert_one_per_id(out, ids)
    assert all(record["error"] is None and record["verdict"]["success"] for record in records)
    assert not lock_path(out).exists()  # released and removed


async def test_a_429_burst_is_retried_inside_the_rollout(
    energy_env: Any, scripted_server: ScriptedServer, tmp_path: Path
) -> None:
    tasks = energy_env.tasks("train")[:2]
    scripted_server.set_script(fail_status=429, fail_times=2)
    retry = RetryConfig(retries=3, initial_s=0.01, max_s=0.02, jitter_s=0.01)
    async with ChatPolicy(PolicyConfig(base_url=scripted_server.base_url, model="scripted")) as policy:
        result = await run_rollouts(energy_env, policy, tasks, out=tmp_path / "t.jsonl", retry=retry, progress=False)
    assert result.stats.errors == {} and result.stats.success == 2 and result.stats.policy_retries == 2


# -- two writers on one file -------------------------------------------------------------------


def test_a_second_writer_on_the_same_file_exits_2_naming_the_first(
    scripted_server: ScriptedServer, tmp_path: Path
) -> None:
    out = tmp_path / "t.jsonl"
    scripted_server.set_script(delay_s=0.3)  # slow, so the first is still writing when the second starts
    first = subprocess.Popen(
        generate(scripted_server.base_url, out, "--limit", "12", "--concurrency", "1"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=cli_env(),
        cwd=ROOT,
    )
    try:
        deadline = time.monotonic() + 30
        while not (out.exists() and out.stat().st_size):  # the first one is writing
            assert first.poll() is None and time.monotonic() < deadline, "the first writer did not start"
            time.sleep(0.02)
        second = run(generate(scripted_server.base_url, out, "--limit", "12"))
        assert first.poll() is None, "the first run ended before the second was refused: the test proves nothing"
        assert second.returncode == 2, second.stderr
        lines = second.stderr.strip().splitlines()
        assert len(lines) == 1 and f"pid {first.pid}" in lines[0] and "being written" in lines[0], second.stderr
        scripted_server.set_script()  # full speed: let the first one finish
        assert first.wait(timeout=60) == 0
    finally:
        if first.poll() is None:
            first.kill()
        if first.stderr:
            first.stderr.close()
    assert_one_per_id(out, {f"energy:train-{i:04d}:s0" for i in range(12)})


def test_judges_score_refuses_an_output_another_process_writes(tmp_path: Path) -> None:
    src, dst = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    src.write_text(make_trajectory(PRICE, [], answer="x").model_dump_json() + "\n")
    with output_lock(dst):  # this test process is the other writer
        score = [sys.executable, "-m", "judges.score", "--judge", "rules", str(src), "--out", str(dst), "--no-cache"]
        refused = run(score)
        assert refused.returncode == 2, refused.stderr
        assert refused.stderr.strip().splitlines() == [refused.stderr.strip()]
        assert f"pid {os.getpid()}" in refused.stderr
    done = run([sys.executable, "-m", "judges.score", "--judge", "rules", str(src), "--out", str(dst), "--no-cache"])
    assert done.returncode == 0, done.stderr  # the lock went with its holder


# -- kill -9 at random points, then resume ----------------------------------------------------


def test_kill_9_at_random_points_then_resume(scripted_server: ScriptedServer, tmp_path: Path) -> None:
    out = tmp_path / "t.jsonl"
    limit, samples = 10, 2
    rng = random.Random(20)
    # Some requests fail for good (no retries): infra records that later resumes must run again.
    scripted_server.set_script(delay_s=0.03, fail_status=500, fail_times=3)
    args = generate(scripted_server.base_url, out, "--limit", str(limit), "--samples", str(samples))
    args += ["--concurrency", "3", "--retries", "0"]
    kills = infra_seen = 0
    for _ in range(3):
        before = len(lines_of(out)) if out.exists() else 0
        proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=cli_env(), cwd=ROOT)
        target = before + rng.randint(1, 4)  # a random point: after 1..4 more records
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and proc.poll() is None:
            if out.exists() and out.read_bytes().count(b"\n") >= target:
                break
            time.sleep(rng.uniform(0.0, 0.02))
        if proc.poll() is None:
            proc.kill()  # SIGKILL: no cleanup, no flush
            kills += 1
        proc.wait(timeout=10)
        # The file is readable after every kill, one record per id (a torn tail may be there).
        records = [json.loads(line) for line in out.read_bytes().split(b"\n")[:-1]]
        assert len(records) == len({record["id"] for record in records})
        infra_seen = max(infra_seen, sum(1 for record in records if record["error"]))
    assert kills >= 2, "the runs finished before they could be killed: slow the server down"
    assert infra_seen, "no infra failure was ever written: the resume below would retry nothing"
    scripted_server.set_script()
    done = run(args)
    assert done.returncode == 0, done.stderr
    ids = {f"energy:train-{i:04d}:s{s}" for i in range(limit) for s in range(samples)}
    records = assert_one_per_id(out, ids)
    assert all(record["error"] is None for record in records)  # every infra failure was run again
    stats = json.loads(out.with_name("t.stats.json").read_text())
    assert stats["count"] == limit * samples and stats["errors"] == {}


# -- a judge that goes down mid-run -------------------------------------------------------------


@pytest.fixture
def trajectories(tmp_path: Path) -> Path:
    trajs = [
        make_trajectory(task, [], answer=f"answer {i}", sample=i)
        for i, task in enumerate([PRICE, PRICE, NO_TOOL, NO_TOOL, PARALLEL, PARALLEL, PRICE, NO_TOOL])
    ]
    path = tmp_path / "traj.jsonl"
    path.write_text("".join(traj.model_dump_json() + "\n" for traj in trajs))
    return path


def score_args(port: int, src: Path, dst: Path, concurrency: int = 1) -> list[str]:
    return [
        sys.executable, "-m", "judges.score", "--judge", "llm", "--judge-model", "judge",
        "--judge-base-url", f"http://127.0.0.1:{port}/v1", "--concurrency", str(concurrency), "--retries", "1",
        "--no-cache", str(src), "--out", str(dst),
    ]  # fmt: skip


@pytest.fixture
def judge_port() -> Iterator[int]:
    yield free_port()


def test_a_judge_that_goes_down_mid_run_marks_infra_never_zero(
    trajectories: Path, tmp_path: Path, judge_port: int
) -> None:
    dst = tmp_path / "scored.jsonl"
    ids = {json.loads(line)["id"] for line in trajectories.read_text().splitlines()}
    server = JudgeServer(port=judge_port).start()
    server.set_script(default_score=0.75, delay_s=0.1)
    proc = subprocess.Popen(
        score_args(judge_port, trajectories, dst), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=cli_env(), cwd=ROOT,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while len(server.requests) < 3:
            assert time.monotonic() < deadline and proc.poll() is None, "the judge was never asked"
            time.sleep(0.01)
    finally:
        server.stop()  # down: connections refused from now on
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0, stderr  # some were judged: a warning, not a failure
    records = {record["id"]: record for record in assert_one_per_id(dst, ids)}
    judged = [r for r in records.values() if r["error"] is None]
    failed = [r for r in records.values() if r["error"] is not None]
    assert judged and failed
    assert all(r["reward"] == 0.75 for r in judged)  # the judge's own score, nothing else
    for record in failed:
        assert record["error"]["kind"] == "infra" and record["reward"] is None  # masked, never 0
        assert "APIConnectionError" in record["metrics"]["judge_error"]
    warning = [line for line in stderr.splitlines() if line.startswith("warning:")]
    assert len(warning) == 1 and f"{len(failed)} of {len(ids)}" in warning[0] and str(judge_port) in warning[0]

    with JudgeServer(port=judge_port) as back:  # the judge is back: a rerun judges just the failed ones
        back.set_script(default_score=0.75)
        again = run(score_args(judge_port, trajectories, dst))
        assert again.returncode == 0, again.stderr
        assert len(back.requests) == len(failed)
    assert f"{len(failed)} judged again" in again.stdout
    records = assert_one_per_id(dst, ids)
    assert all(r["error"] is None and r["reward"] == 0.75 for r in records)
    assert stdout  # the first run printed its table


def test_a_judge_down_from_the_start_exits_1_naming_it(trajectories: Path, tmp_path: Path, judge_port: int) -> None:
    result = run(score_args(judge_port, trajectories, tmp_path / "s.jsonl", concurrency=8))
    assert result.returncode == 1, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and f"127.0.0.1:{judge_port}" in errors[0] and "APIConnectionError" in errors[0]


def test_a_refused_judge_key_is_not_retried_and_names_the_key(
    trajectories: Path, tmp_path: Path, judge_port: int
) -> None:
    with JudgeServer(port=judge_port) as server:
        server.set_script(fail_status=401, fail_times=-1)
        result = run(score_args(judge_port, trajectories, tmp_path / "s.jsonl", concurrency=8))
        assert len(server.requests) == 8  # one per trajectory: a 401 is not retried
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "HTTP 401" in errors[0] and "JUDGE_API_KEY" in errors[0], result.stderr
    assert "--judge-base-url" in errors[0] and "not retried" in errors[0]


async def test_resume_compacts_a_file_that_holds_an_id_twice(
    energy_env: Any, scripted_server: ScriptedServer, tmp_path: Path
) -> None:
    """A file two unlocked runs (an older version) wrote: the last record of an id wins, once."""
    tasks = energy_env.tasks("train")[:2]
    out = tmp_path / "t.jsonl"
    async with ChatPolicy(PolicyConfig(base_url=scripted_server.base_url, model="scripted")) as policy:
        await run_rollouts(energy_env, policy, tasks, out=out, retry=FAST, progress=False)
    text = out.read_text()
    newer = text.replace('"model":"scripted"', '"model":"newer"')
    assert newer != text
    out.write_text(text + newer + '{"id": "torn')  # every id twice (the later copy "newer"), and a torn tail
    async with ChatPolicy(PolicyConfig(base_url=scripted_server.base_url, model="scripted")) as policy:
        again = await run_rollouts(energy_env, policy, tasks, out=out, retry=FAST, progress=False)
    assert again.trajectories == [] and again.stats.count == 2
    records = assert_one_per_id(out, {f"energy:{task.id}:s0" for task in tasks})
    assert {Trajectory.model_validate(r).model for r in records} == {"newer"}  # the last record of each id won


# -- an MCP server killed mid-run (stdio and streamable HTTP) ------------------------------------


def energy_env_over(server: Any, **options: Any) -> Any:
    """The energy env with its FastMCP server out of process (stdio or HTTP), isolated per session."""
    from envs import MCPEnv
    from envs.energy import SYSTEM_PROMPT, TASKS_FILE
    from envs.verify import verify_answer

    return MCPEnv(
        {"energy": server}, name="energy", tasks=TASKS_FILE, system_prompt=SYSTEM_PROMPT,
        verifier=verify_answer, isolation="per_session", startup_timeout_s=30, **options,
    )  # fmt: skip


def tool_tasks(env: Any, n: int) -> list[Any]:
    """Tasks whose first turn calls a tool: a server killed before that call fails the rollout."""
    return [task for task in env.tasks("train") if task.expected_calls][:n]


def processes_marked(mark: str) -> list[int]:
    """Pids of the processes whose environment holds MCPGYM_TEST_MARK=`mark` (Linux /proc). The mark
    is inherited by every fork, so this finds a zygote's children even once the zygote is dead and
    they were handed to init (a search by parentage misses those)."""
    needle = f"MCPGYM_TEST_MARK={mark}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        with contextlib.suppress(OSError):
            if needle in (entry / "environ").read_bytes().split(b"\0"):
                found.append(int(entry.name))
    return found


def kill_when_a_rollout_is_mid_turn(out: Path, server: ScriptedServer, kill: Any) -> None:
    """Wait for one finished record, then for a rollout's first policy request (its tool call comes
    next, 0.3 s later), and kill the MCP server then: that rollout is mid-run when it dies.
    Runs in a thread beside the run (`anyio.to_thread`), polling the file and the server's log."""
    deadline = time.monotonic() + 60
    while not (out.exists() and out.read_bytes().count(b"\n") >= 1):
        assert time.monotonic() < deadline, "no rollout finished"
        time.sleep(0.01)

    def in_flight() -> bool:
        # A rollout that sent its first policy request and has not written its record yet. (Waiting
        # for a *new* start after the first record raced: the next rollout could start before the
        # request count was read, and then no later start ever came.)
        started = sum(1 for body in list(server.requests) if not any(m.get("role") == "tool" for m in body["messages"]))
        return started > out.read_bytes().count(b"\n")

    while not in_flight():
        assert time.monotonic() < deadline, "no rollout in flight after the first finished"
        time.sleep(0.005)
    kill()


def assert_killed_run(result: Any, out: Path, ids: set[str]) -> int:
    """Nothing lost or doubled; every failure infra and unscored; no model failure. Returns #infra."""
    records = assert_one_per_id(out, ids)
    failed = [record for record in records if record["error"] is not None]
    assert failed, "the server was killed yet no rollout failed: the kill came too late to test anything"
    for record in failed:
        assert_infra_not_scored(record)
        assert record["error"]["message"].startswith("env: "), record["error"]["message"]
    for record in records:
        if record["error"] is None:
            assert record["verdict"]["success"], record["verdict"]  # never a model failure
    assert result.stats.errors == {"infra": len(failed)}
    return len(failed)


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="finds the server processes through /proc")
@pytest.mark.parametrize("start", ["fork", "spawn"])
async def test_stdio_server_killed_mid_run_is_infra_and_resume_completes(
    scripted_server: ScriptedServer, tmp_path: Path, start: str
) -> None:
    import anyio.to_thread

    from envs import StdioServer

    mark = f"{os.getpid()}-{tmp_path.name}"
    server = StdioServer(
        command=sys.executable, args=["-m", "envs.energy.server"], cwd=str(ROOT), env={"MCPGYM_TEST_MARK": mark}
    )
    env = energy_env_over(server, stdio_start=start, warm_pool=2, server_log=tmp_path / "server.log")
    out = tmp_path / "t.jsonl"
    scripted_server.set_script(delay_s=0.3)

    def kill() -> None:
        # Every energy server process of this test: in fork mode the zygote and all its children.
        # Stop them first, scanning again until every one is stopped (a stopped zygote forks no
        # more, and the env starts no new one for a zygote that has not died), then kill them all:
        # a spare forked between a scan and the kill would otherwise live on and serve the resume.
        stopped: set[int] = set()
        for _ in range(50):
            pids = [pid for pid in processes_marked(mark) if pid not in stopped]
            if not pids:
                break
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGSTOP)
                stopped.add(pid)
            time.sleep(0.02)
        for pid in stopped:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    async with env:
        tasks = tool_tasks(env, 4)
        ids = {f"energy:{task.id}:s0" for task in tasks}
        async with ChatPolicy(PolicyConfig(base_url=scripted_server.base_url, model="scripted")) as policy:
            async with anyio.create_task_group() as tg:
                tg.start_soon(anyio.to_thread.run_sync, kill_when_a_rollout_is_mid_turn, out, scripted_server, kill)
                first = await run_rollouts(env, policy, tasks, out=out, retry=FAST, progress=False, concurrency=3)
            infra = assert_killed_run(first, out, ids)
            scripted_server.set_script()
            second = await run_rollouts(env, policy, tasks, out=out, retry=FAST, progress=False, concurrency=3)
        if start == "fork":  # the same env reconnected: a new zygote served the resumed rollouts
            assert env.handles["energy"].fork_server.starts == 2
    # The resume ran exactly the infra failures, on the same env: no dead warm spare was handed out.
    assert second.retried == infra and second.stats.errors == {}
    assert all(r["error"] is None and r["verdict"]["success"] for r in assert_one_per_id(out, ids))


class EnergyHttpServer:
    """`python -m envs.energy.server --transport http` on a fixed port, startable again after a kill."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}/mcp"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> EnergyHttpServer:
        import httpx

        args = [sys.executable, "-m", "envs.energy.server", "--transport", "http", "--port", str(self.port)]
        self.proc = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, "the energy HTTP server exited during start-up"
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"http://127.0.0.1:{self.port}/health", timeout=1).status_code == 200:
                    return self
            time.sleep(0.05)
        raise AssertionError("the energy HTTP server did not come up")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)


async def test_http_server_killed_mid_run_is_infra_and_resume_completes(
    scripted_server: ScriptedServer, tmp_path: Path
) -> None:
    import anyio.to_thread

    http = EnergyHttpServer(free_port()).start()
    out = tmp_path / "t.jsonl"
    scripted_server.set_script(delay_s=0.3)
    try:
        async with energy_env_over(http.url, warm_pool=0) as env:
            tasks = tool_tasks(env, 4)
            ids = {f"energy:{task.id}:s0" for task in tasks}
            async with ChatPolicy(PolicyConfig(base_url=scripted_server.base_url, model="scripted")) as policy:
                async with anyio.create_task_group() as tg:
                    tg.start_soon(
                        anyio.to_thread.run_sync, kill_when_a_rollout_is_mid_turn, out, scripted_server, http.kill
                    )
                    first = await run_rollouts(env, policy, tasks, out=out, retry=FAST, progress=False, concurrency=3)
                infra = assert_killed_run(first, out, ids)
                http.start()  # the server is back on the same URL
                scripted_server.set_script()
                second = await run_rollouts(env, policy, tasks, out=out, retry=FAST, progress=False, concurrency=3)
    finally:
        http.kill()
    assert second.retried == infra and second.stats.errors == {}
    assert all(r["error"] is None and r["verdict"]["success"] for r in assert_one_per_id(out, ids))
