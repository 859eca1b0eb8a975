"""`python -m train.bfcl` end to end against a scripted OpenAI-compatible server (tests/fixtures/bfcl_policy.py):
real HTTP, the real policy client, the real checker; resume, the summary, --compare and bad flags."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from common.cli import run_cli
from judges.bfcl import load_category
from rollouts.jsonl import read_jsonl
from rollouts.policy import ChatPolicy
from tests.fixtures.bfcl_policy import BfclScriptedServer
from tests.fixtures.vllm_server import tiny_policy_config
from train.bfcl import main, run_bfcl

CATEGORIES = ["simple_python", "simple_java", "parallel", "multiple", "irrelevance", "live_parallel_multiple"]
LIMIT = 3
ROOT = Path(__file__).resolve().parents[1]


def _run(server: BfclScriptedServer, out: Path, *extra: str, model: str = "scripted") -> int:
    argv = ["--bench", "bfcl", "--categories", ",".join(CATEGORIES), "--limit", str(LIMIT)]
    argv += ["--base-url", server.base_url, "--model", model, "--out", str(out), "--no-progress", *extra]
    return main(argv)


def test_end_to_end_resume_and_compare(
    bfcl_server: BfclScriptedServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    entries = [entry for category in CATEGORIES for entry in load_category(category, LIMIT)]
    bfcl_server.add_entries(entries)
    bfcl_server.wrong = {"simple_python_1", "irrelevance_0", "parallel_2"}
    base = tmp_path / "base.jsonl"

    assert _run(bfcl_server, base, "--concurrency", "4") == 0
    table = capsys.readouterr().out
    records = {r["id"]: r for r in read_jsonl(base)}
    assert set(records) == {entry.id for entry in entries}
    assert {i for i, r in records.items() if not r["valid"]} == bfcl_server.wrong
    assert records["simple_python_1"]["error_type"] == "simple_function_checker:wrong_func_name"
    assert records["simple_python_0"]["reply"] == [
        {"calculate_triangle_area": '{"base": 10, "height": 5, "unit": "units"}'}
    ]
    assert records["irrelevance_1"]["reply"] == "I cannot help with that using these tools."
    assert "simple_python                   2      3    66.67%" in table
    # the request carried the leaderboard's tools and temperature
    request = next(
        r for r in bfcl_server.requests if r["messages"][-1]["content"] == entries[0].question[0][-1]["content"]
    )
    assert request["tools"][0]["function"]["name"] == "calculate_triangle_area"
    assert request["temperature"] == 0.001

    summary = json.loads(base.with_suffix(".summary.json").read_text())
    assert summary["categories"]["simple_python"] == {"correct": 2, "total": 3, "accuracy": pytest.approx(2 / 3)}
    assert summary["categories"]["irrelevance"]["correct"] == 2
    assert summary["summary"]["overall"]["display"] == "N/A"  # multi-turn and agentic are not run
    assert summary["summary"]["relevance"]["complete"] is False

    # resume: nothing is asked again
    asked = len(bfcl_server.requests)
    assert _run(bfcl_server, base) == 0
    assert len(bfcl_server.requests) == asked
    assert len(read_jsonl(base)) == len(entries)

    # a second model answers every entry right, with its calls as text (parsed by the policy)
    bfcl_server.wrong = set()
    bfcl_server.text_calls = True
    trained = tmp_path / "trained.jsonl"
    assert _run(bfcl_server, trained, model="trained") == 0
    second = read_jsonl(trained)
    assert all(r["valid"] for r in second)
    assert any(r["text_tool_calls"] for r in second)
    capsys.readouterr()

    assert main(["--compare", str(base), str(trained)]) == 0
    report = capsys.readouterr().out
    assert "simple_python" in report and "+33.33" in report
    assert "fixed (wrong -> right): 3, broke (right -> wrong): 0" in report


def test_a_run_with_another_model_in_out_is_refused(
    bfcl_server: BfclScriptedServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bfcl_server.add_entries(load_category("live_parallel", 1))
    out = tmp_path / "run.jsonl"
    argv = ["--categories", "live_parallel", "--limit", "1", "--base-url", bfcl_server.base_url, "--out", str(out)]
    assert main([*argv, "--model", "a", "--no-progress"]) == 0
    with pytest.raises(SystemExit) as exit_info:
        run_cli(lambda: main([*argv, "--model", "b", "--no-progress"]))
    assert exit_info.value.code == 2
    assert "holds replies of model 'a'" in capsys.readouterr().err


def test_server_down_is_an_infra_failure_not_a_wrong_answer(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from tests.fixtures.common import free_port

    out = tmp_path / "down.jsonl"
    argv = ["--categories", "live_parallel", "--limit", "2", "--base-url", f"http://127.0.0.1:{free_port()}/v1"]
    assert main([*argv, "--model", "m", "--out", str(out), "--retries", "0", "--no-progress"]) == 1
    assert "2 entries failed on infrastructure" in capsys.readouterr().out
    records = read_jsonl(out)  # written as infra (no verdict), so a rerun asks them again
    assert len(records) == 2 and all(r["error"]["kind"] == "infra" and r["reply"] is None for r in records)
    summary = json.loads(out.with_suffix(".summary.json").read_text())
    assert summary["categories"] == {} and summary["infra_failures"] == 2  # neither right nor wrong


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--limit", "0"], "--limit must be at least 1"),
        (["--categories", "simple,nope"], "unknown BFCL category 'nope'"),
        (["--categories", "multi_turn_nope"], "unknown BFCL category 'multi_turn_nope'"),
        (["--categories", "multi_turn", "--limit", "0"], "--limit must be at least 1"),  # multi_turn is accepted
        (["--concurrency", "x"], "invalid int value"),
        (["--compare", "missing_a.jsonl", "missing_b.jsonl"], "no such file"),
    ],
)
def test_bad_flags_are_one_line_and_exit_2(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        run_cli(lambda: main(argv))
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1, err


def test_module_cli_exit_code_and_help() -> None:
    bad = subprocess.run(
        [sys.executable, "-m", "train.bfcl", "--categories", "multi_turn_long_contxt"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad.returncode == 2
    assert len(bad.stderr.strip().splitlines()) == 1 and "unknown BFCL category" in bad.stderr
    assert bad.stdout == ""


async def test_against_real_vllm(vllm_tiny, tmp_path: Path) -> None:
    """The same path against vLLM itself (the tiny random model, the session's one server): the requests with
    BFCL's tools are accepted, every entry gets a verdict, nothing is an infra failure."""
    out = tmp_path / "vllm.jsonl"
    config = tiny_policy_config(
        vllm_tiny,
        max_tokens=8,
        temperature=0,
    )
    async with ChatPolicy(config) as policy:
        result = await run_bfcl(policy, ["simple_python", "live_irrelevance"], out=out, limit=1, progress=False)
    assert result.infra_failures == 0 and result.new == 2
    records = read_jsonl(out)
    assert [r["id"] for r in sorted(records, key=lambda r: r["id"])] == ["live_irrelevance_0-0-0", "simple_python_0"]
    assert all(isinstance(r["valid"], bool) and r["message"] is not None for r in records)
    assert set(result.categories) == {"simple_python", "live_irrelevance"}
