"""A conversation of several user turns (a BFCL multi-turn entry, a simulated user) survives every
consumer of the record: the exports, the ART conversion, SFT's tokenisation and GRPO's."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from contracts import Task, Trajectory, TurnLogprobs
from rollouts.formats.base import FORMATS
from rollouts.formats.files import convert

QUESTIONS = ("What is the price in DE?", "And in FR?")
ANSWERS = ("It is 81.", "It is 74.")


def call(call_id: str, zone: str) -> dict[str, Any]:
    arguments = json.dumps({"zone": zone})
    return {"id": call_id, "type": "function", "function": {"name": "get_price", "arguments": arguments}}


def two_turns(logprobs: list[TurnLogprobs | None] | None = None) -> Trajectory:
    messages = [
        {"role": "system", "content": "You answer energy questions with tools."},
        {"role": "user", "content": QUESTIONS[0]},
        {"role": "assistant", "content": None, "tool_calls": [call("c1", "DE")]},
        {"role": "tool", "tool_call_id": "c1", "content": "81"},
        {"role": "assistant", "content": ANSWERS[0]},
        {"role": "user", "content": QUESTIONS[1]},
        {"role": "assistant", "content": None, "tool_calls": [call("c2", "FR")]},
        {"role": "tool", "tool_call_id": "c2", "content": "74"},
        {"role": "assistant", "content": ANSWERS[1]},
    ]
    tool = {
        "type": "function",
        "function": {
            "name": "get_price",
            "description": "Spot price of a zone.",
            "parameters": {"type": "object", "properties": {"zone": {"type": "string"}}, "required": ["zone"]},
        },
    }
    return Trajectory(
        id="t:1:s0",
        env="t",
        task_id="1",
        task=Task(id="1", question=QUESTIONS[0], kind="multi_turn"),
        tools=[tool],
        messages=messages,
        answer=ANSWERS[1],
        stop_reason="answer",
        reward=1.0,
        metrics={"user_turns": 2},
        logprobs=logprobs,
    )


@pytest.mark.parametrize("fmt", FORMATS)
def test_every_export_keeps_both_user_turns_in_order(fmt: str) -> None:
    record, notes = convert(two_turns(), fmt)  # type: ignore[arg-type]
    text = json.dumps(record, ensure_ascii=False)
    positions = [text.index(part) for part in (QUESTIONS[0], ANSWERS[0], QUESTIONS[1], ANSWERS[1])]
    assert positions == sorted(positions), (fmt, text)
    assert text.count("get_price") >= 2 and not any("dropped" in note for note in notes)


def test_sft_trains_on_both_answers_and_on_no_user_text(tiny_model_dir: Path) -> None:
    from train.art_adapter import to_sft_trajectory
    from train.backends.sft_tokenize import tokenize_for_sft
    from train.models import load_tokenizer

    tokenizer = load_tokenizer(tiny_model_dir)
    input_ids, labels = tokenize_for_sft(tokenizer, to_sft_trajectory(two_turns()))
    trained = tokenizer.decode([token for token in labels if token != -100])
    assert all(answer in trained for answer in ANSWERS) and trained.count("get_price") == 2
    assert not any(question in trained for question in QUESTIONS)
    assert all(question in tokenizer.decode(input_ids) for question in QUESTIONS)


def test_grpo_trains_each_sampled_turn_of_both_user_turns(tiny_model_dir: Path) -> None:
    """The recorded token ids of the two answers (one per user turn) are what GRPO trains."""
    import art
    from art.preprocessing.tokenize import tokenize_trajectory_groups

    from judges.art_trajectory import to_art_trajectory
    from train.backends.compat import choices_as_sampled
    from train.models import load_tokenizer

    tokenizer = load_tokenizer(tiny_model_dir)

    def sampled(index: int, text: str) -> TurnLogprobs:
        ids = tokenizer.encode(text + "<|im_end|>", add_special_tokens=False)
        return TurnLogprobs(message_index=index, token_ids=ids, logprobs=[-0.5] * len(ids), tokens=[""] * len(ids))

    traj = two_turns([None, sampled(4, ANSWERS[0]), None, sampled(8, ANSWERS[1])])
    art_traj = to_art_trajectory(traj)
    assert [m["content"] for m in art_traj.messages() if m["role"] == "user"] == list(QUESTIONS)
    group = art.TrajectoryGroup([art_traj, to_art_trajectory(traj.model_copy(update={"reward": 0.0}))])
    (result, *_) = tokenize_trajectory_groups(tokenizer, choices_as_sampled([group]), False, True)
    trained = tokenizer.decode([t for t, m in zip(result.token_ids, result.assistant_mask, strict=True) if m])
    assert trained == f"{ANSWERS[0]}<|im_end|>{ANSWERS[1]}<|im_end|>"
