"""Fault injection for the other resumable writers: `python -m train.bfcl` and `python -m train.eval`.

The same three checks as tests/test_faults.py: nothing lost (every entry or task has a record),
nothing doubled (one record per id, every line whole), every failure named (an infra failure is
typed infra and scored neither right nor wrong). Real parts: the CLIs as subprocesses, a dead
port for the first run, the scripted policy servers over real HTTP for the resume; `--keep-infra`
keeps the failures; one writer per file.
"""

from __future__ import annotations

import json
import os
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from judges.bfcl import load_category
from rollouts.lock import lock_path, output_lock
from tests.fixtures.bfcl_policy import BfclScriptedServer
from tests.fixtures.common import free_port
from tests.fixtures.policy_server import ScriptedServer
from tests.test_faults import assert_infra_not_scored, assert_one_per_id, run

CATEGORIES = ["simple_python", "irrelevance"]


def dead_url() -> str:
    return f"http://127.0.0.1:{free_port()}/v1"  # nothing listens: connection refused


def one_error_line(stderr: str, prefix: str) -> str:
    lines = [line for line in stderr.splitlines() if line.startswith(prefix)]
    assert len(lines) == 1, stderr
    return lines[0]


# -- BFCL -----------------------------------------------------------------------------------


def bfcl(url: str, out: Path, limit: int, *more: str) -> list[str]:
    return [
        sys.executable, "-m", "train.bfcl", "--categories", ",".join(CATEGORIES), "--limit", str(limit),
        "--base-url", url, "--model", "scripted", "--out", str(out), "--retries", "0", "--no-progress", *more,
    ]  # fmt: skip


def bfcl_ids(limit: int) -> set[str]:
    return {entry.id for category in CATEGORIES for entry in load_category(category, limit)}


def asked_ids(server: BfclScriptedServer) -> Counter[str]:
    """The entry each request the scripted server got was for (by its question), counted."""
    by_question = {key[0]: entry.id for key, entry in server.entries.items()}
    questions = (next(m["content"] for m in r["messages"] if m["role"] == "user") for r in server.requests)
    return Counter(by_question[question.strip()] for question in questions)


def test_bfcl_resume_runs_infra_failures_again_and_keep_infra_keeps_them(tmp_path: Path) -> None:
    out = tmp_path / "bfcl.jsonl"
    first, later = bfcl_ids(2), bfcl_ids(4) - bfcl_ids(2)
    with BfclScriptedServer([e for c in CATEGORIES for e in load_category(c, 4)]) as server:
        done = run(bfcl(server.base_url, out, 2))  # the first 2 of each category, answered
        assert done.returncode == 0, done.stderr
        answered = {r["id"]: r for r in assert_one_per_id(out, first)}

        down = run(bfcl(dead_url(), out, 4))  # 2 more of each, the server down: every one infra
        assert down.returncode == 1, down.stderr
        error = one_error_line(down.stderr, "error:")
        assert f"all {len(later)} entries failed on infrastructure" in error and "APIConnectionError" in error
        records = {r["id"]: r for r in assert_one_per_id(out, first | later)}
        for ident in later:
            assert records[ident]["error"]["kind"] == "infra" and records[ident]["error_type"] == "infra"
            assert records[ident]["reply"] is None and not records[ident]["valid"]
        assert {i: records[i] for i in first} == answered  # resume skipped the done ones untouched
        # An infra failure has no verdict: the summary counts only the answered entries.
        summary = json.loads(out.with_suffix(".summary.json").read_text())
        assert summary["infra_failures"] == len(later)
        assert {c: s["total"] for c, s in summary["categories"].items()} == {c: 2 for c in CATEGORIES}

        server.requests.clear()
        kept = run(bfcl(server.base_url, out, 4, "--keep-infra"))
        assert kept.returncode == 0, kept.stderr  # nothing was asked: nothing failed
        assert server.requests == []
        assert f"{len(later)} infra failures kept" in kept.stdout
        assert {r["id"]: r for r in assert_one_per_id(out, first | later)} == records

        again = run(bfcl(server.base_url, out, 4))
        assert again.returncode == 0, again.stderr
        assert asked_ids(server) == Counter(later)  # exactly the infra failures, once each
    retried = f"{len(later)} new ({len(later)} of them retried after infra failures) + {len(first)} resumed"
    assert retried in again.stderr
    records = {r["id"]: r for r in assert_one_per_id(out, first | later)}
    assert all(not isinstance(r["error"], dict) and r["error_type"] != "infra" for r in records.values())
    assert {i: records[i] for i in first} == answered
    summary = json.loads(out.with_suffix(".summary.json").read_text())
    assert summary["retried"] == len(later) and summary["infra_failures"] == 0
    assert {c: s["total"] for c, s in summary["categories"].items()} == {c: 4 for c in CATEGORIES}
    assert not lock_path(out).exists()


def test_bfcl_refuses_an_output_another_process_writes(tmp_path: Path) -> None:
    out = tmp_path / "bfcl.jsonl"
    with output_lock(out):
        refused = run(bfcl(dead_url(), out, 1))
    assert refused.returncode == 2, refused.stderr
    assert refused.stderr.strip().splitlines() == [refused.stderr.strip()]
    assert f"pid {os.getpid()}" in refused.stderr and "being written" in refused.stderr


# -- train.eval ------------------------------------------------------------------------------


def evaluate(url: str, out: Path, *more: str) -> list[str]:
    return [
        sys.executable, "-m", "train.eval", "--env", "energy", "--split", "train", "--limit", "3",
        "--base-url", url, "--model", "scripted", "--report", str(out), "--retries", "0", *more,
    ]  # fmt: skip


def report_of(out: Path) -> dict[str, Any]:
    return json.loads(out.read_text())["reports"][0]


def test_eval_resume_runs_infra_failures_again_and_keep_infra_keeps_them(
    scripted_server: ScriptedServer, tmp_path: Path
) -> None:
    out = tmp_path / "eval.json"
    trajectories = tmp_path / "eval.0.trajectories.jsonl"
    down = run(evaluate(dead_url(), out), timeout=120)
    assert down.returncode == 1, down.stderr
    assert "all 3 tasks evaluated failed on infrastructure" in one_error_line(down.stderr, "error:")
    records = lines = [json.loads(line) for line in trajectories.read_text().splitlines()]
    ids = {record["id"] for record in lines}
    assert len(ids) == 3
    for record in assert_one_per_id(trajectories, ids):
        assert_infra_not_scored(record)
    assert report_of(out)["n_infra"] == 3 and report_of(out)["success_rate"] == 0.0

    kept = run(evaluate(scripted_server.base_url, out, "--keep-infra"), timeout=120)
    assert kept.returncode == 0, kept.stderr  # this run did nothing: nothing of it failed
    assert scripted_server.requests == []
    assert "0 new + 3 resumed" in kept.stderr
    assert assert_one_per_id(trajectories, ids) == records
    assert report_of(out)["n_infra"] == 3  # kept, and still not scored

    with output_lock(trajectories):  # one writer per trajectory file
        refused = run(evaluate(scripted_server.base_url, out), timeout=120)
    assert refused.returncode == 2 and f"pid {os.getpid()}" in refused.stderr, refused.stderr
    assert scripted_server.requests == []

    again = run(evaluate(scripted_server.base_url, out), timeout=120)
    assert again.returncode == 0, again.stderr
    assert "3 new (3 of them retried after infra failures) + 0 resumed" in again.stderr
    records = assert_one_per_id(trajectories, ids)
    assert all(record["error"] is None and record["verdict"]["success"] for record in records)
    report = report_of(out)
    assert report["n_infra"] == 0 and report["retried"] == 3 and report["success_rate"] == 1.0
    assert not lock_path(trajectories).exists()
