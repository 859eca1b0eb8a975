"""train.merge: a real LoRA (peft, non-zero B) merged into a real tiny Llama, checked independently of
the merge's own verification, plus the CLI's bad-input and failed-verification paths."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from train.merge import MERGE_REPORT_FILE, MergeInputError, merge_lora, resolve_adapter_dir
from train.models import build_tiny_model, chat_template, load_tokenizer

REPO = Path(__file__).resolve().parents[1]
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def make_adapter(base: Path, out: Path, *, seed: int = 0, scale: float = 0.05) -> Path:
    """A LoRA on every linear layer whose B is random (peft initialises B to zero, a no-op adapter)."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    peft_model = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, target_modules=TARGETS, task_type="CAUSAL_LM"))
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_B" in name:
                param.copy_(torch.randn(param.shape, generator=generator) * scale)
    peft_model.save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("merge")


@pytest.fixture(scope="module")
def tiny_base(work: Path) -> Path:
    return build_tiny_model(work / "tiny")


@pytest.fixture(scope="module")
def adapter(tiny_base: Path, work: Path) -> Path:
    return make_adapter(tiny_base, work / "adapter")


def probe_ids(base: Path) -> torch.Tensor:
    tokenizer = load_tokenizer(base)
    messages = [
        {"role": "user", "content": "How much solar power did Spain produce yesterday?"},
        {"role": "assistant", "content": "Let me check that for you."},
    ]
    return tokenizer.apply_chat_template(messages, tokenize=True, return_tensors="pt", return_dict=True)["input_ids"]


def logits(model: torch.nn.Module, ids: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(ids).logits.float()


def run_merge(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "train.merge", *map(str, args)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def error_line(result: subprocess.CompletedProcess[str]) -> str:
    lines = [line for line in result.stderr.splitlines() if not line.startswith("merge [")]
    assert len(lines) == 1, result.stderr  # one clear line, no traceback
    return lines[0]


# --------------------------------------------------------------------------- merges that work


def test_merge_fp32_matches_base_plus_adapter(tiny_base: Path, adapter: Path, work: Path) -> None:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    out = work / "merged-fp32"
    out.mkdir()
    (out / "stale.txt").write_text("from an earlier run")  # replaced because of force=True
    report = merge_lora(tiny_base, adapter, out, "fp32", force=True, progress=False)

    assert report.out == out.resolve() and report.dtype == "fp32"
    assert report.merged_modules == 2 * len(TARGETS)  # every targeted linear of both layers
    assert report.max_abs_diff <= 1e-3 and report.merge_max_abs_diff <= 1e-3
    assert report.adapter_effect > 0.05 and report.top1_agreement == 1.0
    files = {path.name for path in out.iterdir()}
    assert {"model.safetensors", "config.json", "tokenizer.json", "chat_template.jinja", MERGE_REPORT_FILE} <= files
    assert "stale.txt" not in files and "adapter_config.json" not in files
    assert (out / "chat_template.jinja").read_text() == chat_template()
    assert json.loads((out / MERGE_REPORT_FILE).read_text())["max_abs_diff"] == report.max_abs_diff
    assert not list(work.glob(".merged-fp32.tmp-*"))

    # Checked independently of the merge's own probe: a plain transformers load of the folder.
    ids = probe_ids(tiny_base)
    merged = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32).eval()
    base = AutoModelForCausalLM.from_pretrained(tiny_base, dtype=torch.float32).eval()
    base_logits = logits(base, ids)
    with_adapter = logits(PeftModel.from_pretrained(base, adapter).eval(), ids)
    merged_logits = logits(merged, ids)
    assert (merged_logits - with_adapter).abs().max() < 1e-4
    assert (merged_logits - base_logits).abs().max() > 0.05  # the merge really changed the weights
    assert not any("lora" in name for name, _ in merged.named_parameters())


def test_merge_bf16_writes_bfloat16_weights(tiny_base: Path, adapter: Path, work: Path) -> None:
    from safetensors import safe_open

    out = work / "merged-bf16"
    report = merge_lora(tiny_base, adapter, out, "bf16", progress=False)
    assert report.merge_max_abs_diff <= 1e-3  # the merge itself is exact; only the cast rounds
    assert 0 < report.max_abs_diff <= report.tolerance
    assert json.loads((out / "config.json").read_text())["dtype"] == "bfloat16"
    with safe_open(str(out / "model.safetensors"), framework="pt") as handle:
        dtypes = {handle.get_slice(name).get_dtype() for name in handle.keys()}
    assert dtypes == {"BF16"}


def test_art_model_folder_resolves_to_latest_checkpoint(adapter: Path, tmp_path: Path) -> None:
    for step in ("0002", "0010", "0009"):
        shutil.copytree(adapter, tmp_path / "checkpoints" / step)
    (tmp_path / "checkpoints" / "0011").mkdir()  # an unfinished step without adapter files
    assert resolve_adapter_dir(tmp_path) == tmp_path / "checkpoints" / "0010"
    assert resolve_adapter_dir(adapter) == adapter
    with pytest.raises(MergeInputError, match="not a PEFT adapter"):
        resolve_adapter_dir(tmp_path / "checkpoints" / "0011")


def test_default_base_is_the_adapters_recorded_base(adapter: Path, tiny_base: Path, work: Path) -> None:
    out = work / "merged-default-base"
    result = run_merge("--adapter", adapter, "--out-dir", out)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(out.resolve())
    assert "merge [" in result.stderr and "done:" in result.stderr  # progress lines go to stderr
    report = json.loads((out / MERGE_REPORT_FILE).read_text())
    assert report["base_model"] == str(tiny_base.resolve()) and report["dtype"] == "fp32"


# --------------------------------------------------------------------------- bad input: one line, exit 2


def test_missing_adapter_dir(tiny_base: Path, tmp_path: Path) -> None:
    result = run_merge("--base-model", tiny_base, "--adapter", tmp_path / "nope", "--out-dir", tmp_path / "out")
    assert result.returncode == 2
    assert "adapter folder not found" in error_line(result)
    assert not (tmp_path / "out").exists()


def test_folder_without_adapter(tiny_base: Path, tmp_path: Path) -> None:
    result = run_merge("--base-model", tiny_base, "--adapter", tiny_base, "--out-dir", tmp_path / "out")
    assert result.returncode == 2
    assert "not a PEFT adapter" in error_line(result)


def test_adapter_for_other_architecture(adapter: Path, work: Path, tmp_path: Path) -> None:
    other = build_tiny_model(work / "tiny-hidden32", hidden=32)
    result = run_merge("--base-model", other, "--adapter", adapter, "--out-dir", tmp_path / "out")
    assert result.returncode == 2
    assert "different architecture" in error_line(result) and "hidden_size" in result.stderr

    # Past the recorded-base check, the shapes themselves still refuse it.
    forced = run_merge(
        "--base-model", other, "--adapter", adapter, "--out-dir", tmp_path / "out", "--allow-base-mismatch",
        "--no-progress",
    )  # fmt: skip
    assert forced.returncode == 2
    assert "does not fit" in error_line(forced)
    assert not (tmp_path / "out").exists()


def test_adapter_for_same_shapes_other_weights(adapter: Path, work: Path, tmp_path: Path) -> None:
    other = build_tiny_model(work / "tiny-seed1", seed=1)
    result = run_merge("--base-model", other, "--adapter", adapter, "--out-dir", tmp_path / "out")
    assert result.returncode == 2
    assert "weights differ" in error_line(result)


def test_adapter_recording_another_hub_model(tiny_base: Path, adapter: Path, tmp_path: Path) -> None:
    renamed = shutil.copytree(adapter, tmp_path / "adapter")
    config = json.loads((renamed / "adapter_config.json").read_text())
    config["base_model_name_or_path"] = "SomeOrg/Other-Model-7B"
    (renamed / "adapter_config.json").write_text(json.dumps(config))
    result = run_merge("--base-model", tiny_base, "--adapter", renamed, "--out-dir", tmp_path / "out")
    assert result.returncode == 2
    assert "SomeOrg/Other-Model-7B" in error_line(result)
    # Without --base-model there is no local folder to merge into.
    result = run_merge("--adapter", renamed, "--out-dir", tmp_path / "out")
    assert result.returncode == 2
    assert "pass --base-model" in error_line(result)


def test_out_dir_not_empty_or_an_input(tiny_base: Path, adapter: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    result = run_merge("--base-model", tiny_base, "--adapter", adapter, "--out-dir", out)
    assert result.returncode == 2
    assert "not empty" in error_line(result) and "--force" in result.stderr
    assert (out / "keep.txt").read_text() == "mine"

    result = run_merge("--base-model", tiny_base, "--adapter", adapter, "--out-dir", tiny_base, "--force")
    assert result.returncode == 2
    assert "would overwrite the input" in error_line(result)


def test_bad_flags(tmp_path: Path) -> None:
    result = run_merge("--adapter", tmp_path, "--out-dir", tmp_path / "o", "--dtype", "fp8")
    assert result.returncode == 2
    assert "invalid choice" in error_line(result)
    result = run_merge("--out-dir", tmp_path / "o")
    assert result.returncode == 2
    assert "--adapter" in error_line(result)
    assert run_merge("--help").returncode == 0


# --------------------------------------------------------------------------- failed verification: exit 1


def test_failed_verification_exits_1_and_publishes_nothing(tiny_base: Path, adapter: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    # bfloat16 rounding always moves the logits a little, so a zero tolerance must fail.
    result = run_merge(
        "--base-model", tiny_base, "--adapter", adapter, "--out-dir", out, "--dtype", "bf16", "--tolerance", "0"
    )
    assert result.returncode == 1
    line = error_line(result)
    assert "max abs diff" in line and "tolerance 0" in line
    assert not out.exists() and not list(tmp_path.glob(".out.tmp-*"))
