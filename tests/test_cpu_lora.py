"""serve/cpu_lora.py: the grouped LoRA ops give what vLLM's own CPU ops give, and vLLM finds the plugin."""

from __future__ import annotations

from importlib.metadata import entry_points

import pytest

torch = pytest.importorskip("torch")
torch_ops = pytest.importorskip("vllm.lora.ops.torch_ops")

from serve import cpu_lora  # noqa: E402


def _case(tokens: int, indices: list[int], out: int = 24, rank: int = 4, hidden: int = 16):
    rng = torch.Generator().manual_seed(tokens)
    x = torch.randn(tokens, hidden, generator=rng)
    a = torch.randn(3, 1, rank, hidden, generator=rng)  # vLLM's stacked [max_loras, 1, out, in]
    b = torch.randn(3, 1, out, rank, generator=rng)
    return x, a, b, torch.tensor(indices)


@pytest.mark.parametrize("indices", [[1] * 6, [0, 2, 2, 0, 1, 2]])
def test_shrink_and_expand_match_vllm(indices: list[int]) -> None:
    x, a, b, idx = _case(len(indices), indices)
    ours, theirs = torch.zeros(len(indices), 4), torch.zeros(len(indices), 4)
    cpu_lora.bgmv_shrink(x, a, ours, idx, 0.5)
    torch_ops.bgmv_shrink(x, a, theirs, idx, 0.5)
    assert torch.allclose(ours, theirs, atol=1e-5)

    base = torch.randn(len(indices), 40)
    ours_y, theirs_y = base.clone(), base.clone()
    cpu_lora.bgmv_expand_slice(ours, b, ours_y, idx, 8, 24, True)
    torch_ops.bgmv_expand_slice(theirs, b, theirs_y, idx, 8, 24, True)
    assert torch.allclose(ours_y, theirs_y, atol=1e-5)
    ours_y, theirs_y = base[:, :24].clone(), base[:, :24].clone()
    cpu_lora.bgmv_expand(ours, b, ours_y, idx, False)
    torch_ops.bgmv_expand(theirs, b, theirs_y, idx, False)
    assert torch.allclose(ours_y, theirs_y, atol=1e-5)


def test_prefill_ops_expand_per_sequence_indices() -> None:
    """sgmv_*: one adapter index per sequence, repeated over its tokens."""
    x, a, b, _ = _case(7, [0] * 7)
    seq_lens, per_seq = torch.tensor([3, 4]), torch.tensor([2, 0])
    args = (torch.tensor([0, 3]), seq_lens, per_seq, 2, 4, 7)
    ours, theirs = torch.zeros(7, 4), torch.zeros(7, 4)
    cpu_lora.sgmv_shrink(x, a, ours, *args, 1.0)
    torch_ops.sgmv_shrink(x, a, theirs, *args, 1.0)
    assert torch.allclose(ours, theirs, atol=1e-5)
    ours_y, theirs_y = torch.zeros(7, 30), torch.zeros(7, 30)
    cpu_lora.sgmv_expand_slice(ours, b, ours_y, *args, 6, 24, False)
    torch_ops.sgmv_expand_slice(theirs, b, theirs_y, *args, 6, 24, False)
    assert torch.allclose(ours_y, theirs_y, atol=1e-5)


def test_tokens_without_adapter_get_no_delta() -> None:
    x, a, _, _ = _case(4, [0] * 4)
    out = torch.full((4, 4), 9.0)
    cpu_lora.bgmv_shrink(x, a, out, torch.tensor([-1, 1, -1, 1]), 1.0)
    assert torch.equal(out[0], torch.zeros(4)) and torch.equal(out[2], torch.zeros(4))
    assert torch.allclose(out[1], x[1] @ a[1, 0].T, atol=1e-5)


def test_vllm_loads_the_plugin_into_its_cpu_wrapper() -> None:
    names = {ep.name: ep.value for ep in entry_points(group="vllm.general_plugins")}
    assert names.get("mcpgym_cpu_lora") == "serve.cpu_lora:register"
    from vllm.lora.punica_wrapper import punica_cpu
    from vllm.plugins import load_plugins_by_group

    load_plugins_by_group("vllm.general_plugins")["mcpgym_cpu_lora"]()
    assert punica_cpu.bgmv_shrink is cpu_lora.bgmv_shrink
    assert punica_cpu.sgmv_expand_slice is cpu_lora.sgmv_expand_slice


def test_bench_lora_ops_writes_its_table(tmp_path) -> None:
    import json
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "scripts" / "bench_lora_ops.py"
    out = tmp_path / "lora_ops.json"
    run = subprocess.run(
        [sys.executable, str(script), "--tokens", "3,17", "--repeats", "1", "--threads", "1", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr
    rows = json.loads(out.read_text())["rows"]
    assert [row["tokens"] for row in rows] == [3, 17]
    assert all(row["vllm_ms"] > 0 and row["grouped_ms"] > 0 for row in rows)
    assert "speedup" in run.stdout
    bad = subprocess.run([sys.executable, str(script), "--tokens", "x"], capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and "--tokens" in bad.stderr
