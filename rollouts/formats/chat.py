"""OpenAI-shaped chat records: TRL SFTTrainer's conversational layout and OpenAI fine-tuning."""

from __future__ import annotations

import json
from typing import Any

from contracts import Trajectory
from rollouts.parse import new_call_id

from .base import THINK_LEFT_OUT, Unexpressible, call_arguments, prepared, text_of, think_and_text, think_prefix

OPENAI_KEYS = frozenset({"messages", "tools", "parallel_tool_calls"})


def openai_calls(tool_calls: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {
            "id": call.get("id") or new_call_id(),
            "type": "function",
            "function": {
                "name": call.get("function", {}).get("name", ""),
                "arguments": json.dumps(call_arguments(call), ensure_ascii=False),
            },
        }
        for call in tool_calls
    ]


def chat_messages(messages: list[dict[str, Any]], *, think: bool) -> tuple[list[dict[str, Any]], int]:
    """OpenAI messages with only the keys chat formats know; returns them and how many assistant
    turns lost their thinking."""
    out: list[dict[str, Any]] = []
    dropped = 0
    for message in messages:
        role = message.get("role")
        if role == "assistant":
            reasoning, answer = think_and_text(message)
            dropped += bool(reasoning and not think)
            clean: dict[str, Any] = {
                "role": "assistant",
                "content": (think_prefix(reasoning) if think else "") + answer,
            }
            if message.get("tool_calls"):
                clean["tool_calls"] = openai_calls(message["tool_calls"])
            out.append(clean)
        elif role == "tool":
            out.append(
                {
                    "role": "tool",
                    "tool_call_id": message.get("tool_call_id", ""),
                    "content": text_of(message.get("content")),
                }
            )
        elif role in ("system", "user", "developer"):
            out.append({"role": role, "content": text_of(message.get("content"))})
        else:
            raise Unexpressible(f"a message with role {role!r}")
    return out, dropped


def trl_record(traj: Trajectory, *, think: bool = True) -> tuple[dict[str, Any], list[str]]:
    messages, notes = prepared(traj)
    out, _ = chat_messages(messages, think=think)
    return {"messages": out, "tools": json.dumps(traj.tools, ensure_ascii=False) if traj.tools else ""}, notes


def to_trl(traj: Trajectory, *, think: bool = True) -> dict[str, Any]:
    """One TRL SFTTrainer record (conversational, with tools)."""
    return trl_record(traj, think=think)[0]


def openai_record(traj: Trajectory, *, think: bool = True) -> tuple[dict[str, Any], list[str]]:
    del think  # always left out: OpenAI would train it as visible text
    messages, notes = prepared(traj)
    out, dropped = chat_messages(messages, think=False)
    for message in out:
        if message["role"] == "assistant" and message.get("tool_calls") and not message["content"]:
            del message["content"]  # a call turn without text has no content (OpenAI's own examples)
    if dropped:
        notes.append(THINK_LEFT_OUT)
    record: dict[str, Any] = {"messages": out}
    if traj.tools:
        record["tools"] = traj.tools
    return record, notes


def to_openai(traj: Trajectory) -> dict[str, Any]:
    """One OpenAI fine-tuning line: only the keys OpenAI accepts, no thinking."""
    return openai_record(traj)[0]
