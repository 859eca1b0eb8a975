"""LLaMA-Factory's sharegpt layout, back again (for checks), and its `dataset_info.json` entry."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from common.files import write_private_atomic
from contracts import Trajectory
from rollouts.parse import new_call_id, split_think

from .base import (
    LATE_SYSTEM,
    NOT_ALTERNATING,
    Unexpressible,
    call_objects,
    prepared,
    text_of,
    think_and_text,
    think_prefix,
)

OBSERVATION_JOIN = "\n</tool_response>\n<tool_response>\n"
TOOL_CALL_OPEN, TOOL_CALL_CLOSE = "<tool_call>", "</tool_call>"  # LLaMA-Factory's default tool_call_words

LLAMAFACTORY_ENTRY: dict[str, Any] = {
    "formatting": "sharegpt",
    "columns": {"messages": "conversations", "system": "system", "tools": "tools"},
    "tags": {
        "role_tag": "from",
        "content_tag": "value",
        "user_tag": "human",
        "assistant_tag": "gpt",
        "observation_tag": "observation",
        "function_tag": "function_call",
        "system_tag": "system",
    },
}


def llamafactory_record(traj: Trajectory, *, think: bool = True) -> tuple[dict[str, Any], list[str]]:
    messages, notes = prepared(traj)
    system = ""
    conversations: list[dict[str, str]] = []
    pending: list[str] = []  # tool results of one turn, merged into one observation

    def flush() -> None:
        if pending:
            conversations.append({"from": "observation", "value": OBSERVATION_JOIN.join(pending)})
            pending.clear()

    for index, message in enumerate(messages):
        role = message.get("role")
        text = text_of(message.get("content"))
        if role == "system":
            if index != 0:
                raise Unexpressible(LATE_SYSTEM)
            system = text
        elif role == "tool":
            pending.append(text)
        else:
            flush()
            if role == "user":
                conversations.append({"from": "human", "value": text})
            elif role == "assistant":
                reasoning, answer = think_and_text(message)
                prefix = think_prefix(reasoning) if think else ""
                if message.get("tool_calls"):
                    calls = call_objects(message["tool_calls"])
                    payload = json.dumps(calls[0] if len(calls) == 1 else calls, ensure_ascii=False)
                    if answer.strip():  # text beside the calls: LLaMA-Factory >= 0.9.4 splits the calls off
                        payload = f"{answer}{TOOL_CALL_OPEN}{payload}{TOOL_CALL_CLOSE}"
                    conversations.append({"from": "function_call", "value": prefix + payload})
                else:
                    conversations.append({"from": "gpt", "value": prefix + answer})
            else:
                raise Unexpressible(f"a message with role {role!r}")
    flush()
    for index, turn in enumerate(conversations):  # LLaMA-Factory skips any other order
        if turn["from"] not in (("human", "observation"), ("gpt", "function_call"))[index % 2]:
            raise Unexpressible(NOT_ALTERNATING)
    tools = [tool.get("function", tool) for tool in traj.tools]
    record = {
        "conversations": conversations,
        "system": system,
        "tools": json.dumps(tools, ensure_ascii=False) if tools else "",
    }
    return record, notes


def to_llamafactory(traj: Trajectory, *, think: bool = True) -> dict[str, Any]:
    """One LLaMA-Factory sharegpt record; raises `Unexpressible` for what it cannot hold."""
    return llamafactory_record(traj, think=think)[0]


def llamafactory_to_messages(record: dict[str, Any]) -> list[dict[str, Any]]:
    """Back from a `llamafactory` record to OpenAI messages (call ids are made up: sharegpt has none)."""
    messages: list[dict[str, Any]] = []
    if record.get("system"):
        messages.append({"role": "system", "content": record["system"]})
    last_ids: list[str] = []
    for turn in record.get("conversations", []):
        kind, value = turn["from"], turn["value"]
        if kind == "human":
            messages.append({"role": "user", "content": value})
        elif kind == "gpt":
            messages.append({"role": "assistant", "content": value})
        elif kind == "function_call":
            reasoning, body = split_think(value)
            text = ""
            if TOOL_CALL_OPEN in body:
                text, _, rest = body.partition(TOOL_CALL_OPEN)
                body = rest.rsplit(TOOL_CALL_CLOSE, 1)[0]
            calls = json.loads(body)
            calls = calls if isinstance(calls, list) else [calls]
            last_ids = [new_call_id() for _ in calls]
            tool_calls = [
                {
                    "id": call_id,
                    "type": "function",
                    "function": {"name": call["name"], "arguments": json.dumps(call["arguments"], ensure_ascii=False)},
                }
                for call_id, call in zip(last_ids, calls, strict=True)
            ]
            content = (think_prefix(reasoning) if reasoning is not None else "") + text
            messages.append({"role": "assistant", "content": content, "tool_calls": tool_calls})
        elif kind == "observation":
            parts = value.split(OBSERVATION_JOIN) if len(last_ids) > 1 else [value]
            for call_id, part in zip(last_ids, parts, strict=False):
                messages.append({"role": "tool", "tool_call_id": call_id, "content": part})
        else:
            raise ValueError(f"unknown sharegpt role {kind!r}")
    return messages


def read_dataset_info(path: Path) -> dict[str, Any]:
    """The dataset_info.json there (empty when there is none); one that is not a JSON object is an
    error: it is someone's file, never overwritten."""
    if not path.exists():
        return {}
    try:
        info = json.loads(path.read_text(encoding="utf-8") or "{}")
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} is not valid JSON ({exc.msg}, line {exc.lineno}); not overwriting it") from None
    if not isinstance(info, dict):
        raise ValueError(f"{path} is not a JSON object; not overwriting it")
    return info


def write_dataset_info(dataset_dir: str | Path, name: str, file_name: str) -> Path:
    """Add (or replace) `name` in `dataset_dir/dataset_info.json`, keeping every other entry; atomic."""
    path = Path(dataset_dir) / "dataset_info.json"
    info = read_dataset_info(path)
    info[name] = {"file_name": file_name, **LLAMAFACTORY_ENTRY}
    write_private_atomic(path, json.dumps(info, indent=2, ensure_ascii=False) + "\n")
    return path
