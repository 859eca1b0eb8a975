"""Rewards of one's own: a verifier named in the MCP config, reward functions and registered names
as judges, the env's default judge, one reward record (`reward` and `reward_parts`), and a BFCL
multi-turn group with a reward spread under the env's verdict.

Real parts throughout: a real stdio MCP server started from a config file, verifiers and reward
functions as files on disk, `rollouts.rollout` with scripted policies (not models), the CLIs as
subprocesses, the BFCL multi-turn env and its leaderboard checker."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

import envs
from contracts import EnvConfigError, PolicyTurn, ToolCall, Trajectory, Verdict
from judges import JUDGES, build_judge, default_judge_of, parse_spec, register, signal_groups
from judges.art_trajectory import to_art_trajectory
from judges.base import Judge
from judges.functions import reward_of
from judges.metrics import load_trajectories
from judges.registry import names
from rollouts.jsonl import read_jsonl, write_jsonl
from rollouts.rollout import rollout
from tests.fixtures.envs_fixtures import SERVER_SCRIPT
from tests.fixtures.judge_data import NO_TOOL, PRICE, infra_failure, make_trajectory

ROOT = Path(__file__).resolve().parents[1]
RIGHT = ("get_price", {"hub": "Henry Hub", "date": "2025-03-04"})

# The verifiers of one's own, as a user writes them in a file beside the config.
CHECKS = """
from contracts import Verdict


def _seen(task, answer, calls):
    return any(call.name == "add" for call in calls), str(task.answer) in answer


def passed(task, answer, calls):
    used, right = _seen(task, answer, calls)
    return used and right


def half_each(task, answer, calls):
    used, right = _seen(task, answer, calls)
    return 0.5 * used + 0.5 * right


def explained(task, answer, calls):
    used, right = _seen(task, answer, calls)
    score = 1.0 if used and right else 0.25 if used else 0.0
    return Verdict(success=used and right, score=score, reason=f"own: used add {used}, right {right}")


async def later(task, answer, calls):
    return str(task.answer) in answer


def per_turn(task, answer, calls, *, turns=None):
    return len(turns or []) / 2
"""


class Scripted:
    """Scripted (not a model): each user turn, `calls` in one step (if any), then `answer`."""

    model = "scripted"

    def __init__(self, calls: list[tuple[str, dict[str, Any]]], answer: str) -> None:
        self.calls = calls
        self.answer = answer

    async def act(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]]) -> PolicyTurn:
        last_user = max(i for i, m in enumerate(messages) if m["role"] == "user")
        stepped = any(m["role"] == "assistant" for m in messages[last_user:])
        if stepped or not self.calls:
            return PolicyTurn(message={"role": "assistant", "content": self.answer}, content=self.answer)
        calls = [
            ToolCall(id=f"c{len(messages)}-{i}", name=name, arguments=json.dumps(args))
            for i, (name, args) in enumerate(self.calls)
        ]
        message = {"role": "assistant", "content": "", "tool_calls": [c.to_openai() for c in calls]}
        return PolicyTurn(message=message, content="", tool_calls=calls)


RIGHT_ADD = Scripted([("add", {"a": 2, "b": 3})], "2 + 3 = 5")
WRONG_ADD = Scripted([("add", {"a": 2, "b": 4})], "It is 6")
GUESS = Scripted([], "7, I think")


def own_env(tmp_path: Path, verifier: str | None, **mcpgym: Any) -> Path:
    """A folder with the test server, tasks without expected calls, verifiers, and its mcp.json."""
    folder = tmp_path / "own"
    folder.mkdir(exist_ok=True)
    shutil.copy(SERVER_SCRIPT, folder / "server.py")
    tasks = [
        {"id": "sum", "question": "What is 2 + 3?", "answer": 5, "split": "train"},
        {
            "id": "chat",
            "question": "What is 2 + 3?",
            "answer": 5,
            "split": "test",
            "follow_ups": [{"messages": [{"role": "user", "content": "And again?"}]}],
        },
    ]
    (folder / "tasks.jsonl").write_text("".join(json.dumps(t) + "\n" for t in tasks))
    (folder / "checks.py").write_text(CHECKS)
    section = {"tasks": "tasks.jsonl", "isolation": "shared", **mcpgym}
    if verifier is not None:
        section["verifier"] = verifier
    config = {"mcpServers": {"calc": {"command": "python", "args": ["server.py"]}}, "mcpgym": section}
    path = folder / f"mcp-{uuid.uuid4().hex[:6]}.json"
    path.write_text(json.dumps(config))
    return path


def run(*args: str, env: dict[str, str] | None = None, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=240,
        env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
    )


# -- a verifier named in the config --------------------------------------------------------------


@pytest.mark.parametrize(
    ("verifier", "expected"),
    [
        # right answer with the tool / the tool but a wrong answer / a guess without the tool
        ("checks.py:passed", [(True, 1.0), (False, 0.0), (False, 0.0)]),
        ("checks.py:half_each", [(True, 1.0), (False, 0.5), (False, 0.0)]),
        ("checks.py:explained", [(True, 1.0), (False, 0.25), (False, 0.0)]),
        ("checks.py:later", [(True, 1.0), (False, 0.0), (False, 0.0)]),  # async def
    ],
)
async def test_a_verifier_file_beside_the_config_gives_the_verdict(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, verifier: str, expected: list[tuple[bool, float]]
) -> None:
    config = own_env(tmp_path, verifier)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # the file is found beside the config, not in the working folder
    env = envs.load(config)
    assert env.verifier_ref == verifier
    assert env.default_judge == "env"  # its tasks list no expected calls
    async with env:
        task = env.tasks("train")[0]
        trajs = [
            await rollout(env, policy, task, sample=i, group="g")
            for i, policy in enumerate((RIGHT_ADD, WRONG_ADD, GUESS))
        ]
    assert [t.error for t in trajs] == [None, None, None]
    assert [(t.verdict.success, t.verdict.score) for t in trajs if t.verdict] == expected
    assert all(t.reward_parts == {"env": t.reward} for t in trajs)  # the rollout's reward is the verdict's
    if verifier.endswith("explained"):
        assert trajs[1].verdict is not None and trajs[1].verdict.reason == "own: used add True, right False"
    scored = await build_judge(default_judge_of(env)).score(trajs)
    assert [t.reward for t in scored] == [score for _, score in expected]  # `env`: the verdict, unchanged


async def test_a_verifier_module_beside_the_config_and_one_that_takes_turns(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    module = f"own_checks_{uuid.uuid4().hex[:8]}"  # not on the import path: found in the config's folder
    config = own_env(tmp_path, f"{module}:per_turn", default_judge="rules")
    (config.parent / f"{module}.py").write_text(CHECKS)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))  # the config's folder joins it: undone after the test
    env = envs.load(config)
    assert env.default_judge == "rules"  # named in the config
    async with env:
        traj = await rollout(env, RIGHT_ADD, env.tasks("test")[0])  # two user turns
    assert traj.verdict == Verdict(success=True, score=1.0, reason="verifier: score 1")
    assert traj.metrics["user_turns"] == 2


@pytest.mark.parametrize(
    ("verifier", "message"),
    [
        ("missing.py:passed", "verifier 'missing.py:passed': no such file"),
        ("checks.py:nope", "verifier 'checks.py:nope': "),
        ("no_such_module_xyz:check", "cannot import 'no_such_module_xyz'"),
        ("checks.py:_seen.__doc__", "is a NoneType, not a function"),
        ("checks.py", "expected 'package.module:function' or 'path/to/file.py:function'"),
        ("broken.py:check", "broken.py failed to load: ZeroDivisionError"),
        ("checks.py:Verdict", "must take (task, answer, calls)"),  # a class that takes other arguments
    ],
)
def test_a_bad_verifier_reference_is_one_line(tmp_path: Path, verifier: str, message: str | None) -> None:
    config = own_env(tmp_path, verifier)
    (config.parent / "broken.py").write_text("x = 1 / 0\n")
    with pytest.raises(EnvConfigError) as caught:
        envs.load(config)
    text = str(caught.value)
    assert "\n" not in text and text.startswith("verifier '")
    if message is not None:
        assert message in text, text


def test_a_bad_verifier_reference_from_the_cli_is_one_line_and_exit_2(tmp_path: Path) -> None:
    config = own_env(tmp_path, "checks.py:no_such_function")
    result = run("envs", "inspect", str(config))
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "checks.py:no_such_function" in lines[0] and "has no attribute" in lines[0]


async def test_a_verifier_that_returns_nonsense_makes_an_infra_failure_not_a_zero(tmp_path: Path) -> None:
    config = own_env(tmp_path, "checks.py:bad")
    (config.parent / "checks.py").write_text("def bad(task, answer, calls):\n    return 'yes'\n")
    env = envs.load(config)
    async with env:
        traj = await rollout(env, RIGHT_ADD, env.tasks("train")[0])
    assert traj.is_infra_failure and traj.reward is None and traj.error is not None
    assert "verifier returned a str" in traj.error.message


# -- judges by name, reference and registration ----------------------------------------------------


REWARDS = """
def brevity(traj):
    return {"correct": float(traj.success), "short": 1.0 if len(traj.answer or "") < 10 else 0.0}


def with_reward(traj):
    return {"reward": 0.3, "seen": 1.0}


def plain(traj):
    return 0.75
"""


@pytest.fixture
def reward_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A package of reward functions in tmp_path, on the import path; its name."""
    name = f"mypkg_{uuid.uuid4().hex[:8]}"
    (tmp_path / name).mkdir()
    (tmp_path / name / "__init__.py").write_text("")
    (tmp_path / name / "rewards.py").write_text(REWARDS)
    monkeypatch.syspath_prepend(str(tmp_path))
    return name


def answered(task: Any, calls: list[list[Any]], answer: str, **options: Any) -> Trajectory:
    """A hand-built record (tests.fixtures.judge_data) with its final answer, as a rollout writes it."""
    return make_trajectory(task, calls, answer=answer, **options).model_copy(update={"answer": answer})


def test_dict_rewards_reward_key_or_mean_and_bad_values() -> None:
    assert reward_of(0.4) == (0.4, {})
    assert reward_of({"reward": 0.3, "seen": 1.0}) == (0.3, {"seen": 1.0})
    assert reward_of({"a": 1.0, "b": 0.0}) == (0.5, {"a": 1.0, "b": 0.0})
    for bad in ({}, "0.5", float("nan"), {"a": None}, None):
        with pytest.raises(ValueError, match="returned"):
            reward_of(bad)


async def test_reward_functions_by_reference_record_their_components(reward_package: str, tmp_path: Path) -> None:
    group = [
        answered(PRICE, [[RIGHT]], "4.12", sample=0, group="g"),
        answered(PRICE, [[RIGHT]], "it was 4.50 dollars", success=False, score=0.2, sample=1, group="g"),
        infra_failure(PRICE, sample=2, group="g"),
    ]
    brevity = f"{reward_package}.rewards:brevity"
    assert parse_spec(f"{brevity}:0.4+rules") == [(brevity, 0.4), ("rules", pytest.approx(0.6))]
    scored = await build_judge(brevity).score(group)
    assert [t.reward for t in scored] == [1.0, 0.0, None]
    assert scored[0].reward_parts == {"env": 1.0, f"{brevity}/correct": 1.0, f"{brevity}/short": 1.0, brevity: 1.0}
    assert scored[1].reward_parts == {"env": 0.2, f"{brevity}/correct": 0.0, f"{brevity}/short": 0.0, brevity: 0.0}
    assert scored[2].reward_parts == {} and scored[2].metrics["masked"] == "infra"
    # A dict with a "reward" key: that is the reward; a file reference works as a module one does.
    file_ref = f"{tmp_path / reward_package / 'rewards.py'}:with_reward"
    (keyed,) = await build_judge(file_ref).score(group[:1])
    assert keyed.reward == 0.3 and keyed.reward_parts[f"{file_ref}/seen"] == 1.0
    # Composed with a built-in: the weighted sum, every part and component in the record.
    (mixed, _, _) = await build_judge(f"{brevity}:0.5+rules:0.5").score(group)
    assert mixed.reward == pytest.approx(0.5 * 1.0 + 0.5 * 1.0)
    assert set(mixed.reward_parts) == {"env", "rules", brevity, f"{brevity}/correct", f"{brevity}/short"}
    assert not any(key.startswith("reward_parts/") or key == "independent_reward" for key in mixed.metrics)


async def test_a_reward_function_that_fails_masks_the_trajectory_never_zero(reward_package: str) -> None:
    register("raises", lambda traj: 1 / 0)
    register("words", lambda traj: "high")
    try:
        for name, message in (("raises", "ZeroDivisionError"), ("words", "returned a str")):
            (failed,) = await build_judge(name).score([make_trajectory(PRICE, [[RIGHT]])])
            assert failed.is_infra_failure and failed.reward is None and failed.reward_parts == {}
            assert message in failed.metrics["judge_error"]
    finally:
        JUDGES.pop("raises")
        JUDGES.pop("words")


async def test_a_registry_addition_is_one_line_and_env_is_the_verdict() -> None:
    def shortest(traj: Trajectory) -> float:
        return 1.0 / (1 + len(traj.answer or ""))

    class Constant(Judge):
        async def _score(self, live: list[Trajectory]) -> None:
            for traj in live:
                traj.reward = 0.5

    register("shortest", shortest)  # the one line
    register("constant", Constant)
    try:
        with pytest.raises(ValueError, match="already registered"):
            register("shortest", shortest)
        assert "shortest" in names()
        traj = answered(NO_TOOL, [], "abc", success=False, score=0.4)
        (short,) = await build_judge("shortest").score([traj])
        assert short.reward == 0.25 and short.reward_parts == {"env": 0.4, "shortest": 0.25}
        (const,) = await build_judge("constant").score([traj])
        assert const.reward == 0.5 and const.reward_parts == {"env": 0.4, "constant": 0.5}
        (env_only,) = await build_judge("env").score([traj])
        assert env_only.reward == 0.4 and env_only.reward_parts == {"env": 0.4}
        (rules_env,) = await build_judge("env:0.5+rules:0.5").score([traj])
        assert rules_env.reward == pytest.approx(0.5 * 0.4 + 0.5 * rules_env.reward_parts["rules"])
    finally:
        JUDGES.pop("shortest")
        JUDGES.pop("constant")
    with pytest.raises(ValueError, match="unknown judge 'shortest'"):
        parse_spec("shortest")


async def test_an_entry_point_of_mcpgym_judges_resolves(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    name = f"ep_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text("def loud(traj):\n    return {'reward': 0.9, 'caps': 1.0}\n")
    info = tmp_path / f"{name}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[mcpgym.judges]\n{name}_loud = {name}:loud\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert parse_spec(f"{name}_loud:0.5+rules") == [(f"{name}_loud", 0.5), ("rules", 0.5)]
    (scored,) = await build_judge(f"{name}_loud").score([make_trajectory(PRICE, [[RIGHT]])])
    assert scored.reward == 0.9 and scored.reward_parts[f"{name}_loud/caps"] == 1.0


def test_score_cli_takes_env_and_a_reward_function_on_pythonpath(reward_package: str, tmp_path: Path) -> None:
    trajs = [
        answered(PRICE, [[RIGHT]], "4.12", sample=0),
        answered(PRICE, [[("get_storage", {"region": "E"})]], "a long wrong guess", success=False, score=0.3, sample=1),
    ]
    src = tmp_path / "traj.jsonl"
    write_jsonl(src, [t.model_dump(mode="json") for t in trajs])
    path = {"PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)])}
    brevity = f"{reward_package}.rewards:brevity"
    out = tmp_path / "fn.jsonl"
    result = run("judges.score", "--judge", brevity, str(src), "--out", str(out), "--no-cache", env=path)
    assert result.returncode == 0, result.stderr
    records = {r["id"]: r for r in read_jsonl(out)}
    right, wrong = records["test:price:s0"], records["test:price:s1"]
    assert right["reward"] == 1.0 and wrong["reward"] == 0.0
    assert wrong["reward_parts"] == {"env": 0.3, f"{brevity}/correct": 0.0, f"{brevity}/short": 0.0, brevity: 0.0}
    assert f"reward/{brevity}/correct" in result.stdout  # the table shows each part's mean
    out_env = tmp_path / "env.jsonl"
    result = run("judges.score", "--judge", "env", str(src), "--out", str(out_env), "--no-cache")
    assert result.returncode == 0, result.stderr
    assert [r["reward"] for r in read_jsonl(out_env)] == [1.0, 0.3]
    # A reference that does not resolve: one line, exit 2.
    bad = run(
        "judges.score",
        "--judge",
        f"{reward_package}.rewards:nope",
        str(src),
        "--out",
        str(tmp_path / "x.jsonl"),
        env=path,
    )
    lines = bad.stderr.strip().splitlines()
    assert bad.returncode == 2 and len(lines) == 1 and "has no attribute 'nope'" in lines[0], bad.stderr


def test_the_clis_default_to_the_envs_judge_and_say_so(tmp_path: Path) -> None:
    for module in ("judges.score", "train.eval", "train.grpo"):
        result = run(module, "--help")
        assert result.returncode == 0, result.stderr
        text = " ".join(result.stdout.split())
        assert "default: the env's own judge: rules for energy, env for bfcl-multi-turn" in text, module
    # Records of an env whose default is `env`: judges.score picks it without --judge, and says so.
    traj = make_trajectory(PRICE, [[RIGHT]], answer="4.12", success=False, score=0.5)
    src = tmp_path / "bfcl.jsonl"
    write_jsonl(src, [traj.model_copy(update={"env": "bfcl-multi-turn"}).model_dump(mode="json")])
    result = run("judges.score", str(src), "--out", str(tmp_path / "scored.jsonl"), "--no-cache")
    assert result.returncode == 0, result.stderr
    assert "judge env (the default of env bfcl-multi-turn)" in result.stdout
    assert read_jsonl(tmp_path / "scored.jsonl")[0]["reward"] == 0.5  # the verdict, not a rules blend
    # train.grpo checks a reference before anything starts.
    bad = run("train.grpo", "--judge", "no_such_pkg_xyz.rewards:fn")
    lines = bad.stderr.strip().splitlines()
    assert bad.returncode == 2 and len(lines) == 1 and "--judge" in lines[0] and "no_such_pkg_xyz" in lines[0]


def test_envs_name_their_default_judge_and_grpo_takes_it() -> None:
    from train.grpo_config import GRPOConfig
    from train.grpo_loop import make_judge

    energy = envs.load("energy")
    assert default_judge_of(energy) == "rules"
    assert default_judge_of(object()) == "rules"  # an env that names none
    assert GRPOConfig().judge is None  # `--judge` not given: the env's default
    assert make_judge(GRPOConfig(), energy).name == "rules"
    assert make_judge(GRPOConfig(judge="env"), energy).name == "env"
    pytest.importorskip("bfcl_eval")
    assert make_judge(GRPOConfig(env="bfcl-multi-turn"), envs.load("bfcl-multi-turn")).name == "env"


# -- one reward record ---------------------------------------------------------------------------


def test_old_records_with_independent_reward_still_load(tmp_path: Path) -> None:
    old = make_trajectory(PRICE, [[RIGHT]]).model_dump(mode="json")
    old.pop("reward_parts")
    old["reward"] = 0.76
    old["metrics"] |= {
        "independent_reward": 1.0,
        "reward_parts/ruler": 0.9,
        "reward_parts/rules": 0.1,
        "ruler_score": 0.9,
    }
    path = tmp_path / "old.jsonl"
    write_jsonl(path, [old])
    (traj,) = load_trajectories(path)
    assert traj.reward == 0.76
    assert traj.reward_parts == {"env": 1.0, "ruler": 0.9, "rules": 0.1}
    assert "independent_reward" not in traj.metrics and traj.metrics["ruler_score"] == 0.9
    again = Trajectory.model_validate_json(traj.model_dump_json())
    assert again == traj  # a new record reads back as written
    art = to_art_trajectory(traj)
    assert art.reward == 0.76 and art.metrics["reward_parts/ruler"] == 0.9  # ART logs the parts


# -- BFCL multi-turn: the env's verdict gives a group a spread --------------------------------------


class BfclScripted:
    """Scripted (not a model): each user turn, the ground truth's calls (or `pwd()` when `wrong`)."""

    model = "scripted-bfcl"

    def __init__(self, ground_truth: list[list[str]], *, wrong: bool) -> None:
        self.turns = ground_truth
        self.wrong = wrong

    async def act(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]]) -> PolicyTurn:
        from envs.bfcl_mt.calls import to_tool_call

        user_turn = sum(1 for m in messages if m["role"] == "user") - 1
        last_user = max(i for i, m in enumerate(messages) if m["role"] == "user")
        texts = ["pwd()"] if self.wrong else self.turns[user_turn]
        if any(m["role"] == "assistant" for m in messages[last_user:]) or not texts:
            return PolicyTurn(message={"role": "assistant", "content": "Done."}, content="Done.")
        calls = [to_tool_call(text, f"call-{len(messages)}-{i}") for i, text in enumerate(texts)]
        message = {"role": "assistant", "content": "", "tool_calls": [c.to_openai() for c in calls]}
        return PolicyTurn(message=message, content="", tool_calls=calls)


async def test_a_bfcl_multi_turn_group_has_a_spread_under_the_envs_default_judge() -> None:
    pytest.importorskip("bfcl_eval")
    from envs.bfcl_mt import LEADERBOARD_MAX_TURNS, data

    entry_id = "multi_turn_base_3"
    ground_truth = data.entry(entry_id)["ground_truth"]
    env = envs.load("bfcl-multi-turn", categories="multi_turn_base")
    assert default_judge_of(env) == "env"
    async with env:
        task = next(t for t in env.tasks("train") if t.id == entry_id)
        assert not task.expected_calls
        group = [
            await rollout(
                env, BfclScripted(ground_truth, wrong=wrong), task, sample=i, group="g", max_turns=LEADERBOARD_MAX_TURNS
            )
            for i, wrong in enumerate((False, True, False, True))
        ]
    scored = await build_judge(default_judge_of(env)).score(group)
    assert [t.success for t in scored] == [True, False, True, False]
    assert [t.reward for t in scored] == [1.0, 0.0, 1.0, 0.0]
    assert all(t.reward_parts == {"env": t.reward} for t in scored)
    kept, counts = signal_groups(scored, "reward", min_spread=0.05)  # train.grpo's default least spread
    assert [len(members) for members in kept] == [4] and counts["groups_no_signal"] == 0
