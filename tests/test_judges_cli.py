"""`python -m judges.score` and `python -m judges.metrics` as a user runs them (real subprocesses)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from rollouts.jsonl import read_jsonl, write_jsonl
from tests.fixtures.judge_data import NO_TOOL, PARALLEL, PRICE, infra_failure, make_trajectory
from tests.fixtures.judge_server import JudgeServer

ROOT = Path(__file__).resolve().parents[1]
RIGHT = ("get_price", {"hub": "Henry Hub", "date": "2025-03-04"})


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
        env={**os.environ, **(env or {})},
    )


@pytest.fixture
def trajectory_file(tmp_path: Path) -> Path:
    trajs = [
        make_trajectory(PRICE, [[RIGHT]], answer="4.12 GOOD", sample=0),
        make_trajectory(PRICE, [[("get_storage", {"region": "E"})]], answer="BAD", success=False, sample=1),
        infra_failure(PRICE, sample=2),
        make_trajectory(NO_TOOL, [], answer="million British thermal units GOOD"),
        make_trajectory(PARALLEL, [[("get_consumption", {"state": "IL", "month": "2024-07"})]], success=False),
    ]
    path = tmp_path / "traj.jsonl"
    write_jsonl(path, [t.model_dump(mode="json") for t in trajs])
    return path


def test_metrics_cli_prints_a_table_and_writes_json(trajectory_file: Path) -> None:
    result = run("judges.metrics", str(trajectory_file))
    assert result.returncode == 0, result.stderr
    assert "plan_success_rate" in result.stdout and "param_f1" in result.stdout
    values = json.loads(trajectory_file.with_suffix(".metrics.json").read_text())
    assert values["n"] == 5 and values["n_infra"] == 1
    assert values["plan_success_rate"] == pytest.approx(2 / 4)


def test_score_cli_rules_and_resume(trajectory_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "scored.jsonl"
    result = run("judges.score", "--judge", "rules", str(trajectory_file), "--out", str(out), "--no-cache")
    assert result.returncode == 0, result.stderr
    assert "reward_mean" in result.stdout and "scored 5 of 5" in result.stdout
    records = {r["id"]: r for r in read_jsonl(out)}
    assert len(records) == 5
    assert records["test:price:s0"]["reward"] == pytest.approx(1.0)
    assert records["test:price:s1"]["reward"] == pytest.approx(0.0)  # wrong tool: no progress
    assert records["test:price:s2"]["reward"] is None and records["test:price:s2"]["metrics"]["masked"] == "infra"
    assert records["test:price:s0"]["metrics"]["rules/progress"] == 1.0
    again = run("judges.score", "--judge", "rules", str(trajectory_file), "--out", str(out), "--no-cache")
    assert again.returncode == 0 and "scored 0 of 5" in again.stdout
    assert len(read_jsonl(out)) == 5
    assert json.loads(out.with_suffix(".metrics.json").read_text())["judge/groups"] == 0.0  # nothing rescored


def test_score_cli_bad_input_is_one_line_and_exit_2(trajectory_file: Path, tmp_path: Path) -> None:
    for args in (
        ["--judge", "rulez", str(trajectory_file), "--out", str(tmp_path / "o.jsonl")],
        ["--judge", "ruler", str(trajectory_file), "--out", str(tmp_path / "o.jsonl")],  # no --judge-model
        ["--judge", "rules", str(tmp_path / "missing.jsonl"), "--out", str(tmp_path / "o.jsonl")],
        ["--judge", "rules", str(trajectory_file), "--out", str(trajectory_file)],
    ):
        result = run("judges.score", *args)
        assert result.returncode == 2, (args, result.stderr)
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    rubric = tmp_path / "rubric.yaml"
    rubric.write_text("weights: {nonsense: 1}\n")
    result = run("judges.score", "--rubric", str(rubric), str(trajectory_file), "--out", str(tmp_path / "o.jsonl"))
    assert result.returncode == 2 and "nonsense" in result.stderr


def test_score_cli_ruler_plus_rules_against_a_judge_server(
    trajectory_file: Path, tmp_path: Path, judge_server: JudgeServer
) -> None:
    judge_server.set_script(score_by={"GOOD": 0.9, "BAD": 0.1})
    out = tmp_path / "scored.jsonl"
    args = [
        "judges.score",
        "--judge",
        "ruler:0.5+rules:0.5",
        "--judge-model",
        "Qwen/Qwen3-8B",
        "--judge-base-url",
        judge_server.base_url,
        "--cache-dir",
        str(tmp_path / "cache"),
        str(trajectory_file),
        "--out",
        str(out),
    ]
    secret = "sk-test-judge-secret"
    result = run(*args, env={"JUDGE_API_KEY": secret})
    assert result.returncode == 0, result.stderr
    records = {r["id"]: r for r in read_jsonl(out)}
    assert records["test:price:s0"]["reward"] == pytest.approx(0.5 * 0.9 + 0.5 * 1.0)
    assert records["test:price:s1"]["reward"] == pytest.approx(0.5 * 0.1 + 0.5 * 0.0)
    # Single-member groups cannot be compared: dropped, not scored 0.
    assert records["test:chat:s0"]["reward"] is None and "group_dropped" in records["test:chat:s0"]["metrics"]
    assert len(judge_server.requests) == 1
    assert judge_server.auth_headers == [f"Bearer {secret}"]  # the key came from the environment ...
    assert secret not in out.read_text() and secret not in result.stdout + result.stderr  # ... and went nowhere else
    assert "judge/ruler/judge_calls" in result.stdout and "judge/groups_dropped" in result.stdout
