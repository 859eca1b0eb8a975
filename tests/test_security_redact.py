"""Attacks on redaction and on the parser (issue 27, findings 5 and 6); each one must fail.

Secrets are planted wherever a config or a flag can carry one (a token in a URL's path, `user:pass@`,
`?key=`, an MCP server's `args` and `env`, a header), then real things run that record them: an env
built from an `mcpServers` config whose server fails, a `rollouts.run_rollouts` run writing JSONL and
stats, `python -m envs inspect`, `python -m rollouts.generate` against the scripted OpenAI server with
secret-laden `--base-url`s, `serve.bench`, GRPO's `state.json`. Every output (error text, files,
captured logs, stdout/stderr) is searched for every secret.

Model garbage (arguments nested 1,000 and 100,000 deep, a 5,000-digit number, NaN, a lone surrogate,
a reply that makes a regular expression backtrack) goes through a real rollout with the scripted
policy and must stay the model's error: a `bad_arguments` outcome, a record written, no infra
failure, nothing run again on resume, and judges and exports that read the record without crashing.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

import envs
from common.redact import looks_secret, redact_command, redact_text, redact_url
from contracts import EnvInfraError, Task, Trajectory
from judges.compose import build_judge
from judges.metrics import compute_metrics
from rollouts import ChatPolicy, PolicyConfig, RetryConfig, run_rollouts
from rollouts.formats.base import FORMATS
from rollouts.formats.files import export_file
from rollouts.generate import write_report
from rollouts.parse import parse_reply
from tests.fixtures.common import free_port
from tests.fixtures.envs_fixtures import HttpMcpServer
from tests.fixtures.policy_server import ScriptedServer
from train.loop_state import LoopState

PATH_TOKEN = "sk-live-4f9a2c1e8b7d6a5fQwErTy"
PASSWORD = "Pa55w0rd-xq7Zk"
QUERY_KEY = "qk9Xa7Lm2Pq8Rt"
ARG_KEY = "sk-arg-7Hs9Kd2Lw4Qz"
ARG_TOKEN = "tok3Jf8Ms1Np6Vw"
ARG_BARE = "ghp_ab12CD34ef56GH78ij90KL12mn34OP56qr"
ARG_ENV = "svc-7Yt2Rq9Lp4"
ENV_SECRET = "env-secret-5Vb8Nc2Xz"
HEADER_TOKEN = "hdr-8Kq3Wz6Jm1"
SECRETS = (PATH_TOKEN, PASSWORD, QUERY_KEY, ARG_KEY, ARG_TOKEN, ARG_BARE, ARG_ENV, ENV_SECRET, HEADER_TOKEN)

FAST_RETRY = RetryConfig(retries=1, initial_s=0.01, max_s=0.02, jitter_s=0.01)
UNUSED_POLICY = "http://127.0.0.1:9/v1"  # the env fails first: nothing is ever sent here


def assert_clean(outputs: dict[str, str]) -> None:
    for where, text in outputs.items():
        for secret in SECRETS:
            at = text.find(secret)
            assert at < 0, f"{secret!r} leaked into {where}: ...{text[max(0, at - 80) : at + 80]}..."


MCPGYM_LOGGERS = ("common", "contracts", "envs", "rollouts", "judges", "train", "serve")


def mcpgym_log(caplog: pytest.LogCaptureFixture) -> str:
    """What a log would show: mcpgym's own records at any level, anyone's from WARNING up. (A
    library's own DEBUG/INFO lines, such as the URL of each request, are the library's: mcpgym
    configures no logging, so they show only where a user turns them on.)"""
    return "\n".join(
        record.getMessage()
        for record in caplog.records
        if record.name.split(".")[0] in MCPGYM_LOGGERS or record.levelno >= logging.WARNING
    )


def write_json(path: Path, data: Any) -> Path:
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


# -- the rule ------------------------------------------------------------------------------------


def test_rule_masks_every_planted_secret_and_keeps_what_says_where() -> None:
    url = f"https://alice:{PASSWORD}@mcp.example.com:8443/mcp/{PATH_TOKEN}/sse?key={QUERY_KEY}#{ARG_TOKEN}"
    assert redact_url(url) == "https://mcp.example.com:8443/mcp/***/sse?...#..."
    # Replicas of one --base-url, each redacted; segments that cannot be secrets stay.
    assert redact_url(f"http://h1/v1,http://u:{PASSWORD}@h2/tenants/acme-corp/v1?key=x") == (
        "http://h1/v1,http://h2/tenants/acme-corp/v1?..."
    )
    argv = ["srv", "--api-key", ARG_KEY, f"--token={ARG_TOKEN}", ARG_BARE, f"SERVICE_KEY={ARG_ENV}", "--port", "80"]
    assert redact_command(argv) == "srv --api-key '***' '--token=***' '***' 'SERVICE_KEY=***' --port 80"
    # A variable reference names where the secret comes from: it stays.
    assert redact_command(["srv", "--token", "${env:TOKEN}"]) == "srv --token '${env:TOKEN}'"
    text = f"404 for url 'http://u:{PASSWORD}@h/x?key={QUERY_KEY}'; sent Bearer {HEADER_TOKEN} with {ARG_BARE}"
    assert redact_text(text) == "404 for url 'http://h/x?...'; sent Bearer *** with ***"
    for shown in ("Qwen3-8B", "SmolLM2-135M-Instruct", "HuggingFaceTB", "ClosedResourceError", "energy:train-0007:s2"):
        assert not looks_secret(shown) and redact_text(shown) == shown
    for secret in (PATH_TOKEN, ARG_BARE, "550e8400-e29b-41d4-a716-446655440000", "3f9a1b2c4d5e6f7a8b9c0d1e"):
        assert looks_secret(secret)
    for once in (redact_url(url), redact_command(argv), redact_text(text)):
        assert redact_text(once) == once  # idempotent: a message redacted twice reads the same


# -- an env whose server fails: the error, the trajectory, the stats, the logs -------------------


def failing_entry(kind: str, request: pytest.FixtureRequest) -> tuple[dict[str, Any], str]:
    """A server entry of `kind` with planted secrets, and what the error must still name."""
    port = free_port()  # nothing listens: refused
    if kind == "path token":
        return {"url": f"http://127.0.0.1:{port}/mcp/{PATH_TOKEN}/sse"}, f"127.0.0.1:{port}/mcp/***/sse"
    if kind == "path token, 404":  # a live server: the HTTP client's own error quotes the whole URL
        live: HttpMcpServer = request.getfixturevalue("calc_http")
        url = f"http://127.0.0.1:{live.port}/nope/{PATH_TOKEN}?key={QUERY_KEY}"
        return {"url": url, "type": "http"}, "Not Found"
    if kind == "userinfo":
        return {"url": f"http://alice:{PASSWORD}@127.0.0.1:{port}/mcp"}, f"127.0.0.1:{port}/mcp"
    if kind == "query":
        return {"url": f"http://127.0.0.1:{port}/mcp?key={QUERY_KEY}&user=bob"}, f"127.0.0.1:{port}/mcp?..."
    if kind == "header":
        entry = {"url": f"http://127.0.0.1:{port}/mcp", "headers": {"Authorization": f"Bearer {HEADER_TOKEN}"}}
        return entry, f"127.0.0.1:{port}/mcp"
    if kind == "stdio args":
        args = ["--api-key", ARG_KEY, f"--token={ARG_TOKEN}", ARG_BARE, f"SERVICE_KEY={ARG_ENV}"]
        return {"command": "/nonexistent/mcp-server", "args": args}, "/nonexistent/mcp-server --api-key"
    assert kind == "stdio env"
    entry = {"command": "python", "args": ["-c", "raise SystemExit(3)"], "env": {"API_TOKEN": ENV_SECRET}}
    return entry, "raise SystemExit(3)"


KINDS = ["path token", "path token, 404", "userinfo", "query", "header", "stdio args", "stdio env"]


@pytest.mark.parametrize("kind", KINDS)
async def test_failing_server_secrets_stay_out_of_errors_trajectories_stats_and_logs(
    kind: str,
    tmp_path: Path,
    request: pytest.FixtureRequest,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    caplog.set_level(logging.DEBUG)
    entry, named = failing_entry(kind, request)
    config = write_json(tmp_path / "mcp.json", {"mcpServers": {"svc": entry}})

    env = envs.load(config, isolation="shared", startup_timeout_s=15)
    try:
        with pytest.raises(EnvInfraError) as info:
            await asyncio.wait_for(env.start(), timeout=60)
    finally:
        await env.aclose()
    error = str(info.value)
    assert error.startswith("server 'svc' (") and named in error, error

    # The same failure through the rollout loop: the record written to JSONL and the run's stats.
    out = tmp_path / "traj.jsonl"
    task = Task(id="t1", question="What is the price of gas?")
    env = envs.load(config, isolation="shared", startup_timeout_s=15)
    try:
        async with ChatPolicy(PolicyConfig(base_url=UNUSED_POLICY, model="scripted")) as policy:
            result = await run_rollouts(env, policy, [task], out=out, progress=False, retry=FAST_RETRY, timeout_s=60)
    finally:
        await env.aclose()
    (traj,) = result.trajectories
    assert (
        traj.is_infra_failure
        and traj.error is not None
        and traj.error.message.startswith("env: EnvInfraError: server 'svc' (")
    )
    stats = tmp_path / "traj.stats.json"
    write_report(result, stats)

    captured = capfd.readouterr()
    assert_clean(
        {
            "EnvInfraError": error,
            "repr of the env's servers": repr(env.handles["svc"].target),
            "trajectory JSONL": out.read_text(encoding="utf-8"),
            "stats JSON": stats.read_text(encoding="utf-8"),
            "log records": mcpgym_log(caplog),
            "stdout": captured.out,
            "stderr": captured.err,
        }
    )


@pytest.mark.parametrize("kind", ["path token", "stdio args"])
def test_cli_line_of_a_failing_server_has_no_secret(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    entry, named = failing_entry(kind, request)
    config = write_json(tmp_path / "mcp.json", {"mcpServers": {"svc": entry}})
    result = subprocess.run(
        [sys.executable, "-m", "envs", "inspect", str(config)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 2 and named in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert_clean({"stdout": result.stdout, "stderr": result.stderr})


# -- policy endpoints: stats, exit lines, reports, state files -----------------------------------


def test_generate_keeps_base_url_secrets_out_of_trajectories_stats_and_output(
    tmp_path: Path, scripted_server: ScriptedServer
) -> None:
    port = scripted_server.port
    with_userinfo = f"http://alice:{PASSWORD}@127.0.0.1:{port}/v1"  # answers
    with_token_and_key = f"http://127.0.0.1:{port}/mcp/{PATH_TOKEN}/v1?key={QUERY_KEY}"  # 404: infra failures
    out = tmp_path / "traj.jsonl"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "rollouts.generate",
            "--env",
            "energy",
            "--limit",
            "6",
            "--concurrency",
            "2",
            "--retries",
            "0",
            "--base-url",
            f"{with_userinfo},{with_token_and_key}",
            "--model",
            "scripted",
            "--out",
            str(out),
            "--no-progress",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "OPENAI_API_KEY": "EMPTY"},
    )
    assert result.returncode in (0, 1), result.stderr
    stats = json.loads((tmp_path / "traj.stats.json").read_text())
    urls = [item["url"] for item in stats["endpoints"]]
    assert urls == [f"http://127.0.0.1:{port}/v1", f"http://127.0.0.1:{port}/mcp/***/v1?..."]
    assert all(item["requests"] > 0 for item in stats["endpoints"]), stats["endpoints"]
    assert stats["errors"].get("infra", 0) > 0 and "infrastructure at http://127.0.0.1" in result.stderr
    assert_clean(
        {
            "stdout": result.stdout,
            "stderr": result.stderr,
            "trajectory JSONL": out.read_text(encoding="utf-8"),
            "stats JSON": json.dumps(stats),
        }
    )


async def test_bench_report_and_its_errors_keep_base_url_secrets_out(
    tmp_path: Path, scripted_server: ScriptedServer, capfd: pytest.CaptureFixture[str]
) -> None:
    from serve import bench

    base_url = f"http://alice:{PASSWORD}@127.0.0.1:{scripted_server.port}/v1"
    flags = ["--workload", "chat", "--concurrency", "1", "--requests", "2", "--warmup", "0", "--no-progress"]
    rc = await bench.main(["--base-url", base_url, "--model", "scripted", "--out", str(tmp_path / "b"), *flags])
    assert rc == 0
    report = json.loads((tmp_path / "b" / "bench.json").read_text())
    assert report["base_url"] == f"http://127.0.0.1:{scripted_server.port}/v1"
    # No --model: listing the models fails (the scripted server has none), and the error quotes the URL.
    with pytest.raises(SystemExit) as exit_info:
        await bench.main(["--base-url", f"{base_url}/{PATH_TOKEN}?key={QUERY_KEY}", "--out", str(tmp_path / "c")])
    assert exit_info.value.code == 2
    captured = capfd.readouterr()
    assert "cannot list models at http://127.0.0.1" in captured.err
    assert_clean({"bench.json": json.dumps(report), "stdout": captured.out, "stderr": captured.err})


def test_grpo_state_keeps_no_url_secret(tmp_path: Path) -> None:
    from train.grpo_config import GRPOConfig

    config = GRPOConfig(
        judge="ruler",
        judge_model="judge",
        judge_base_url=f"http://alice:{PASSWORD}@127.0.0.1:8001/v1?key={QUERY_KEY}",
        teacher_base_url=f"https://api.example.com/{PATH_TOKEN}/v1",
        teacher_model="teacher",
    )
    state = LoopState()
    state.config = config.model_dump(mode="json")  # as the GRPO loop records its flags
    path = tmp_path / "state.json"
    state.save(path)
    saved = LoopState.load(path)
    assert saved.config["judge_base_url"] == "http://127.0.0.1:8001/v1?..."
    assert saved.config["teacher_base_url"] == "https://api.example.com/***/v1"
    assert_clean({"state.json": path.read_text()})


# -- model garbage stays a model error -------------------------------------------------------------


def nested(depth: int) -> str:
    return '{"a": ' * depth + "1" + "}" * depth


GARBAGE = {
    "nested 1,000 deep": nested(1_000),
    "nested 100,000 deep": "[" * 100_000 + "]" * 100_000,
    "a 5,000-digit number": '{"region": ' + "7" * 5_000 + "}",
    "NaN": '{"region": NaN}',
    "1e999": '{"region": 1e999}',
    "a lone surrogate": '{"region": "\\ud800"}',
}


@pytest.mark.parametrize("form", ["native", "text"])
@pytest.mark.parametrize("garbage", list(GARBAGE))
async def test_garbage_arguments_are_bad_arguments_never_infra_and_not_rerun(
    garbage: str, form: str, energy_env: Any, scripted_server: ScriptedServer, tmp_path: Path
) -> None:
    scripted_server.set_script(raw_arguments=GARBAGE[garbage], tool_call_form=form)
    task = next(t for t in energy_env.tasks("train") if t.kind == "single")
    out = tmp_path / "traj.jsonl"
    policy_config = PolicyConfig(base_url=scripted_server.base_url, model="scripted")
    async with ChatPolicy(policy_config) as policy:
        result = await run_rollouts(energy_env, policy, [task], out=out, progress=False, retry=FAST_RETRY)
    (traj,) = result.trajectories
    assert traj.error is None and not traj.is_infra_failure, traj.error
    assert traj.tool_outcomes[0].error == "bad_arguments", traj.tool_outcomes
    tool_reply = next(m for m in traj.messages if m["role"] == "tool")
    assert tool_reply["content"].startswith("Error: arguments are ")
    assert traj.success  # the scripted model reads the error and calls again correctly
    written = Trajectory.model_validate_json(out.read_text(encoding="utf-8").splitlines()[0])
    assert written.tool_outcomes[0].error == "bad_arguments"

    # Resume: a model error is done, not an infra failure to try again.
    sent = len(scripted_server.requests)
    async with ChatPolicy(policy_config) as policy:
        again = await run_rollouts(energy_env, policy, [task], out=out, progress=False, retry=FAST_RETRY)
    assert again.stats.new == 0 and again.stats.retried == 0 and len(scripted_server.requests) == sent

    # Judges and exports read the record without crashing.
    judged = await build_judge("rules").score_group([written])
    assert judged[0].reward is not None and not judged[0].is_infra_failure
    assert compute_metrics([written])["n_scored"] == 1
    for fmt in FORMATS:
        export_file(out, tmp_path / f"{fmt}.jsonl", fmt=fmt)


async def test_lone_surrogate_in_the_answer_is_written_not_a_crash(
    energy_env: Any, scripted_server: ScriptedServer, tmp_path: Path
) -> None:
    scripted_server.set_script(answer_suffix=" \ud800", think="inline")
    task = next(t for t in energy_env.tasks("train") if t.kind == "single")
    out = tmp_path / "traj.jsonl"
    async with ChatPolicy(PolicyConfig(base_url=scripted_server.base_url, model="scripted")) as policy:
        result = await run_rollouts(energy_env, policy, [task], out=out, progress=False, retry=FAST_RETRY)
    (traj,) = result.trajectories
    assert traj.error is None and traj.answer is not None and traj.answer.endswith("\ufffd")
    assert Trajectory.model_validate_json(out.read_text(encoding="utf-8")).answer == traj.answer


def test_reply_that_backtracks_a_regex_parses_at_once() -> None:
    # A fenced reply that never closes: the old fence pattern took minutes (cubic backtracking),
    # holding the event loop and every rollout on it.
    content = "```json" + " " * 3_000 + "x"
    started = time.perf_counter()
    reply = parse_reply({"role": "assistant", "content": content}, tools_offered=True)
    assert time.perf_counter() - started < 1.0
    assert reply.tool_calls == [] and reply.content == content.strip()


def test_parse_reply_never_raises_on_garbage_text_calls() -> None:
    for raw in GARBAGE.values():
        for content in (f'<tool_call>{{"name": "prices", "arguments": {raw}}}</tool_call>', raw):
            reply = parse_reply({"role": "assistant", "content": content}, tools_offered=True)
            for call in reply.tool_calls:
                with pytest.raises(ValueError):  # the env answers bad_arguments
                    call.parsed_arguments()
            json.dumps(reply.message)  # the record can be written
