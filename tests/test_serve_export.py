"""`python -m serve.export gguf`: llama.cpp's own converter (fetched from the llama-cpp-python sdist on
PyPI, once per cache) on the tiny random model, read back with `gguf` and, with --verify, loaded by
transformers and compared with the source model token by token."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.slow


def _cli(*argv: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "serve.export", *argv]
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=900)


def test_gguf_export_round_trips(tiny_model_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "gguf" / "tiny.q8_0.gguf"
    result = _cli("gguf", "--weights", str(tiny_model_dir), "--out", str(out), "--quant", "q8_0", "--verify")
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads(result.stdout.splitlines()[0])
    assert summary["architecture"] == "llama"
    assert summary["file_type"] == "MOSTLY_Q8_0"
    assert summary["tensors"] > 0 and summary["has_chat_template"]
    assert summary["size_bytes"] == out.stat().st_size
    assert "next-token agreement with the source model: 100.0%" in result.stdout
    assert [p.name for p in out.parent.iterdir()] == [out.name]  # no partial file left behind


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["gguf", "--weights", "/nonexistent", "--out", "x.gguf"], "no such file: /nonexistent"),
        (["gguf", "--weights", ".", "--out", "x.gguf", "--quant", "q4_k_m"], "invalid choice: 'q4_k_m'"),
        (["onnx"], "invalid choice: 'onnx'"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(argv: list[str], expected: str) -> None:
    result = _cli(*argv)
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1 and expected in result.stderr
