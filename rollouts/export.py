"""Trajectories out to training formats: sharegpt, OpenAI messages, interleaved text, ART.

    python -m rollouts.export --format sharegpt --min-reward 0.5 data/trajectories.jsonl data/sft.jsonl

Formats (one JSON object per line):

- `sharegpt` — LLaMA-Factory's (and ms-swift's) tool-calling layout:
  `{"conversations": [{"from": "human"|"function_call"|"observation"|"gpt", "value": ...}],
  "system": "...", "tools": "<JSON string of the tool list>"}`. LLaMA-Factory wants
  `tools` as a JSON *string* and turns that alternate human/observation then
  gpt/function_call, so the calls of one turn are one `function_call` (a JSON
  list when there are several, which both readers accept) and their results one
  `observation` (joined with `</tool_response><tool_response>` the way
  LLaMA-Factory's own OpenAI converter joins them for Qwen templates). Text an
  assistant wrote next to its tool calls is not representable there and is dropped;
  thinking is kept as a `<think>` prefix, which LLaMA-Factory splits off.
- `messages` — OpenAI `messages` + `tools` (lists), thinking inline as `<think>`.
- `interleaved` — one text of `<think>`, `<call_tool>`, `<tool_output>` segments
  followed by the final answer, next to the `prompt` it answers.

Infra-failed trajectories are never exported (they say nothing about the
model); `--min-reward` also drops unscored ones. `to_art_trajectory` builds an
`art.Trajectory` for GRPO: assistant turns with recorded token ids/logprobs
become `Choice` objects (trainable), the rest plain messages.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal

from pydantic import ValidationError

from envs.cli import ArgumentParser, UsageError, run_cli
from rollouts.jsonl import JsonlFormatError, iter_jsonl, read_jsonl, write_jsonl
from rollouts.record import Trajectory

from .parse import THINK_CLOSE, THINK_OPEN, inline_think, new_call_id, split_think

ExportFormat = Literal["sharegpt", "messages", "interleaved"]
FORMATS: tuple[ExportFormat, ...] = ("sharegpt", "messages", "interleaved")
OBSERVATION_JOIN = "\n</tool_response>\n<tool_response>\n"


# -- selection ------------------------------------------------------------------


def exportable(traj: Trajectory, *, min_reward: float | None = None, success_only: bool = False) -> bool:
    if traj.is_infra_failure:
        return False
    if success_only and not traj.success:
        return False
    if min_reward is not None and (traj.reward is None or traj.reward < min_reward):
        return False
    return True


# -- messages -------------------------------------------------------------------


def export_messages(traj: Trajectory, *, think: bool = True) -> list[dict[str, Any]]:
    """The conversation as plain OpenAI messages, thinking inline (or dropped)."""
    out = []
    for message in traj.messages:
        if message.get("role") == "assistant":
            clean = {key: value for key, value in message.items() if key != "reasoning_content"}
            clean["content"] = inline_think(message) if think else (message.get("content") or "")
            out.append(clean)
        else:
            out.append(dict(message))
    return out


def to_messages(traj: Trajectory, *, think: bool = True) -> dict[str, Any]:
    return {
        "id": traj.id,
        "messages": export_messages(traj, think=think),
        "tools": traj.tools,
        "reward": traj.reward,
    }


# -- sharegpt -------------------------------------------------------------------


def _call_value(tool_calls: list[dict[str, Any]]) -> str:
    calls = []
    for call in tool_calls:
        function = call.get("function", {})
        arguments: Any = function.get("arguments", "{}")
        try:
            arguments = json.loads(arguments) if isinstance(arguments, str) else arguments
        except json.JSONDecodeError:
            pass  # the model's broken text, kept as it was
        calls.append({"name": function.get("name", ""), "arguments": arguments})
    return json.dumps(calls[0] if len(calls) == 1 else calls, ensure_ascii=False)


def to_sharegpt(traj: Trajectory, *, think: bool = True) -> dict[str, Any]:
    system = ""
    conversations: list[dict[str, str]] = []
    pending: list[str] = []  # tool results of one turn, merged into one observation

    def flush() -> None:
        if pending:
            conversations.append({"from": "observation", "value": OBSERVATION_JOIN.join(pending)})
            pending.clear()

    for message in traj.messages:
        role = message.get("role")
        content = message.get("content")
        text = content if isinstance(content, str) else json.dumps(content, ensure_ascii=False)
        if role == "system":
            system = text
            continue
        if role == "tool":
            pending.append(text)
            continue
        flush()
        if role == "user":
            conversations.append({"from": "human", "value": text})
        elif role == "assistant":
            reasoning = message.get("reasoning_content") if think else None
            prefix = f"{THINK_OPEN}\n{reasoning}\n{THINK_CLOSE}\n\n" if reasoning else ""
            if message.get("tool_calls"):
                conversations.append({"from": "function_call", "value": prefix + _call_value(message["tool_calls"])})
            else:
                conversations.append({"from": "gpt", "value": prefix + (message.get("content") or "")})
    flush()
    tools = [tool.get("function", tool) for tool in traj.tools]  # LLaMA-Factory reads both shapes
    return {
        "id": traj.id,
        "conversations": conversations,
        "system": system,
        "tools": json.dumps(tools, ensure_ascii=False),
    }


def sharegpt_to_messages(record: dict[str, Any]) -> list[dict[str, Any]]:
    """Back from sharegpt to OpenAI messages (call ids are made up: sharegpt has none)."""
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
            calls = json.loads(body)
            calls = calls if isinstance(calls, list) else [calls]
            last_ids = [new_call_id() for _ in calls]
            tool_calls = [
                {
                    "id": call_id,
                    "type": "function",
                    "function": {
                        "name": call["name"],
                        "arguments": call["arguments"]
                        if isinstance(call["arguments"], str)
                        else json.dumps(call["arguments"], ensure_ascii=False),
                    },
                }
                for call_id, call in zip(last_ids, calls, strict=True)
            ]
            content = f"{THINK_OPEN}\n{reasoning}\n{THINK_CLOSE}\n\n" if reasoning is not None else ""
            messages.append({"role": "assistant", "content": content, "tool_calls": tool_calls})
        elif kind == "observation":
            parts = value.split(OBSERVATION_JOIN) if len(last_ids) > 1 else [value]
            for call_id, part in zip(last_ids, parts, strict=False):
                messages.append({"role": "tool", "tool_call_id": call_id, "content": part})
        else:
            raise ValueError(f"unknown sharegpt role {kind!r}")
    return messages


# -- interleaved ----------------------------------------------------------------

_SEGMENT = re.compile(r"<(think|call_tool|tool_output)>\n?(.*?)\n?</\1>\n?", re.DOTALL)


def to_interleaved(traj: Trajectory, *, think: bool = True) -> dict[str, Any]:
    """`{"prompt", "text"}`: the assistant's side of the episode as one text."""
    prompt = ""
    parts: list[str] = []
    for message in traj.messages:
        role = message.get("role")
        if role == "user":
            prompt = message.get("content") or ""
        elif role == "assistant":
            if think and message.get("reasoning_content"):
                parts.append(f"<think>\n{message['reasoning_content']}\n</think>\n")
            for call in message.get("tool_calls") or []:
                parts.append(f"<call_tool>\n{_call_value([call])}\n</call_tool>\n")
            if not message.get("tool_calls") and message.get("content"):
                parts.append(message["content"])
        elif role == "tool":
            parts.append(f"<tool_output>\n{message.get('content') or ''}\n</tool_output>\n")
    return {"id": traj.id, "prompt": prompt, "text": "".join(parts), "reward": traj.reward}


def parse_interleaved(text: str) -> list[tuple[str, str]]:
    """Split an interleaved text into (kind, body) segments; the final answer is ("answer", ...)."""
    segments: list[tuple[str, str]] = []
    position = 0
    for match in _SEGMENT.finditer(text):
        if match.start() > position and text[position : match.start()].strip():
            segments.append(("answer", text[position : match.start()].strip()))
        segments.append((match.group(1), match.group(2)))
        position = match.end()
    if text[position:].strip():
        segments.append(("answer", text[position:].strip()))
    return segments


# -- ART --------------------------------------------------------------------------


def to_art_trajectory(traj: Trajectory) -> Any:
    """An `art.Trajectory`. Assistant turns with recorded token ids/logprobs become
    `Choice` objects whose logprob tokens are `token_id:N` (what ART's tokenizer
    reads back as ids); the others stay plain messages. Thinking goes inline,
    because the recorded tokens include it and ART renders the message content."""
    import art  # lazy: art pulls in heavy dependencies
    from openai.types.chat.chat_completion import Choice, ChoiceLogprobs
    from openai.types.chat.chat_completion_message import ChatCompletionMessage
    from openai.types.chat.chat_completion_token_logprob import ChatCompletionTokenLogprob

    by_index = {entry["message_index"]: entry for entry in (traj.logprobs or []) if entry}
    finish = traj.metrics.get("finish_reasons") or []
    items: list[Any] = []
    assistant_turn = 0
    for index, message in enumerate(traj.messages):
        if message.get("role") != "assistant":
            items.append(dict(message))
            continue
        content = inline_think(message)
        entry = by_index.get(index)
        if entry is None:
            items.append(
                {key: value for key, value in message.items() if key != "reasoning_content"} | {"content": content}
            )
        else:
            tokens = [
                ChatCompletionTokenLogprob(
                    token=f"token_id:{token_id}" if token_id is not None else text,
                    logprob=float("nan") if logprob is None else logprob,  # off-policy: not sampled
                    bytes=list(text.encode()),
                    top_logprobs=[],
                )
                for token_id, logprob, text in zip(entry["token_ids"], entry["logprobs"], entry["tokens"], strict=True)
            ]
            reason = finish[assistant_turn] if assistant_turn < len(finish) else None
            items.append(
                Choice(
                    index=0,
                    finish_reason=reason if reason in ("stop", "length", "tool_calls", "content_filter") else "stop",
                    message=ChatCompletionMessage.model_validate(
                        {"role": "assistant", "content": content, "tool_calls": message.get("tool_calls") or None}
                    ),
                    logprobs=ChoiceLogprobs(content=tokens),
                )
            )
        assistant_turn += 1
    metrics = {
        key: value
        for key, value in traj.metrics.items()
        if isinstance(value, int | float | bool) and not isinstance(value, str)
    }
    return art.Trajectory(
        messages_and_choices=items,
        tools=traj.tools or None,
        reward=traj.reward if traj.reward is not None else 0.0,
        metrics=metrics,
        metadata={
            "id": traj.id,
            "task_id": traj.task_id,
            "env": traj.env,
            "sample": traj.sample,
            "group": traj.group,
            "success": traj.success,
            "off_policy": traj.off_policy,
        },
    )


# -- files and CLI ------------------------------------------------------------------

CONVERTERS = {"sharegpt": to_sharegpt, "messages": to_messages, "interleaved": to_interleaved}


def export_file(
    src: str | Path,
    dst: str | Path,
    *,
    fmt: ExportFormat = "sharegpt",
    min_reward: float | None = None,
    success_only: bool = False,
    think: bool = True,
) -> tuple[int, int]:
    """Convert a trajectory JSONL file; returns (written, read). Writes atomically."""
    convert = CONVERTERS[fmt]
    raws = read_jsonl(src)  # the whole file first: a bad line fails before anything is written
    records: list[dict[str, Any]] = []
    for number, raw in enumerate(raws, start=1):
        try:
            traj = Trajectory.model_validate(raw)
        except ValidationError:
            raise ValueError(f"{src}: record {number} is not a trajectory") from None
        if exportable(traj, min_reward=min_reward, success_only=success_only):
            records.append(convert(traj, think=think))
    write_jsonl(dst, records)
    return len(records), len(raws)


def iter_trajectories(path: str | Path) -> Iterable[Trajectory]:
    for raw in iter_jsonl(path):
        yield Trajectory.model_validate(raw)


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(
        prog="python -m rollouts.export",
        description="Export trajectories (rollouts.generate output) for training. Infra failures are never exported.",
    )
    parser.add_argument("input", metavar="IN", help="trajectory JSONL")
    parser.add_argument("output", metavar="OUT", help="where to write the exported JSONL")
    parser.add_argument("--format", choices=FORMATS, default="sharegpt", help="output layout")
    parser.add_argument("--min-reward", type=float, default=None, help="keep only trajectories with reward >= X")
    parser.add_argument("--success-only", action="store_true", help="keep only trajectories the env verified")
    parser.add_argument("--no-think", action="store_true", help="drop <think> text from assistant turns")
    return parser


def main() -> int:
    args = build_parser().parse_args()
    src = Path(args.input)
    if not src.is_file():
        raise UsageError(f"no such file: {src}")
    try:
        written, read = export_file(
            src,
            args.output,
            fmt=args.format,
            min_reward=args.min_reward,
            success_only=args.success_only,
            think=not args.no_think,
        )
    except JsonlFormatError as exc:
        raise UsageError(str(exc)) from None
    except ValueError as exc:  # a line that is JSON but not a trajectory
        raise UsageError(str(exc)) from None
    print(f"exported {written} of {read} trajectories to {args.output} ({args.format})")
    return 0


if __name__ == "__main__":
    run_cli(main)
