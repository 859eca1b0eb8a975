"""The CLIs as users run them: subprocesses against the scripted server over HTTP."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from rollouts.jsonl import read_jsonl
from rollouts.questions import normalize
from tests.fixtures.policy_server import ScriptedServer

SECRET = "sk-test-do-not-leak-7f3a9c"


def cli_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("WANDB_API_KEY", "OPENAI_API_KEY")}
    env.update(extra)
    return env


def generate_args(server: ScriptedServer, out: Path, *more: str) -> list[str]:
    return [
        sys.executable, "-m", "rollouts.generate", "--env", "energy", "--split", "train",
        "--base-url", server.base_url, "--model", "scripted", "--out", str(out), "--no-progress",
        "--retries", "1", *more,
    ]  # fmt: skip


def run(args: list[str], **extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=120, env=cli_env(**extra), check=False)


def test_kill_mid_run_then_resume_writes_every_id_once(scripted_server: ScriptedServer, tmp_path: Path) -> None:
    out = tmp_path / "traj.jsonl"
    limit = 24
    scripted_server.set_script(delay_s=0.08)  # slow enough to be killed halfway
    proc = subprocess.Popen(
        generate_args(scripted_server, out, "--limit", str(limit), "--concurrency", "2"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=cli_env(),
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if out.exists() and out.read_bytes().count(b"\n") >= 4:
                break
            if proc.poll() is not None:
                pytest.fail(f"generate exited early: {proc.stderr.read().decode() if proc.stderr else ''}")
            time.sleep(0.02)
        proc.kill()  # SIGKILL: no cleanup, no flush handlers
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
        if proc.stderr:
            proc.stderr.close()
    partial = read_jsonl(out)  # readable after the kill (a torn tail is skipped)
    assert 4 <= len(partial) < limit
    scripted_server.set_script()
    done = run(generate_args(scripted_server, out, "--limit", str(limit), "--concurrency", "4"))
    assert done.returncode == 0, done.stderr
    assert "resumed" in done.stdout
    ids = Counter(record["id"] for record in read_jsonl(out))
    assert len(ids) == limit and set(ids.values()) == {1}
    stats = json.loads((tmp_path / "traj.stats.json").read_text())
    assert stats["count"] == limit and stats["resumed"] == len(partial) and stats["success_rate"] == 1.0


def test_api_key_is_used_but_never_written(scripted_server: ScriptedServer, tmp_path: Path) -> None:
    out = tmp_path / "k.jsonl"
    stats = tmp_path / "stats" / "k.json"
    proc = run(generate_args(scripted_server, out, "--limit", "3", "--stats", str(stats)), OPENAI_API_KEY=SECRET)
    assert proc.returncode == 0, proc.stderr
    assert scripted_server.auth_headers and set(scripted_server.auth_headers) == {f"Bearer {SECRET}"}
    for path in (out, stats):
        assert SECRET not in path.read_text()
    assert SECRET not in proc.stdout + proc.stderr
    assert json.loads(stats.read_text())["count"] == 3


def test_server_down_gives_infra_records_and_exit_1(tmp_path: Path) -> None:
    from tests.fixtures.common import free_port

    out = tmp_path / "down.jsonl"
    args = [
        sys.executable, "-m", "rollouts.generate", "--limit", "2", "--out", str(out), "--no-progress",
        "--retries", "0", "--base-url", f"http://127.0.0.1:{free_port()}/v1",
    ]  # fmt: skip
    proc = run(args)
    assert proc.returncode == 1, proc.stderr
    records = read_jsonl(out)
    assert len(records) == 2 and all(r["error"]["kind"] == "infra" for r in records)
    assert "APIConnectionError" in records[0]["error"]["message"]


@pytest.mark.parametrize(
    ("more", "needle"),
    [
        (["--concurrency", "0"], "--concurrency must be at least 1"),
        (["--samples", "many"], "invalid int value"),
        (["--bogus"], "unrecognized arguments"),
        (["--questions", "MISSING"], "no such questions file"),
        (["--questions", "NOQUESTION"], 'has no "question"'),
        (["--split", "nosuchsplit"], "nosuchsplit"),
        (["--env", "no_such_env_here"], "no_such_env_here"),
        (["--out", "CORRUPT"], "not a JSON line"),
    ],
)
def test_generate_bad_input_is_one_line_exit_2(
    scripted_server: ScriptedServer, tmp_path: Path, more: list[str], needle: str
) -> None:
    corrupt = tmp_path / "corrupt.jsonl"
    corrupt.write_text('{"id": "a"}\n{broken\n{"id": "b"}\n')
    noquestion = tmp_path / "noq.jsonl"
    noquestion.write_text('{"text": "hi"}\n')
    subst = {"MISSING": str(tmp_path / "missing.jsonl"), "NOQUESTION": str(noquestion), "CORRUPT": str(corrupt)}
    more = [subst.get(arg, arg) for arg in more]
    args = generate_args(scripted_server, tmp_path / "o.jsonl", "--limit", "1")
    args += more  # a repeated flag (--out) wins over the default one: argparse keeps the last
    proc = run(args)
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr


def test_questions_then_generate_open_tasks(scripted_server: ScriptedServer, tmp_path: Path) -> None:
    questions = tmp_path / "q.jsonl"
    base = [
        sys.executable, "-m", "rollouts.questions", "--env", "energy", "--out", str(questions),
        "--base-url", scripted_server.base_url, "--model", "scripted", "--batch-size", "5",
        "--concurrency", "1", "--no-progress",
    ]  # fmt: skip
    proc = run([*base, "-n", "12"])
    assert proc.returncode == 0, proc.stderr
    records = read_jsonl(questions)
    assert len(records) == 12
    assert len({normalize(r["question"]) for r in records}) == 12  # near-duplicates were dropped
    assert "duplicates" in proc.stderr and "dropped 0 duplicates" not in proc.stderr
    body = scripted_server.requests[0]
    assert body["response_format"]["type"] == "json_schema"
    tool_names = set(re.findall(r'"name": "(\w+)"', body["messages"][1]["content"]))  # the tools it was shown
    assert len(tool_names) >= 2
    schema = body["response_format"]["json_schema"]["schema"]
    tools_schema = schema["properties"]["questions"]["items"]["properties"]["tools"]
    assert set(tools_schema["items"]["enum"]) == tool_names and tools_schema["minItems"] == 1  # the real names only
    for record in records:
        assert record["difficulty"] in ("easy", "medium", "hard") and set(record["tools"]) <= tool_names
        assert record["env"] == "energy" and record["id"].startswith("q-")
    more = run([*base, "-n", "15"])  # resumes: only three more
    assert more.returncode == 0, more.stderr
    again = read_jsonl(questions)
    assert len(again) == 15 and again[:12] == records

    out = tmp_path / "open.jsonl"
    gen = run(generate_args(scripted_server, out, "--questions", str(questions), "--limit", "3"))
    assert gen.returncode == 0, gen.stderr
    trajs: list[dict[str, Any]] = read_jsonl(out)
    assert len(trajs) == 3 and all(t["task"]["kind"] == "open" and t["task"]["answer"] is None for t in trajs)
    assert {t["task_id"] for t in trajs} == {r["id"] for r in records[:3]}


def questions_args(server: ScriptedServer, out: Path, *more: str) -> list[str]:
    return [
        sys.executable, "-m", "rollouts.questions", "--env", "energy", "--out", str(out),
        "--base-url", server.base_url, "--model", "scripted", "--batch-size", "5",
        "--concurrency", "1", "--retries", "0", "--no-progress", *more,
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("reply", "structured", "needle"),
    [
        ("junk", "auto", "2 replies without questions JSON"),  # prose, no JSON at all
        ("unknown_tools", "off", "10 with unknown tools"),  # JSON naming tools the env does not have
    ],
)
def test_questions_nothing_usable_is_one_error_line_and_exit_3(
    scripted_server: ScriptedServer, tmp_path: Path, reply: str, structured: str, needle: str
) -> None:
    out = tmp_path / "q.jsonl"
    scripted_server.set_script(questions_reply=reply)
    proc = run(questions_args(scripted_server, out, "-n", "8", "--max-requests", "2", "--structured", structured))
    assert proc.returncode == 3, (proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: no usable question came back from scripted at " + scripted_server.base_url)
    assert "0/8 questions after 2 requests" in lines[0] and needle in lines[0], lines[0]
    assert not out.exists() or read_jsonl(out) == []
    assert len(scripted_server.requests) == 2
    assert all(("response_format" in body) == (structured != "off") for body in scripted_server.requests)


def test_questions_partial_is_a_warning_and_exit_0(scripted_server: ScriptedServer, tmp_path: Path) -> None:
    out = tmp_path / "q.jsonl"
    proc = run(questions_args(scripted_server, out, "-n", "12", "--max-requests", "1"))
    assert proc.returncode == 0, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("warning: only 5/12 questions after 1 requests"), proc.stderr
    assert len(read_jsonl(out)) == 5


def test_questions_fall_back_to_plain_json_when_the_schema_is_refused(
    scripted_server: ScriptedServer, tmp_path: Path
) -> None:
    """A server that answers 400 to json_schema (a hosted model without it): auto says so in one
    line, asks the same request again without the schema and every later one plainly; the fenced
    JSON in prose that comes back is read. `on` fails every request instead: exit 1 naming it."""
    out = tmp_path / "q.jsonl"
    scripted_server.set_script(refuse_json_schema=True)
    proc = run(questions_args(scripted_server, out, "-n", "8"))
    assert proc.returncode == 0, proc.stderr
    lines = proc.stderr.strip().splitlines()
    refusals = [line for line in lines if "refused structured output" in line]
    assert len(refusals) == 1 and refusals[0].startswith(f"warning: {scripted_server.base_url} refused"), lines
    assert "HTTP 400" in refusals[0] and "json_schema" in refusals[0]
    assert lines[-1].startswith("8/8 questions after 2 requests (plain JSON;"), lines
    assert len(read_jsonl(out)) == 8
    with_schema = ["response_format" in body for body in scripted_server.requests]
    assert with_schema == [True, False, False], with_schema  # refused, asked again plainly, then plain

    scripted_server.set_script(refuse_json_schema=True)
    strict = run(questions_args(scripted_server, tmp_path / "strict.jsonl", "-n", "8", "--structured", "on"))
    assert strict.returncode == 1, strict.stderr
    lines = strict.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: all "), strict.stderr
    assert scripted_server.base_url in lines[0] and "HTTP 400" in lines[0]
    assert all("response_format" in body for body in scripted_server.requests)
