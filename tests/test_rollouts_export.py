"""Exporters: each format round-trips; infra failures never leave; the CLI's bad input is one line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from rollouts.export import (
    export_file,
    export_messages,
    parse_interleaved,
    sharegpt_to_messages,
    to_art_trajectory,
    to_interleaved,
    to_messages,
    to_sharegpt,
)
from rollouts.jsonl import JsonlAppender, read_jsonl
from rollouts.record import Trajectory, TrajectoryError

TOOLS = [
    {
        "type": "function",
        "function": {"name": "get_price", "description": "price", "parameters": {"type": "object"}},
    },
    {"type": "function", "function": {"name": "get_load", "description": "load", "parameters": {"type": "object"}}},
]


def _call(call_id: str, name: str, args: dict[str, Any]) -> dict[str, Any]:
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": json.dumps(args)}}


def make_traj(tid: str = "t1", *, reward: float | None = 1.0, error: TrajectoryError | None = None) -> Trajectory:
    """A two-step episode: parallel calls with thinking, then one call, then the answer."""
    messages = [
        {"role": "system", "content": "You are an energy analyst."},
        {"role": "user", "content": "Price in DE at 3 and load in FR, then the ratio?"},
        {
            "role": "assistant",
            "content": "",
            "reasoning_content": "I need both numbers.",
            "tool_calls": [
                _call("c1", "get_price", {"zone": "DE", "hour": 3}),
                _call("c2", "get_load", {"zone": "FR"}),
            ],
        },
        {"role": "tool", "tool_call_id": "c1", "content": '{"eur_mwh": 42.5}'},
        {"role": "tool", "tool_call_id": "c2", "content": '{"mw": 50000}'},
        {"role": "assistant", "content": "", "tool_calls": [_call("c3", "get_price", {"zone": "FR", "hour": 3})]},
        {"role": "tool", "tool_call_id": "c3", "content": '{"eur_mwh": 40.0}'},
        {"role": "assistant", "content": "The ratio is 1.0625.", "reasoning_content": "42.5 / 40 = 1.0625"},
    ]
    return Trajectory(
        id=f"energy:{tid}:s0",
        env="energy",
        task_id=tid,
        task={"id": tid, "question": messages[1]["content"], "answer": 1.0625},
        model="Qwen3-8B",
        tools=TOOLS,
        messages=messages,
        reward=reward,
        error=error,
        verdict={"success": reward == 1.0, "score": reward or 0.0, "reason": ""} if error is None else None,
        metrics={"turns": 3, "tool_calls": 3, "tool_outcomes": [], "finish_reasons": ["tool_calls"] * 2 + ["stop"]},
    )


def comparable(messages: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    """Messages without call ids (sharegpt has none) and with arguments parsed (spacing is not content)."""
    out = []
    for m in messages:
        calls = tuple(
            (c["function"]["name"], json.dumps(json.loads(c["function"]["arguments"]), sort_keys=True))
            for c in m.get("tool_calls") or []
        )
        out.append((m["role"], m.get("content") or "", calls))
    return out


def test_sharegpt_layout_matches_llama_factory() -> None:
    record = to_sharegpt(make_traj())
    assert record["system"] == "You are an energy analyst."
    assert [turn["from"] for turn in record["conversations"]] == [
        "human",
        "function_call",
        "observation",
        "function_call",
        "observation",
        "gpt",
    ]
    # LLaMA-Factory: tools as a JSON string; odd positions human/observation, even gpt/function_call.
    assert isinstance(record["tools"], str) and json.loads(record["tools"])[0]["name"] == "get_price"
    parallel = record["conversations"][1]["value"]
    assert parallel.startswith("<think>\nI need both numbers.\n</think>\n\n")
    assert json.loads(parallel.split("</think>\n\n", 1)[1]) == [
        {"name": "get_price", "arguments": {"zone": "DE", "hour": 3}},
        {"name": "get_load", "arguments": {"zone": "FR"}},
    ]
    assert json.loads(record["conversations"][3]["value"]) == {
        "name": "get_price",
        "arguments": {"zone": "FR", "hour": 3},
    }
    assert record["conversations"][2]["value"] == '{"eur_mwh": 42.5}\n</tool_response>\n<tool_response>\n{"mw": 50000}'


def test_sharegpt_back_to_messages_equals_the_original_conversation() -> None:
    traj = make_traj()
    back = sharegpt_to_messages(json.loads(json.dumps(to_sharegpt(traj))))
    assert comparable(back) == comparable(export_messages(traj))
    # and the tool results answer the calls they belong to
    ids = [c["id"] for c in back[2]["tool_calls"]]
    assert [m["tool_call_id"] for m in back[3:5]] == ids


def test_messages_format_round_trips() -> None:
    traj = make_traj()
    record = json.loads(json.dumps(to_messages(traj)))
    assert record["tools"] == TOOLS and record["reward"] == 1.0
    assert record["messages"][2]["content"] == "<think>\nI need both numbers.\n</think>\n\n"
    assert all("reasoning_content" not in m for m in record["messages"])
    restored = Trajectory(**{**traj.model_dump(), "messages": record["messages"]})
    assert comparable(export_messages(restored)) == comparable(export_messages(traj))
    no_think = to_messages(traj, think=False)["messages"]
    assert no_think[-1]["content"] == "The ratio is 1.0625." and no_think[2]["content"] == ""


def test_interleaved_text_round_trips() -> None:
    traj = make_traj()
    record = to_interleaved(traj)
    assert record["prompt"] == "Price in DE at 3 and load in FR, then the ratio?"
    segments = parse_interleaved(record["text"])
    assert [kind for kind, _ in segments] == [
        "think",
        "call_tool",
        "call_tool",
        "tool_output",
        "tool_output",
        "call_tool",
        "tool_output",
        "think",
        "answer",
    ]
    calls = [json.loads(body) for kind, body in segments if kind == "call_tool"]
    expected = [
        {"name": c["function"]["name"], "arguments": json.loads(c["function"]["arguments"])}
        for m in traj.messages
        for c in m.get("tool_calls") or []
    ]
    assert calls == expected
    outputs = [body for kind, body in segments if kind == "tool_output"]
    assert outputs == [m["content"] for m in traj.messages if m["role"] == "tool"]
    assert segments[-1] == ("answer", "The ratio is 1.0625.")
    assert segments[0] == ("think", "I need both numbers.")


def test_art_trajectory_with_logprobs_has_trainable_choices() -> None:
    traj = make_traj()
    traj.logprobs = [
        {
            "message_index": 2,
            "token_ids": [11, 12, 13],
            "logprobs": [-0.1, -0.2, -0.3],
            "tokens": ["<think>", "a", "b"],
        },
        None,
        {"message_index": 7, "token_ids": [21, 22], "logprobs": [-0.5, -0.6], "tokens": ["The", " ratio"]},
    ]
    art_traj = to_art_trajectory(traj)
    from openai.types.chat.chat_completion import Choice

    kinds = [type(item).__name__ for item in art_traj.messages_and_choices]
    assert kinds == ["dict", "dict", "Choice", "dict", "dict", "dict", "dict", "Choice"]
    first = art_traj.messages_and_choices[2]
    assert isinstance(first, Choice) and first.finish_reason == "tool_calls"
    # ART reads the sampled ids back from "token_id:N" and the logprobs as they are.
    assert [int(t.token.split(":")[1]) for t in first.logprobs.content] == [11, 12, 13]
    assert [t.logprob for t in first.logprobs.content] == [-0.1, -0.2, -0.3]
    assert bytes(first.logprobs.content[0].bytes).decode() == "<think>"
    assert first.message.tool_calls[1].function.name == "get_load"
    assert art_traj.reward == 1.0 and art_traj.tools == TOOLS
    assert art_traj.metadata["id"] == traj.id and "tool_outcomes" not in art_traj.metrics
    # The conversation ART renders is the exported one (thinking inline).
    assert comparable(art_traj.messages()) == comparable(export_messages(traj))


def test_export_file_drops_infra_failures_and_applies_min_reward(tmp_path: Path) -> None:
    src = tmp_path / "traj.jsonl"
    with JsonlAppender(src) as out:
        out.write(make_traj("good", reward=1.0))
        out.write(make_traj("half", reward=0.5))
        out.write(make_traj("infra", reward=None, error=TrajectoryError(kind="infra", message="env: died")))
        out.write(make_traj("model", reward=0.0, error=TrajectoryError(kind="model", message="max_turns")))
    for fmt in ("sharegpt", "messages", "interleaved"):
        dst = tmp_path / f"{fmt}.jsonl"
        written, read = export_file(src, dst, fmt=fmt)
        assert (written, read) == (3, 4)
        assert "energy:infra:s0" not in {r["id"] for r in read_jsonl(dst)}
    written, _ = export_file(src, tmp_path / "best.jsonl", fmt="sharegpt", min_reward=0.6)
    assert [r["id"] for r in read_jsonl(tmp_path / "best.jsonl")] == ["energy:good:s0"] and written == 1


def run_export(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "rollouts.export", *args], capture_output=True, text=True, timeout=60, check=False
    )


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--format", "alpaca", "a.jsonl", "b.jsonl"], "invalid choice"),
        (["--min-reward", "high", "a.jsonl", "b.jsonl"], "invalid float value"),
        (["missing.jsonl", "b.jsonl"], "no such file"),
        (["BAD", "b.jsonl"], "not a JSON line"),
        (["NOTTRAJ", "b.jsonl"], "not a trajectory"),
    ],
)
def test_export_cli_bad_input_is_one_line_and_exit_2(tmp_path: Path, args: list[str], needle: str) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": 1}\nnot json\n{"id": 2}\n')
    nottraj = tmp_path / "nottraj.jsonl"
    nottraj.write_text('{"question": "hi"}\n')
    args = [str(bad) if a == "BAD" else str(nottraj) if a == "NOTTRAJ" else a for a in args]
    args = [str(tmp_path / a) if a.endswith(".jsonl") and "/" not in a else a for a in args]
    proc = run_export(*args)
    assert proc.returncode == 2, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and needle in proc.stderr
    assert "Traceback" not in proc.stderr


def test_export_cli_writes_the_file(tmp_path: Path) -> None:
    src = tmp_path / "t.jsonl"
    with JsonlAppender(src) as out:
        out.write(make_traj())
    proc = run_export("--format", "messages", str(src), str(tmp_path / "m.jsonl"))
    assert proc.returncode == 0, proc.stderr
    assert "exported 1 of 1" in proc.stdout
    assert read_jsonl(tmp_path / "m.jsonl")[0]["messages"][1]["role"] == "user"
