"""`train.eval`: a real vLLM (the session's tiny model) on the real energy env; table and JSON out."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from common.cli import UsageError
from contracts import Task
from tests.fixtures.vllm_server import TINY_KEY_ENV
from train.eval import main, parse_spec, select_tasks

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
async def test_eval_endpoint_writes_table_and_json(vllm_tiny, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "report.json"
    endpoint = ["--base-url", vllm_tiny.base_url, "--model", "tiny", "--api-key-env", TINY_KEY_ENV]
    code = await main(
        ["--env", "energy", *endpoint, "--limit", "4", "--max-tokens", "8", "--max-turns", "2", "--report", str(out)]
    )
    assert code == 0
    report = json.loads(out.read_text())["reports"][0]
    assert report["label"] == "tiny" and report["split"] == "test" and report["n_tasks"] == 4
    assert report["success_rate"] == 0.0  # a random model solves nothing
    assert {"func_name_accuracy", "param_f1", "n_scored"} <= set(report["metrics"])  # NaN ones (no calls) are left out
    assert report["n_infra"] == 0
    lines = Path(report["trajectories"]).read_text().splitlines()  # noqa: ASYNC240
    assert len(lines) == 4
    table = capsys.readouterr().out
    assert "success_rate" in table and "func_name_accuracy" in table and "tiny" in table


@pytest.mark.slow
async def test_compare_puts_two_models_side_by_side(vllm_tiny, tmp_path: Path, capsys) -> None:
    out = tmp_path / "compare.json"
    spec = f"{vllm_tiny.base_url}#tiny"
    argv = ["--compare", spec, spec, "--limit", "2", "--max-tokens", "8", "--max-turns", "1", "--report", str(out)]
    await main([*argv, "--api-key-env", TINY_KEY_ENV])
    reports = json.loads(out.read_text())["reports"]
    assert [report["label"] for report in reports] == ["A:tiny", "B:tiny"]
    header = capsys.readouterr().out.splitlines()[0].split()
    assert header == ["metric", "A:tiny", "B:tiny"]


def test_select_tasks_is_fixed_and_covers_every_kind() -> None:
    kinds = ["single"] * 80 + ["multi_step"] * 17 + ["parallel"] * 13 + ["no_tool"] * 10
    tasks = [Task(id=f"t{i:03d}", question=f"q{i}", kind=kind) for i, kind in enumerate(kinds)]  # type: ignore[arg-type]
    chosen = select_tasks(tasks, 12, seed=0)
    assert len(chosen) == 12 and chosen == select_tasks(tasks, 12, seed=0)
    assert set(Counter(task.kind for task in chosen)) == {"single", "multi_step", "parallel", "no_tool"}
    assert select_tasks(tasks, 0) == tasks


def test_specs(tmp_path: Path) -> None:
    assert parse_spec("http://h:1/v1#m").model_dump(exclude_none=True) == {
        "label": "m",
        "base_url": "http://h:1/v1",
        "model": "m",
    }
    with pytest.raises(UsageError):
        parse_spec(str(tmp_path / "missing"))
    with pytest.raises(UsageError, match="adapter_config"):
        parse_spec(str(tmp_path))
    (tmp_path / "adapter_config.json").write_text("{}")
    assert parse_spec(str(tmp_path)).folder == tmp_path.resolve()


@pytest.mark.parametrize(
    "flags",
    [
        [],
        ["--base-url", "http://127.0.0.1:9/v1"],
        ["--checkpoint", "/no/such/dir"],
        ["--base-url", "http://127.0.0.1:9/v1", "--model", "m", "--limit", "-1"],
    ],
)
def test_bad_flags_are_one_line_and_exit_2(flags: list[str]) -> None:
    proc = subprocess.run([sys.executable, "-m", "train.eval", *flags], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
