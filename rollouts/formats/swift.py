"""ms-swift's agent layout: one `tool_call` message per call, one `tool_response` per result."""

from __future__ import annotations

import json
from typing import Any

from contracts import Trajectory

from .base import Unexpressible, call_objects, prepared, text_of, think_and_text, think_prefix


def swift_record(traj: Trajectory, *, think: bool = True) -> tuple[dict[str, Any], list[str]]:
    messages, notes = prepared(traj)
    out: list[dict[str, str]] = []
    for message in messages:
        role = message.get("role")
        if role in ("system", "user"):
            out.append({"role": role, "content": text_of(message.get("content"))})
        elif role == "tool":
            out.append({"role": "tool_response", "content": text_of(message.get("content"))})
        elif role == "assistant":
            reasoning, answer = think_and_text(message)
            head = (think_prefix(reasoning) if think else "") + answer
            calls = message.get("tool_calls") or []
            if head or not calls:
                out.append({"role": "assistant", "content": head})
            for call in call_objects(calls):
                out.append({"role": "tool_call", "content": json.dumps(call, ensure_ascii=False)})
        else:
            raise Unexpressible(f"a message with role {role!r}")
    return {"messages": out, "tools": json.dumps(traj.tools, ensure_ascii=False) if traj.tools else ""}, notes


def to_swift(traj: Trajectory, *, think: bool = True) -> dict[str, Any]:
    """One ms-swift agent record; raises `Unexpressible` for what it cannot hold."""
    return swift_record(traj, think=think)[0]
