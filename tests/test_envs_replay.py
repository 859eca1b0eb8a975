"""Record and replay of tool results (`envs.replay`), against a server that counts the calls it
answers (tests/fixtures/_counting_server.py), with the scripted policy server: a recorded run
replays with no live call, a GRPO-shaped second phase makes none, a miss is infra, `auto` fills the
store, keys are canonical and follow the episode's history, the store survives kill -9 and
refuses a planted link; and a tool that requires MCP task augmentation is the env's error, not
the model's."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from common.cli import UsageError
from contracts import EnvInfraError, ExpectedCall, Task, ToolCall
from envs.mcp_env import MCPEnv
from envs.replay import (
    EMPTY_HISTORY,
    ReplaySetting,
    ReplayStore,
    advance,
    entry_key,
    parse_replay_flag,
    replay_from_flag,
)
from rollouts import ChatPolicy, PolicyConfig, run_rollouts
from rollouts.runner import RunResult
from tests.fixtures import _counting_server as counting
from tests.fixtures.policy_server import ScriptedServer

ROOT = Path(__file__).resolve().parents[1]
SERVER_SCRIPT = ROOT / "tests" / "fixtures" / "_counting_server.py"


def bump_task(task_id: str, *steps: int, note: str = "") -> Task:
    """A task whose scripted policy bumps by each of `steps` in turn, then answers the total."""
    calls = [ExpectedCall(name="bump", arguments={"by": by, "note": note}, step=i) for i, by in enumerate(steps)]
    return Task(
        id=task_id,
        question=f"Bump the counter by {', then '.join(map(str, steps))} ({task_id}). What is the total?",
        answer=f"total={sum(steps)}",
        expected_calls=calls,
        kind="multi_step" if len(steps) > 1 else "single",
    )


TASKS = [bump_task("a", 2, 3), bump_task("b", 4), bump_task("c", 1, 1, note="n")]


def counting_env(store: Path, mode: str, **replay: Any) -> MCPEnv:
    setting = ReplaySetting(mode=mode, path=str(store), **replay)  # type: ignore[arg-type]
    return MCPEnv(counting.build, name="counter", isolation="per_process", warm_pool=0, replay=setting)


async def run(env: MCPEnv, server: ScriptedServer, tasks: list[Task], **kwargs: Any) -> RunResult:
    server.add_tasks(tasks)
    async with ChatPolicy(PolicyConfig(base_url=server.base_url, model="scripted")) as policy:
        return await run_rollouts(env, policy, tasks, progress=False, **kwargs)


def tool_texts(result: RunResult) -> list[list[str]]:
    return [[m["content"] for m in t.messages if m["role"] == "tool"] for t in result.trajectories]


@pytest.fixture(autouse=True)
def _fresh_counter() -> None:
    counting.LIVE_CALLS.clear()


async def test_recorded_run_replays_with_no_live_call(tmp_path: Path, scripted_server: ScriptedServer) -> None:
    store = tmp_path / "tools.sqlite"
    async with counting_env(store, "record") as env:
        recorded = await run(env, scripted_server, TASKS, concurrency=3)
    live = len(counting.LIVE_CALLS)
    assert live == 5 and all(t.error is None and t.success for t in recorded.trajectories)
    assert recorded.stats.replay_recorded == 5 and recorded.stats.replay_hits == 0
    assert stat.S_IMODE(store.stat().st_mode) == 0o600

    async with counting_env(store, "replay") as env:
        replayed = await run(env, scripted_server, TASKS, concurrency=3)
    assert len(counting.LIVE_CALLS) == live  # not one call reached a server
    assert tool_texts(replayed) == tool_texts(recorded)
    assert [t.success for t in replayed.trajectories] == [True] * 3
    assert replayed.stats.replay_hits == 5 and replayed.stats.replay_misses == 0
    assert {o.replay for t in replayed.trajectories for o in t.tool_outcomes} == {"hit"}


async def test_a_second_grpo_phase_makes_no_live_call(tmp_path: Path, scripted_server: ScriptedServer) -> None:
    """GRPO-shaped: groups of 2 per task, two rollout phases over the same tasks on one env under
    `replay` (recorded by a first run): the second phase, like the first, calls nothing live."""
    store = tmp_path / "tools.sqlite"
    async with counting_env(store, "record") as env:
        await run(env, scripted_server, TASKS, samples=2, concurrency=4)
    live = len(counting.LIVE_CALLS)
    assert live == 10
    async with counting_env(store, "replay") as env:
        first = await run(env, scripted_server, TASKS, samples=2, concurrency=4)
        second = await run(env, scripted_server, TASKS, samples=2, concurrency=4)
    assert len(counting.LIVE_CALLS) == live
    for phase in (first, second):
        assert phase.stats.replay_hits == 10 and phase.stats.errors == {}
        assert all(t.success for t in phase.trajectories)


async def test_auto_fills_the_store_then_answers_from_it(tmp_path: Path, scripted_server: ScriptedServer) -> None:
    store = tmp_path / "auto.sqlite"
    async with counting_env(store, "auto") as env:
        first = await run(env, scripted_server, TASKS, concurrency=1)
        assert len(counting.LIVE_CALLS) == 5 and first.stats.replay_misses == 5
        second = await run(env, scripted_server, TASKS, samples=2, concurrency=4)
    assert len(counting.LIVE_CALLS) == 5  # every call of the second phase was in the store
    assert second.stats.replay_hits == 10 and second.stats.replay_misses == 0
    assert ReplayStore(store, "replay").count() == 5


async def test_a_replay_miss_is_infra_naming_the_tool(tmp_path: Path, scripted_server: ScriptedServer) -> None:
    store = tmp_path / "tools.sqlite"
    async with counting_env(store, "record") as env:
        await run(env, scripted_server, TASKS[:1])
    live = len(counting.LIVE_CALLS)
    unseen = bump_task("d", 7)
    async with counting_env(store, "replay") as env:
        result = await run(env, scripted_server, [unseen])
    traj = result.trajectories[0]
    assert len(counting.LIVE_CALLS) == live
    assert traj.error is not None and traj.error.kind == "infra", traj.error
    assert "replay miss" in traj.error.message and "'bump'" in traj.error.message
    assert "\n" not in traj.error.message
    assert not any(o.error == "tool_error" for o in traj.tool_outcomes) and traj.reward is None
    assert result.stats.replay_misses == 1 and result.stats.errors == {"infra": 1}


async def step_texts(env: MCPEnv, *calls: tuple[str, Any]) -> list[tuple[str, str | None]]:
    """One episode making `calls` one step each: (what the model read, the store's answer)."""
    out = []
    async with env.episode() as episode:
        await episode.reset(Task(id="t", question="?"))
        for i, (name, arguments) in enumerate(calls):
            result = await episode.step([ToolCall(id=f"c{i}", name=name, arguments=arguments)])
            out.append((result.messages[0]["content"], result.outcomes[0].replay))
    return out


async def test_the_key_is_canonical_and_changes_with_the_arguments(tmp_path: Path) -> None:
    assert entry_key("s", "t", {"a": 1, "b": [1, 2]}, EMPTY_HISTORY) == entry_key(
        "s", "t", {"b": [1, 2], "a": 1}, EMPTY_HISTORY
    )
    assert entry_key("s", "t", {"a": 1}, EMPTY_HISTORY) != entry_key("s", "t", {"a": 2}, EMPTY_HISTORY)
    assert entry_key("s", "t", {"a": 1}, EMPTY_HISTORY) != entry_key("s2", "t", {"a": 1}, EMPTY_HISTORY)
    store = tmp_path / "tools.sqlite"
    async with counting_env(store, "record") as env:
        await step_texts(env, ("bump", '{"by": 2, "note": "x"}'))
    async with counting_env(store, "replay") as env:
        # the same arguments in another order, as the model wrote them: a hit
        assert await step_texts(env, ("bump", '{"note":"x","by":2}')) == [("total=2 note=x", "hit")]
        with pytest.raises(EnvInfraError, match="replay miss: tool 'bump'"):
            await step_texts(env, ("bump", '{"note": "x", "by": 3}'))
    assert len(counting.LIVE_CALLS) == 1


async def test_a_stateful_call_after_other_calls_is_another_entry(tmp_path: Path) -> None:
    store = tmp_path / "tools.sqlite"
    async with counting_env(store, "auto", stateless=["lookup"]) as env:
        assert await step_texts(env, ("bump", {"by": 1}), ("bump", {"by": 2}), ("lookup", {"word": "abc"})) == [
            ("total=1 note=", "miss"),
            ("total=3 note=", "miss"),
            ("abc has 3 letters", "miss"),
        ]
        # bump(2) after bump(4) is not bump(2) after bump(1): called live, its own entry
        assert await step_texts(env, ("bump", {"by": 4}), ("bump", {"by": 2}), ("lookup", {"word": "abc"})) == [
            ("total=4 note=", "miss"),
            ("total=6 note=", "miss"),
            ("abc has 3 letters", "hit"),  # stateless: the same whatever came before
        ]
        live = len(counting.LIVE_CALLS)
        assert live == 5
        assert await step_texts(env, ("bump", {"by": 1}), ("bump", {"by": 2})) == [
            ("total=1 note=", "hit"),
            ("total=3 note=", "hit"),
        ]
    assert len(counting.LIVE_CALLS) == live
    assert advance(EMPTY_HISTORY, "bump", {"by": 1}) != advance(EMPTY_HISTORY, "bump", {"by": 4})


async def test_a_timeout_is_not_recorded(tmp_path: Path) -> None:
    """A timeout says nothing about the call: it is not stored, so a later run calls live again."""
    store = tmp_path / "tools.sqlite"
    setting = ReplaySetting(mode="record", path=str(store))
    env = MCPEnv(counting.build, isolation="per_process", warm_pool=0, call_timeout_s=0.3, replay=setting)
    async with env, env.episode() as episode:
        await episode.reset(Task(id="t", question="?"))
        result = await episode.step([ToolCall(id="c", name="slow", arguments={"seconds": 5})])
    assert result.outcomes[0].error == "timeout" and result.outcomes[0].replay is None
    assert ReplayStore(store, "replay").count() == 0


RECORDER = """
import asyncio, sys
from contracts import Task, ToolCall
from envs.mcp_env import MCPEnv
from envs.replay import ReplaySetting
from tests.fixtures import _counting_server as counting

async def main(path, tag):
    setting = ReplaySetting(mode="record", path=path)
    async with MCPEnv(counting.build, isolation="per_process", warm_pool=0, replay=setting) as env:
        for i in range(100000):
            async with env.episode() as episode:
                await episode.reset(Task(id="t", question="?"))
                note = f"{tag}{i}:" + "x" * 20000  # big entries: a kill lands mid-write
                await episode.step([ToolCall(id="c", name="bump", arguments={"by": i, "note": note})])
            print(i, flush=True)

asyncio.run(main(sys.argv[1], sys.argv[2]))
"""


def test_the_store_survives_kill_9_of_concurrent_recorders(tmp_path: Path) -> None:
    """Two processes record into one store at once; both are killed with SIGKILL mid-run. The store
    opens, passes SQLite's integrity check, and every entry in it is whole."""
    store = tmp_path / "tools.sqlite"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", RECORDER, str(store), tag], cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True
        )
        for tag in ("p", "q")
    ]
    try:
        for proc in procs:  # each has recorded some entries
            assert proc.stdout is not None
            for _ in range(15):
                assert proc.stdout.readline(), "a recorder died"
        time.sleep(0.2)
        for proc in procs:
            proc.send_signal(signal.SIGKILL)
    finally:
        for proc in procs:
            proc.kill()
            proc.wait(30)
    db = sqlite3.connect(store)
    assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    rows = db.execute("SELECT tool, arguments, content, error FROM results").fetchall()
    db.close()
    assert len(rows) >= 30
    for tool, arguments, content, error in rows:
        args = json.loads(arguments)
        assert tool == "bump" and error is None
        assert content == f"total={args['by']} note={args['note']}"  # whole: the answer to these arguments
        assert len(args["note"]) > 20000
    store_reader = ReplayStore(store, "replay")
    assert store_reader.count() == len(rows)


def test_a_link_planted_at_the_store_path_is_not_followed(tmp_path: Path) -> None:
    """Attack: a neighbour plants a link where the store will be, aiming at a file of the user's;
    recording must not open (or create, or write) through it."""
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    store = tmp_path / "tools.sqlite"
    store.symlink_to(victim)
    with pytest.raises(UsageError, match="symbolic link"):
        ReplayStore(store, "record")
    assert victim.read_text() == "precious\n"
    assert not (tmp_path / "tools.sqlite-wal").exists()


def test_replay_needs_a_recorded_store() -> None:
    with pytest.raises(UsageError, match="does not exist"):
        ReplayStore("/nonexistent/tools.sqlite", "replay")


def test_the_flag_parses_mode_and_path(tmp_path: Path) -> None:
    assert parse_replay_flag("auto").mode == "auto" and "path" not in parse_replay_flag("auto").model_fields_set
    setting = parse_replay_flag("replay:rel/tools.sqlite")
    assert setting.mode == "replay" and setting.path == str(Path.cwd() / "rel" / "tools.sqlite")
    for bad in ("bogus", "record:", "Replay:x"):
        with pytest.raises(UsageError, match="--replay"):
            replay_from_flag(bad)
    from train.grpo import config_from_args

    assert config_from_args(["--replay", "auto:x.sqlite"]).replay == "auto:x.sqlite"
    with pytest.raises(UsageError, match="the mode must be one of"):
        config_from_args(["--replay", "bogus"])


def write_config(folder: Path, counter: Path, **replay: Any) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    tasks = folder / "tasks.jsonl"
    tasks.write_text("".join(t.model_dump_json() + "\n" for t in TASKS))
    doc = {
        "mcpServers": {
            "counter": {"command": sys.executable, "args": [str(SERVER_SCRIPT)], "env": {"COUNTER_FILE": str(counter)}}
        },
        "mcpgym": {"tasks": "tasks.jsonl", "isolation": "per_process", "replay": replay},
    }
    path = folder / "counter.json"
    path.write_text(json.dumps(doc))
    return path


def cli(*argv: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, *argv], cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)


def test_config_and_flag_record_then_replay_over_stdio(tmp_path: Path, scripted_server: ScriptedServer) -> None:
    """The config's `mcpgym.replay` (path relative to the config), shown by `envs inspect`, then
    `rollouts.generate --replay replay` in a new process: no call reaches the stdio server."""
    scripted_server.add_tasks(TASKS)
    counter = tmp_path / "calls.txt"
    config = write_config(tmp_path / "cfg", counter, mode="record", path="store/tools.sqlite")
    shown = cli("-m", "envs", "inspect", str(config), "--json")
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["replay"] == {"mode": "record", "path": "store/tools.sqlite", "stateless": []}
    text = cli("-m", "envs", "inspect", str(config))
    assert "replay of tool results: record (store/tools.sqlite)" in text.stdout
    common = ["-m", "rollouts.generate", "--env", str(config), "--base-url", scripted_server.base_url]
    common += ["--model", "scripted", "--no-progress"]
    first = cli(*common, "--out", str(tmp_path / "rec.jsonl"))
    assert first.returncode == 0, first.stderr
    store = tmp_path / "cfg" / "store" / "tools.sqlite"
    assert store.is_file() and len(counter.read_text().splitlines()) == 5
    second = cli(*common, "--replay", "replay", "--out", str(tmp_path / "rep.jsonl"))
    assert second.returncode == 0, second.stderr
    assert len(counter.read_text().splitlines()) == 5
    stats = json.loads((tmp_path / "rep.stats.json").read_text())
    assert stats["replay_hits"] == 5 and stats["replay_misses"] == 0 and stats["success"] == 3
    bad = cli(*common, "--replay", "sometimes", "--out", str(tmp_path / "bad.jsonl"))
    assert bad.returncode == 2 and bad.stderr.strip().count("\n") == 0 and "--replay" in bad.stderr


# -- task-augmented tools -----------------------------------------------------------------------


async def test_a_task_required_tool_is_an_env_capability_error_over_stdio(
    tmp_path: Path, scripted_server: ScriptedServer
) -> None:
    """`research` declares `execution.taskSupport: "required"`; the installed MCP client cannot make
    task-augmented calls, so the call is never sent: the rollout is infra (one line naming the
    tool), never the model's `tool_error`."""
    task = Task(
        id="r",
        question="Research the history of counters (task tool).",
        answer="researched counters",
        expected_calls=[ExpectedCall(name="research", arguments={"query": "counters"})],
    )
    counter = tmp_path / "calls.txt"
    config = write_config(tmp_path, counter)

    async with MCPEnv(config, warm_pool=0) as env:
        assert env._tools["research"].task_required and not env._tools["bump"].task_required
        result = await run(env, scripted_server, [task])
    traj = result.trajectories[0]
    assert traj.error is not None and traj.error.kind == "infra", traj.error
    assert "tool 'research'" in traj.error.message and "task augmentation" in traj.error.message
    assert "\n" not in traj.error.message
    assert not any(o.error == "tool_error" for o in traj.tool_outcomes)
    assert not counter.exists()  # the server never saw the call
