"""SFT warm start: data selection, the assistant-only loss mask, a real run on a tiny model, CLI errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from contracts import Trajectory, TrajectoryError
from rollouts.jsonl import write_jsonl
from train.art_adapter import to_sft_trajectory
from train.data import (
    SFTDataError,
    conversation_key,
    load_sft_trajectories,
    mix_replay,
    select_coreset,
)

REPO = Path(__file__).resolve().parents[1]
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_price",
            "description": "Electricity spot price for a zone",
            "parameters": {"type": "object", "properties": {"zone": {"type": "string"}}, "required": ["zone"]},
        },
    }
]


def make_traj(
    zone: str, price: float, *, reward: float | None = 1.0, sample: int = 0, infra: bool = False
) -> Trajectory:
    """A scored rollout record: question, one tool call, the tool's output, the answer."""
    return Trajectory(
        id=f"energy:{zone}:s{sample}",
        env="energy",
        task_id=zone,
        task={"question": f"What is the price in {zone}?"},
        tools=TOOLS,
        messages=[
            {"role": "system", "content": "You answer energy questions with tools."},
            {"role": "user", "content": f"What is the spot price in zone {zone}?"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "get_price", "arguments": json.dumps({"zone": zone})},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "call_1", "content": json.dumps({"zone": zone, "TOOLOUT": price})},
            {"role": "assistant", "content": f"The spot price in {zone} is {price} EUR/MWh."},
        ],
        reward=reward,
        error=TrajectoryError(kind="infra", message="server down") if infra else None,
        sample=sample,
    )


def dataset() -> list[Trajectory]:
    good = [make_traj(zone, price) for zone, price in [("DE", 81.5), ("FR", 64.0), ("NL", 77.25), ("ES", 59.9)]]
    return [
        *good,
        make_traj("DE", 81.5, sample=1, reward=0.9),  # the same conversation as good[0]: counted once
        make_traj("PL", 99.0, reward=0.2),  # below the threshold
        make_traj("IT", 70.0, reward=None),  # unscored
        make_traj("AT", 66.0, reward=1.0, infra=True),  # infra failure: never trained on
    ]


# --------------------------------------------------------------------------- data selection


def test_filter_dedupe_and_infra(tmp_path: Path) -> None:
    path = tmp_path / "rollouts.jsonl"
    write_jsonl(path, dataset())
    kept = load_sft_trajectories(path, min_reward=0.8, env="energy")
    assert sorted(traj.task_id for traj in kept) == ["DE", "ES", "FR", "NL"]
    assert next(traj for traj in kept if traj.task_id == "DE").reward == 1.0  # the higher reward wins
    no_threshold = load_sft_trajectories(path, min_reward=None)
    assert "AT" not in {traj.task_id for traj in no_threshold}  # infra failures even without a threshold
    assert {"PL", "IT"} <= {traj.task_id for traj in no_threshold}
    with pytest.raises(SFTDataError, match="none of 8"):
        load_sft_trajectories(path, min_reward=1.5)
    with pytest.raises(SFTDataError, match="no trajectories of env 'other'"):
        load_sft_trajectories(path, min_reward=0.8, env="other")
    with pytest.raises(FileNotFoundError):
        load_sft_trajectories(tmp_path / "missing.jsonl", min_reward=0.8)


def test_coresets_pick_the_requested_examples() -> None:
    trajs = [make_traj(zone, 50.0 + index) for index, zone in enumerate(["DE", "FR", "NL", "ES", "PL", "IT"])]
    near_copy = make_traj("DE", 50.5)  # another price, same question and call as DE: diversity skips it
    pool = [*trajs, near_copy]
    assert len(select_coreset(pool, 3, "random", seed=1)) == 3
    assert select_coreset(pool, 3, "random", seed=1) == select_coreset(pool, 3, "random", seed=1)
    fake_losses = {"FR": 5.0, "ES": 4.0}
    by_loss = select_coreset(
        pool, 2, "loss_topk", losses=lambda items: [fake_losses.get(t.task_id, 1.0) for t in items]
    )
    assert [traj.task_id for traj in by_loss] == ["FR", "ES"]
    diverse = select_coreset(pool, 6, "diversity")
    assert len(diverse) == 6 and len({traj.task_id for traj in diverse}) == 6  # not both DE copies
    hybrid = select_coreset(pool, 4, "hybrid", losses=lambda items: [fake_losses.get(t.task_id, 1.0) for t in items])
    assert len(hybrid) == 4 and {"FR", "ES"} <= {traj.task_id for traj in hybrid}
    assert select_coreset(pool[:2], 5, "diversity") == pool[:2]


def test_replay_mix_ratio() -> None:
    new = [make_traj(zone, 60.0) for zone in ["DE", "FR", "NL", "ES", "PL", "IT"]]
    old = [make_traj(f"Z{index}", 10.0) for index in range(10)] + [new[0]]
    mixed, replayed = mix_replay(new, old, 0.25, seed=3)
    assert replayed == 2 and len(mixed) == 8  # 2 of 8 = 25 %
    assert len({conversation_key(traj) for traj in mixed}) == 8  # the copy of new[0] is not replayed
    assert mix_replay(new, old, 0.0) == (new, 0)
    with pytest.raises(SFTDataError):
        mix_replay(new, old, 1.0)


# --------------------------------------------------------------------------- loss mask


def test_only_assistant_tokens_carry_loss(tiny_model_dir: Path) -> None:
    from train.backends.sft_tokenize import tokenize_for_sft
    from train.models import load_tokenizer

    tokenizer = load_tokenizer(tiny_model_dir)
    input_ids, labels = tokenize_for_sft(tokenizer, to_sft_trajectory(make_traj("DE", 81.5)))
    trained = tokenizer.decode([token for token in labels if token != -100])
    assert trained == (
        '<tool_call>\n{"name": "get_price", "arguments": {"zone": "DE"}}\n</tool_call><|im_end|>'
        "The spot price in DE is 81.5 EUR/MWh.<|im_end|>"
    )
    untrained = tokenizer.decode([token for token, label in zip(input_ids, labels, strict=True) if label == -100])
    for text in ("TOOLOUT", "What is the spot price", "get_price", "You answer energy questions"):
        assert text in untrained  # tool output, question, tool schema and system prompt: no loss

    # The fallback for templates without {% generation %} blocks masks tool output and prompt too.
    from art.utils.model_config import get_instruction_response_parts

    markers = get_instruction_response_parts(str(tiny_model_dir), tokenizer)
    _, fallback = tokenize_for_sft(tokenizer, to_sft_trajectory(make_traj("DE", 81.5)), markers=markers)
    trained_fallback = tokenizer.decode([token for token in fallback if token != -100])
    assert "TOOLOUT" not in trained_fallback and "What is" not in trained_fallback
    assert "The spot price in DE is 81.5" in trained_fallback and '"zone": "DE"' in trained_fallback


# --------------------------------------------------------------------------- a real run


@pytest.mark.slow
async def test_sft_run_lowers_loss(tiny_model_dir: Path, tmp_path: Path) -> None:
    from train.sft import SFTConfig, run_sft

    path = tmp_path / "rollouts.jsonl"
    write_jsonl(path, dataset())
    config = SFTConfig(
        trajectories=path,
        env="energy",
        min_reward=0.8,
        base_model=str(tiny_model_dir),
        art_path=tmp_path / ".art",
        epochs=4,
        batch_size=2,
        lr=5e-3,
        lr_schedule="constant",
    )
    result = await run_sft(config)
    assert result.num_examples == 4 and result.step == 1
    assert len(result.losses) == 8  # 4 epochs x 2 batches
    first, last = sum(result.losses[:2]) / 2, sum(result.losses[-2:]) / 2
    assert last < first - 0.1, result.losses
    assert (result.adapter_dir / "adapter_model.safetensors").is_file()
    assert result.adapter_dir == tmp_path / ".art" / "energy" / "models" / "sft" / "checkpoints" / "0001"
    lines = result.metrics_path.read_text().splitlines()
    assert len(lines) == 8 and json.loads(lines[-1])["epoch"] == 4
    assert result.plot_path is not None and result.plot_path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # A second run continues the same LoRA as the next checkpoint (here with the prompt detached).
    again = await run_sft(config.model_copy(update={"epochs": 1, "detach_prompt": True}))
    assert again.step == 2 and again.adapter_dir.name == "0002"
    assert again.losses[0] < result.losses[0]


# --------------------------------------------------------------------------- CLI errors


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "train.sft", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**__import__("os").environ, "PYTHONPATH": str(REPO)},
        timeout=300,
    )


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("missing", "no such file"),
        ("empty", "none of 8 trajectories is usable"),
        ("bad_model", "is not a local model folder"),
        ("bad_flag", "--epochs"),
    ],
)
def test_cli_bad_input_is_one_line_exit_2(case: str, expected: str, tmp_path: Path, tiny_model_dir: Path) -> None:
    path = tmp_path / "rollouts.jsonl"
    write_jsonl(path, dataset())
    args = {
        "missing": ["--trajectories", str(tmp_path / "nope.jsonl"), "--base-model", str(tiny_model_dir)],
        "empty": ["--trajectories", str(path), "--min-reward", "1.5", "--base-model", str(tiny_model_dir)],
        "bad_model": ["--trajectories", str(path), "--base-model", str(tmp_path / "no-model")],
        "bad_flag": ["--trajectories", str(path), "--epochs", "0"],
    }[case]
    done = run_cli(*args, cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and expected in lines[0], done.stderr
