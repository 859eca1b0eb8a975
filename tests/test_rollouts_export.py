"""Exporters: each consumer's shape (the consumers' own loaders run in scripts/check_exports.sh),
what a format cannot hold is counted, infra failures never leave, the CLI's bad input is one line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from contracts import Trajectory, TrajectoryError, TurnLogprobs, TurnStats
from rollouts.export import (
    BAD_ARGUMENTS,
    LATE_SYSTEM,
    LLAMAFACTORY_ENTRY,
    OPENAI_KEYS,
    THINK_LEFT_OUT,
    TRIMMED_TOOL_RESULTS,
    Unexpressible,
    convert,
    export_file,
    export_messages,
    llamafactory_to_messages,
    to_llamafactory,
    to_openai,
    to_swift,
    to_trl,
)
from rollouts.jsonl import JsonlAppender, read_jsonl
from train.art_adapter import to_art_trajectory

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_price",
            "description": "price",
            "parameters": {"type": "object", "properties": {"zone": {"type": "string"}, "hour": {"type": "integer"}}},
        },
    },
    {
        "type": "function",
        "function": {
            "name": "get_load",
            "description": "load",
            "parameters": {"type": "object", "properties": {"zone": {"type": "string"}}},
        },
    },
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
        metrics={"turns": 3, "tool_calls": 3},
        turns=[TurnStats(finish_reason=reason) for reason in ["tool_calls"] * 2 + ["stop"]],
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


def variant(traj: Trajectory, messages: list[dict[str, Any]], tid: str | None = None) -> Trajectory:
    data = traj.model_dump() | {"messages": messages}
    if tid:
        data["id"] = f"energy:{tid}:s0"
    return Trajectory(**data)


def cut_by_turn_limit(tid: str = "cut") -> Trajectory:
    """What a turn limit leaves: the last turn's calls and their results, no answer."""
    traj = make_traj(tid, reward=0.0, error=TrajectoryError(kind="model", message="max_turns"))
    return variant(traj, traj.messages[:-1])


def with_text_beside_calls() -> Trajectory:
    traj = make_traj("text")
    messages = [dict(m) for m in traj.messages]
    messages[2]["content"] = "Let me look both up."
    return variant(traj, messages)


# -- llamafactory -----------------------------------------------------------------


def test_llamafactory_record_carries_system_tools_and_alternates_as_llama_factory_needs() -> None:
    record = to_llamafactory(make_traj())
    assert set(record) == {"conversations", "system", "tools"}
    assert record["system"] == "You are an energy analyst."
    assert [tool["name"] for tool in json.loads(record["tools"])] == ["get_price", "get_load"]
    froms = [turn["from"] for turn in record["conversations"]]
    assert froms == ["human", "function_call", "observation", "function_call", "observation", "gpt"]
    # LLaMA-Factory's rule: even positions human/observation, odd gpt/function_call, an even count.
    assert all(f in ("human", "observation") for f in froms[::2]) and all(
        f in ("gpt", "function_call") for f in froms[1::2]
    )
    parallel = record["conversations"][1]["value"]
    # the thinking is LLaMA-Factory's thought_words ("<think>\n", "\n</think>\n\n") around it
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
    assert record["conversations"][-1]["value"] == "<think>\n42.5 / 40 = 1.0625\n</think>\n\nThe ratio is 1.0625."
    assert "<think>" not in to_llamafactory(make_traj(), think=False)["conversations"][1]["value"]


def test_llamafactory_keeps_text_beside_calls_and_round_trips() -> None:
    traj = with_text_beside_calls()
    value = to_llamafactory(traj)["conversations"][1]["value"]
    # the calls inside LLaMA-Factory's tool_call_words, the text before them (read by >= 0.9.4)
    assert value.startswith("<think>\nI need both numbers.\n</think>\n\nLet me look both up.<tool_call>[")
    assert value.endswith("]</tool_call>")
    for source in (traj, make_traj()):
        back = llamafactory_to_messages(json.loads(json.dumps(to_llamafactory(source))))
        assert comparable(back) == comparable(export_messages(source))
        ids = [c["id"] for c in back[2]["tool_calls"]]
        assert [m["tool_call_id"] for m in back[3:5]] == ids  # results answer the calls they belong to


def test_llamafactory_cannot_hold_a_late_system_message() -> None:
    traj = make_traj()
    messages = [*traj.messages[:2], {"role": "system", "content": "Be brief."}, *traj.messages[2:]]
    with pytest.raises(Unexpressible, match=LATE_SYSTEM):
        to_llamafactory(variant(traj, messages))
    assert to_trl(variant(traj, messages))["messages"][2] == {"role": "system", "content": "Be brief."}


def test_dataset_info_entry_matches_the_file_and_merges_into_an_existing_one(tmp_path: Path) -> None:
    src = tmp_path / "traj.jsonl"
    with JsonlAppender(src) as out:
        out.write(make_traj())
        out.write(cut_by_turn_limit())
    data = tmp_path / "data"
    data.mkdir()
    theirs = {"alpaca_en_demo": {"file_name": "alpaca_en_demo.json"}}
    (data / "dataset_info.json").write_text(json.dumps(theirs))
    result = export_file(src, data / "energy_sft.jsonl", fmt="llamafactory")
    assert result.dataset_info == data / "dataset_info.json" and result.dataset_name == "energy_sft"
    info = json.loads((data / "dataset_info.json").read_text())
    assert info["alpaca_en_demo"] == theirs["alpaca_en_demo"]  # merged, not clobbered
    entry = info["energy_sft"]
    assert entry["file_name"] == "energy_sft.jsonl" and (data / entry["file_name"]).is_file()
    assert entry["formatting"] == "sharegpt"
    records = read_jsonl(data / "energy_sft.jsonl")
    # every column the entry names is in every record; every role in the file is one of its tags
    assert set(entry["columns"].values()) == set(records[0]) and all(set(r) == set(records[0]) for r in records)
    tags = entry["tags"]
    froms = {turn[tags["role_tag"]] for r in records for turn in r[entry["columns"]["messages"]]}
    assert froms == {tags[k] for k in ("user_tag", "assistant_tag", "observation_tag", "function_tag")}
    assert all(r[entry["columns"]["tools"]] and r[entry["columns"]["system"]] for r in records)
    # a second export with its own name adds an entry
    export_file(src, data / "other.jsonl", fmt="llamafactory", dataset_name="energy_b")
    info = json.loads((data / "dataset_info.json").read_text())
    assert set(info) == {"alpaca_en_demo", "energy_sft", "energy_b"} and info["energy_b"]["file_name"] == "other.jsonl"
    assert {k: v for k, v in info["energy_b"].items() if k != "file_name"} == LLAMAFACTORY_ENTRY
    # someone's broken dataset_info.json is an error, and nothing is written
    (data / "dataset_info.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        export_file(src, data / "third.jsonl", fmt="llamafactory")
    assert not (data / "third.jsonl").exists() and (data / "dataset_info.json").read_text() == "{not json"


# -- swift -------------------------------------------------------------------------


def test_swift_parallel_calls_are_consecutive_tool_call_messages_with_thinking_before_them() -> None:
    record = to_swift(make_traj())
    assert set(record) == {"messages", "tools"} and json.loads(record["tools"]) == TOOLS
    messages = record["messages"]
    assert [m["role"] for m in messages] == [
        "system",
        "user",
        "assistant",  # the thinking of the call turn, which ms-swift merges with its calls
        "tool_call",
        "tool_call",
        "tool_response",
        "tool_response",
        "tool_call",
        "tool_response",
        "assistant",
    ]
    assert all(set(m) == {"role", "content"} and isinstance(m["content"], str) for m in messages)
    assert messages[2]["content"] == "<think>\nI need both numbers.\n</think>\n\n"
    # one JSON object per call (a list here is what made ms-swift fail: "list indices must be integers")
    calls = [json.loads(m["content"]) for m in messages if m["role"] == "tool_call"]
    assert calls == [
        {"name": "get_price", "arguments": {"zone": "DE", "hour": 3}},
        {"name": "get_load", "arguments": {"zone": "FR"}},
        {"name": "get_price", "arguments": {"zone": "FR", "hour": 3}},
    ]
    assert messages[-1]["content"] == "<think>\n42.5 / 40 = 1.0625\n</think>\n\nThe ratio is 1.0625."
    plain = to_swift(make_traj(), think=False)["messages"]
    assert [m["role"] for m in plain[:4]] == ["system", "user", "tool_call", "tool_call"]  # no empty assistant turn
    text = to_swift(with_text_beside_calls())["messages"][2]["content"]
    assert text == "<think>\nI need both numbers.\n</think>\n\nLet me look both up."


# -- trl and openai -------------------------------------------------------------------


def test_trl_record_is_openai_messages_and_tools_as_a_json_string() -> None:
    traj = make_traj()
    record = to_trl(traj)
    assert set(record) == {"messages", "tools"}
    assert json.loads(record["tools"]) == TOOLS  # SFTTrainer json-decodes it; as Arrow a list would be null-padded
    assert comparable(record["messages"]) == comparable(export_messages(traj))
    assert record["messages"][2]["content"] == "<think>\nI need both numbers.\n</think>\n\n"
    assert [c["function"]["arguments"] for c in record["messages"][2]["tool_calls"]] == [
        '{"zone": "DE", "hour": 3}',
        '{"zone": "FR"}',
    ]
    assert [m.get("tool_call_id") for m in record["messages"][3:5]] == ["c1", "c2"]
    assert all("reasoning_content" not in m and "name" not in m for m in record["messages"])
    no_think = to_trl(traj, think=False)["messages"]
    assert no_think[-1]["content"] == "The ratio is 1.0625." and no_think[2]["content"] == ""


OPENAI_MESSAGE_KEYS = {
    "system": {"role", "content", "name"},
    "user": {"role", "content", "name"},
    "assistant": {"role", "content", "name", "tool_calls", "weight"},
    "tool": {"role", "content", "tool_call_id"},
}


def test_openai_line_has_only_the_keys_openai_accepts_and_no_thinking() -> None:
    traj = with_text_beside_calls()
    record, notes = convert(traj, "openai")
    assert set(record) <= OPENAI_KEYS and "messages" in record and record["tools"] == TOOLS
    for message in record["messages"]:
        assert set(message) <= OPENAI_MESSAGE_KEYS[message["role"]], message
    assert "think" not in json.dumps(record) and "I need both numbers" not in json.dumps(record)
    assert notes == [THINK_LEFT_OUT]
    messages = record["messages"]
    assert messages[2]["content"] == "Let me look both up."  # text beside calls stays
    second_call = messages[5]
    assert "content" not in second_call and second_call["tool_calls"][0]["function"]["name"] == "get_price"
    call_ids = [c["id"] for m in messages for c in m.get("tool_calls") or []]
    assert [m["tool_call_id"] for m in messages if m["role"] == "tool"] == call_ids
    assert all(isinstance(c["function"]["arguments"], str) for m in messages for c in m.get("tool_calls") or [])
    assert messages[-1] == {"role": "assistant", "content": "The ratio is 1.0625."}
    assert to_openai(traj) == record


# -- ART -----------------------------------------------------------------------------


def test_art_trajectory_with_logprobs_has_trainable_choices() -> None:
    traj = make_traj()
    traj.logprobs = [
        TurnLogprobs(
            message_index=2, token_ids=[11, 12, 13], logprobs=[-0.1, -0.2, -0.3], tokens=["<think>", "a", "b"]
        ),
        None,
        TurnLogprobs(message_index=7, token_ids=[21, 22], logprobs=[-0.5, -0.6], tokens=["The", " ratio"]),
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


# -- files: what cannot be expressed is counted ---------------------------------------------


def test_export_file_counts_what_it_changed_skipped_and_did_not_select(tmp_path: Path) -> None:
    src = tmp_path / "traj.jsonl"
    good = make_traj("good", reward=1.0)
    broken = variant(good, [dict(m) for m in good.messages], tid="broken")
    broken.messages[5] = broken.messages[5] | {"tool_calls": [_call("c3", "get_price", {})]}
    broken.messages[5]["tool_calls"][0]["function"]["arguments"] = '{"zone": "FR", '  # cut off mid-JSON
    with JsonlAppender(src) as out:
        out.write(good)
        out.write(make_traj("half", reward=0.5))
        out.write(make_traj("infra", reward=None, error=TrajectoryError(kind="infra", message="env: died")))
        out.write(cut_by_turn_limit())
        out.write(broken)
    for fmt in ("llamafactory", "swift", "trl", "openai"):
        result = export_file(src, tmp_path / f"{fmt}.jsonl", fmt=fmt)
        assert (result.read, result.written) == (5, 3), fmt
        assert result.not_selected == {"infra failure": 1}
        assert result.skipped == {BAD_ARGUMENTS: 1}
        expected_changed = {TRIMMED_TOOL_RESULTS: 1} | ({THINK_LEFT_OUT: 3} if fmt == "openai" else {})
        assert result.changed == expected_changed, fmt
        assert len(read_jsonl(tmp_path / f"{fmt}.jsonl")) == 3
        assert "3 of 5" in result.summary() and "skipped 1" in result.summary()
    # the cut one ends on its last calls (LLaMA-Factory would skip it: "Invalid message count")
    cut = read_jsonl(tmp_path / "llamafactory.jsonl")[2]["conversations"]
    assert cut[-1]["from"] == "function_call" and len(cut) % 2 == 0
    assert read_jsonl(tmp_path / "swift.jsonl")[2]["messages"][-1]["role"] == "tool_call"
    assert read_jsonl(tmp_path / "openai.jsonl")[2]["messages"][-1]["tool_calls"]
    best = export_file(src, tmp_path / "best.jsonl", fmt="trl", min_reward=0.6)
    assert best.written == 1 and best.not_selected == {"infra failure": 1, "reward below 0.6": 2}


def test_old_format_names_still_work_with_a_warning(tmp_path: Path) -> None:
    src = tmp_path / "traj.jsonl"
    with JsonlAppender(src) as out:
        out.write(make_traj())
    with pytest.warns(FutureWarning, match="sharegpt is now called llamafactory"):
        result = export_file(src, tmp_path / "sft.jsonl", fmt="sharegpt")
    assert result.format == "llamafactory" and (tmp_path / "dataset_info.json").is_file()
    with pytest.warns(FutureWarning, match="messages is now called trl"):
        assert export_file(src, tmp_path / "m.jsonl", fmt="messages").format == "trl"
    with pytest.raises(ValueError, match="interleaved was removed"):
        export_file(src, tmp_path / "i.jsonl", fmt="interleaved")


def run_export(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "rollouts.export", *args], capture_output=True, text=True, timeout=60, check=False
    )


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--format", "alpaca", "a.jsonl", "--out", "b.jsonl"], "invalid choice"),
        (["--format", "interleaved", "GOOD", "--out", "b.jsonl"], "interleaved was removed"),
        (["--min-reward", "high", "a.jsonl", "--out", "b.jsonl"], "invalid float value"),
        (["missing.jsonl", "--out", "b.jsonl"], "no such file"),
        (["BAD", "--out", "b.jsonl"], "not a JSON line"),
        (["NOTTRAJ", "--out", "b.jsonl"], "not a trajectory"),
        (["GOOD", "--out", "broken/b.jsonl"], "dataset_info.json is not a JSON object"),
    ],
)
def test_export_cli_bad_input_is_one_line_and_exit_2(tmp_path: Path, args: list[str], needle: str) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": 1}\nnot json\n{"id": 2}\n')
    nottraj = tmp_path / "nottraj.jsonl"
    nottraj.write_text('{"question": "hi"}\n')
    good = tmp_path / "good.jsonl"
    with JsonlAppender(good) as out:
        out.write(make_traj())
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "dataset_info.json").write_text("[1, 2]")
    named = {"BAD": bad, "NOTTRAJ": nottraj, "GOOD": good}
    args = [str(named[a]) if a in named else a for a in args]
    args = [str(tmp_path / a) if a.endswith(".jsonl") and not a.startswith("/") else a for a in args]
    proc = run_export(*args)
    assert proc.returncode == 2, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and needle in proc.stderr
    assert "Traceback" not in proc.stderr


def test_export_cli_prints_the_counts(tmp_path: Path) -> None:
    src = tmp_path / "t.jsonl"
    with JsonlAppender(src) as out:
        out.write(make_traj())
        out.write(cut_by_turn_limit())
        out.write(make_traj("infra", reward=None, error=TrajectoryError(kind="infra", message="env: died")))
    proc = run_export("--format", "sharegpt", str(src), "--out", str(tmp_path / "sft.jsonl"))
    assert proc.returncode == 0, proc.stderr
    assert (
        proc.stderr.strip()
        == "warning: --format sharegpt is now called llamafactory; the old name goes in the next release"
    )
    lines = proc.stdout.strip().splitlines()
    assert lines[0] == f"wrote 2 of 3 trajectories to {tmp_path / 'sft.jsonl'} (llamafactory)"
    assert lines[1] == f"  changed 1: 1 {TRIMMED_TOOL_RESULTS}"
    assert lines[2] == "  not selected 1: 1 infra failure"
    assert lines[3] == f"  LLaMA-Factory dataset 'sft' in {tmp_path / 'dataset_info.json'}"
    assert json.loads((tmp_path / "dataset_info.json").read_text())["sft"]["file_name"] == "sft.jsonl"
