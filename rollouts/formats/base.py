"""What every export format starts from: the format names, the reasons counted in `ExportResult`,
`Unexpressible`, and the message helpers each consumer's converter shares (thinking split off,
arguments as a JSON object, the conversation trimmed to end on an assistant turn)."""

from __future__ import annotations

import json
from typing import Any, Literal

from contracts import ModelJsonError, Trajectory, loads_model_json
from rollouts.parse import THINK_CLOSE, THINK_OPEN, inline_think, split_think

ExportFormat = Literal["llamafactory", "swift", "trl", "openai"]
FORMATS: tuple[ExportFormat, ...] = ("llamafactory", "swift", "trl", "openai")
# Old names kept for one release: what each now means.
ALIASES: dict[str, ExportFormat] = {"sharegpt": "llamafactory", "messages": "trl"}
REMOVED = {"interleaved": "no trainer reads it; use --format trl or llamafactory"}

# Reasons, as counted in ExportResult and printed by the CLI.
TRIMMED_TOOL_RESULTS = "ended on tool results (trimmed: it ends on its calls)"
TRIMMED_USER_TURN = "ended on a user turn (trimmed)"
THINK_LEFT_OUT = "thinking left out (OpenAI's format has no field for it)"
NO_ASSISTANT = "no assistant turn"
BAD_ARGUMENTS = "tool-call arguments that are not a JSON object"
LATE_SYSTEM = "a system message after the start"
NOT_ALTERNATING = "turns that do not alternate user/tool and assistant"


class Unexpressible(ValueError):
    """A trajectory the format cannot hold; the message is the reason, counted by `export_file`."""


def resolve_format(name: str) -> tuple[ExportFormat, str | None]:
    """The format a name means and, for an old name, the warning to show."""
    if name in REMOVED:
        raise ValueError(f"--format {name} was removed: {REMOVED[name]}")
    if name in ALIASES:
        new = ALIASES[name]
        return new, f"--format {name} is now called {new}; the old name goes in the next release"
    if name not in FORMATS:
        raise ValueError(f"unknown export format {name!r} (one of {', '.join(FORMATS)})")
    return name, None  # type: ignore[return-value]


# -- what every format starts from ------------------------------------------------


def export_messages(traj: Trajectory, *, think: bool = True) -> list[dict[str, Any]]:
    """The conversation as plain OpenAI messages, thinking inline (or dropped). SFT reads this."""
    out = []
    for message in traj.messages:
        if message.get("role") == "assistant":
            clean = {key: value for key, value in message.items() if key != "reasoning_content"}
            clean["content"] = inline_think(message) if think else (message.get("content") or "")
            out.append(clean)
        else:
            out.append(dict(message))
    return out


def text_of(content: Any) -> str:
    if content is None:
        return ""
    return content if isinstance(content, str) else json.dumps(content, ensure_ascii=False)


def think_and_text(message: dict[str, Any]) -> tuple[str | None, str]:
    """An assistant turn's thinking (from `reasoning_content`, or inline tags) and its text."""
    text = text_of(message.get("content"))
    reasoning = message.get("reasoning_content")
    if not reasoning and (THINK_OPEN in text or THINK_CLOSE in text):
        reasoning, text = split_think(text)
    return (reasoning or None), text


def think_prefix(reasoning: str | None) -> str:
    return f"{THINK_OPEN}\n{reasoning}\n{THINK_CLOSE}\n\n" if reasoning else ""


def call_arguments(call: dict[str, Any]) -> dict[str, Any]:
    arguments = call.get("function", {}).get("arguments")
    if isinstance(arguments, str):
        try:
            arguments = loads_model_json(arguments) if arguments.strip() else {}
        except ModelJsonError:
            raise Unexpressible(BAD_ARGUMENTS) from None
    if arguments is None:
        arguments = {}
    if not isinstance(arguments, dict):
        raise Unexpressible(BAD_ARGUMENTS)
    return arguments


def prepared(traj: Trajectory) -> tuple[list[dict[str, Any]], list[str]]:
    """The messages with anything after the last assistant turn trimmed (noted), checked for
    what no format holds. Every trainer's target is an assistant turn: tool results the turn
    limit left unanswered teach nothing, the calls before them do."""
    messages = [dict(message) for message in traj.messages]
    last = max((i for i, m in enumerate(messages) if m.get("role") == "assistant"), default=None)
    if last is None:
        raise Unexpressible(NO_ASSISTANT)
    notes = []
    if last < len(messages) - 1:
        notes.append(TRIMMED_TOOL_RESULTS if messages[last + 1].get("role") == "tool" else TRIMMED_USER_TURN)
        messages = messages[: last + 1]
    for message in messages:
        for call in message.get("tool_calls") or []:
            call_arguments(call)
    return messages, notes


def call_objects(tool_calls: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {"name": call.get("function", {}).get("name", ""), "arguments": call_arguments(call)} for call in tool_calls
    ]
