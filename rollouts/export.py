"""Trajectories out to the files training tools load unchanged, one format per consumer.

    python -m rollouts.export --format llamafactory --min-reward 0.5 data/trajectories.jsonl data/sft.jsonl

Formats (one JSON object per line), each named after the tool that reads it and checked against
that tool's own loading code by `scripts/check_exports.sh` (results in docs/exports.md):

- `llamafactory` — LLaMA-Factory's sharegpt layout: `{"conversations": [{"from":
  "human"|"function_call"|"observation"|"gpt", "value": ...}], "system": "...", "tools": "<JSON
  string>"}`, plus its entry in `dataset_info.json` next to the output file (merged into one that
  is there; the entry is named after the output file, `--dataset-name` to choose), so
  `dataset: NAME` / `dataset_dir: FOLDER` loads it with system prompt and tools. The calls of one
  turn are one `function_call` (a JSON list when there are several), their results one
  `observation` (joined with `</tool_response><tool_response>`, as LLaMA-Factory's own OpenAI
  converter does). Text the assistant wrote beside its calls is kept, the calls then wrapped in
  `<tool_call>...</tool_call>`, which LLaMA-Factory >= 0.9.4 splits off (older releases cannot
  read such a turn). Thinking is a `<think>\\n...\\n</think>\\n\\n` prefix, LLaMA-Factory's
  `thought_words`.
- `swift` — ms-swift's agent layout: `{"messages": [{"role": "system"|"user"|"assistant"|
  "tool_call"|"tool_response", "content": str}], "tools": "<JSON string>"}`; one `tool_call`
  message per call (parallel calls are consecutive ones, as ms-swift's agent templates expect),
  one `tool_response` per result; thinking and text beside the calls go in an `assistant` message
  before them (ms-swift merges it with the calls), thinking inline as `<think>`.
- `trl` — TRL `SFTTrainer`'s conversational layout: `{"messages": [OpenAI messages], "tools":
  "<JSON string>"}`; `tool_calls[].function.arguments` stay JSON strings (OpenAI's shape) and
  `tools` a JSON string, which SFTTrainer decodes: as Arrow columns, dicts of differing keys would
  be merged into one struct and filled with nulls. Thinking inline as `<think>`, which Qwen3's
  chat template splits off. A chat template that needs `arguments` as a mapping (Llama 3,
  Qwen2.5's `tojson`) renders them as a quoted string.
- `openai` — OpenAI fine-tuning: only the keys it accepts (`messages`, `tools`; no id, no
  reward), assistant `tool_calls` with ids, `tool` messages answering them. Thinking is always
  left out: OpenAI's format has no field for it and would train it as visible text (counted).

Old names, for one release, with a warning: `sharegpt` is `llamafactory`, `messages` is `trl`
(the old `messages` records also held `id` and `reward`). `interleaved` is gone: no trainer read it.

What a format cannot express is handled and counted, never dropped silently (`ExportResult`, and
the CLI's printout): a trajectory that ends on tool results (a turn limit cut it) loses those
results, so it ends on its last assistant turn, the calls; one whose tool-call arguments are not a
JSON object, or whose turns break the consumer's rules (e.g. a system message after the start in
`llamafactory`), is skipped with its reason. Infra-failed trajectories are never exported (they
say nothing about the model); `--min-reward` also drops unscored ones. ART's own
`art.Trajectory` is built by `judges.art_trajectory` (RULER and GRPO), so rollouts never need ART.
"""

from __future__ import annotations

import json
import os
import sys
import warnings
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationError

from common.cli import ArgumentParser, UsageError, run_cli
from common.flags import add_out_with_old_positional, out_from
from contracts import Trajectory
from rollouts.jsonl import JsonlFormatError, iter_jsonl, read_jsonl, write_jsonl

from .parse import THINK_CLOSE, THINK_OPEN, inline_think, new_call_id, split_think

ExportFormat = Literal["llamafactory", "swift", "trl", "openai"]
FORMATS: tuple[ExportFormat, ...] = ("llamafactory", "swift", "trl", "openai")
# Old names kept for one release: what each now means.
ALIASES: dict[str, ExportFormat] = {"sharegpt": "llamafactory", "messages": "trl"}
REMOVED = {"interleaved": "no trainer reads it; use --format trl or llamafactory"}

OBSERVATION_JOIN = "\n</tool_response>\n<tool_response>\n"
TOOL_CALL_OPEN, TOOL_CALL_CLOSE = "<tool_call>", "</tool_call>"  # LLaMA-Factory's default tool_call_words
OPENAI_KEYS = frozenset({"messages", "tools", "parallel_tool_calls"})

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


# -- selection ------------------------------------------------------------------


def selection_reason(traj: Trajectory, *, min_reward: float | None = None, success_only: bool = False) -> str | None:
    """Why a trajectory is not exported, or None when it is."""
    if traj.is_infra_failure:
        return "infra failure"
    if success_only and not traj.success:
        return "not verified successful"
    if min_reward is not None and (traj.reward is None or traj.reward < min_reward):
        return "unscored" if traj.reward is None else f"reward below {min_reward}"
    return None


def exportable(traj: Trajectory, *, min_reward: float | None = None, success_only: bool = False) -> bool:
    return selection_reason(traj, min_reward=min_reward, success_only=success_only) is None


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


def _text(content: Any) -> str:
    if content is None:
        return ""
    return content if isinstance(content, str) else json.dumps(content, ensure_ascii=False)


def _think_and_text(message: dict[str, Any]) -> tuple[str | None, str]:
    """An assistant turn's thinking (from `reasoning_content`, or inline tags) and its text."""
    text = _text(message.get("content"))
    reasoning = message.get("reasoning_content")
    if not reasoning and (THINK_OPEN in text or THINK_CLOSE in text):
        reasoning, text = split_think(text)
    return (reasoning or None), text


def _think_prefix(reasoning: str | None) -> str:
    return f"{THINK_OPEN}\n{reasoning}\n{THINK_CLOSE}\n\n" if reasoning else ""


def _arguments(call: dict[str, Any]) -> dict[str, Any]:
    arguments = call.get("function", {}).get("arguments")
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments) if arguments.strip() else {}
        except json.JSONDecodeError:
            raise Unexpressible(BAD_ARGUMENTS) from None
    if arguments is None:
        arguments = {}
    if not isinstance(arguments, dict):
        raise Unexpressible(BAD_ARGUMENTS)
    return arguments


def _prepared(traj: Trajectory) -> tuple[list[dict[str, Any]], list[str]]:
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
            _arguments(call)
    return messages, notes


def _call_objects(tool_calls: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{"name": call.get("function", {}).get("name", ""), "arguments": _arguments(call)} for call in tool_calls]


# -- llamafactory -------------------------------------------------------------------

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


def _llamafactory(traj: Trajectory, *, think: bool = True) -> tuple[dict[str, Any], list[str]]:
    messages, notes = _prepared(traj)
    system = ""
    conversations: list[dict[str, str]] = []
    pending: list[str] = []  # tool results of one turn, merged into one observation

    def flush() -> None:
        if pending:
            conversations.append({"from": "observation", "value": OBSERVATION_JOIN.join(pending)})
            pending.clear()

    for index, message in enumerate(messages):
        role = message.get("role")
        text = _text(message.get("content"))
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
                reasoning, answer = _think_and_text(message)
                prefix = _think_prefix(reasoning) if think else ""
                if message.get("tool_calls"):
                    calls = _call_objects(message["tool_calls"])
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
    return _llamafactory(traj, think=think)[0]


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
            content = (_think_prefix(reasoning) if reasoning is not None else "") + text
            messages.append({"role": "assistant", "content": content, "tool_calls": tool_calls})
        elif kind == "observation":
            parts = value.split(OBSERVATION_JOIN) if len(last_ids) > 1 else [value]
            for call_id, part in zip(last_ids, parts, strict=False):
                messages.append({"role": "tool", "tool_call_id": call_id, "content": part})
        else:
            raise ValueError(f"unknown sharegpt role {kind!r}")
    return messages


def _dataset_info(path: Path) -> dict[str, Any]:
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
    info = _dataset_info(path)
    info[name] = {"file_name": file_name, **LLAMAFACTORY_ENTRY}
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(info, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path


# -- swift --------------------------------------------------------------------------


def _swift(traj: Trajectory, *, think: bool = True) -> tuple[dict[str, Any], list[str]]:
    messages, notes = _prepared(traj)
    out: list[dict[str, str]] = []
    for message in messages:
        role = message.get("role")
        if role in ("system", "user"):
            out.append({"role": role, "content": _text(message.get("content"))})
        elif role == "tool":
            out.append({"role": "tool_response", "content": _text(message.get("content"))})
        elif role == "assistant":
            reasoning, answer = _think_and_text(message)
            head = (_think_prefix(reasoning) if think else "") + answer
            calls = message.get("tool_calls") or []
            if head or not calls:
                out.append({"role": "assistant", "content": head})
            for call in _call_objects(calls):
                out.append({"role": "tool_call", "content": json.dumps(call, ensure_ascii=False)})
        else:
            raise Unexpressible(f"a message with role {role!r}")
    return {"messages": out, "tools": json.dumps(traj.tools, ensure_ascii=False) if traj.tools else ""}, notes


def to_swift(traj: Trajectory, *, think: bool = True) -> dict[str, Any]:
    """One ms-swift agent record; raises `Unexpressible` for what it cannot hold."""
    return _swift(traj, think=think)[0]


# -- trl and openai -------------------------------------------------------------------


def _openai_calls(tool_calls: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {
            "id": call.get("id") or new_call_id(),
            "type": "function",
            "function": {
                "name": call.get("function", {}).get("name", ""),
                "arguments": json.dumps(_arguments(call), ensure_ascii=False),
            },
        }
        for call in tool_calls
    ]


def _chat_messages(messages: list[dict[str, Any]], *, think: bool) -> tuple[list[dict[str, Any]], int]:
    """OpenAI messages with only the keys chat formats know; returns them and how many assistant
    turns lost their thinking."""
    out: list[dict[str, Any]] = []
    dropped = 0
    for message in messages:
        role = message.get("role")
        if role == "assistant":
            reasoning, answer = _think_and_text(message)
            dropped += bool(reasoning and not think)
            clean: dict[str, Any] = {
                "role": "assistant",
                "content": (_think_prefix(reasoning) if think else "") + answer,
            }
            if message.get("tool_calls"):
                clean["tool_calls"] = _openai_calls(message["tool_calls"])
            out.append(clean)
        elif role == "tool":
            out.append(
                {
                    "role": "tool",
                    "tool_call_id": message.get("tool_call_id", ""),
                    "content": _text(message.get("content")),
                }
            )
        elif role in ("system", "user", "developer"):
            out.append({"role": role, "content": _text(message.get("content"))})
        else:
            raise Unexpressible(f"a message with role {role!r}")
    return out, dropped


def _trl(traj: Trajectory, *, think: bool = True) -> tuple[dict[str, Any], list[str]]:
    messages, notes = _prepared(traj)
    out, _ = _chat_messages(messages, think=think)
    return {"messages": out, "tools": json.dumps(traj.tools, ensure_ascii=False) if traj.tools else ""}, notes


def to_trl(traj: Trajectory, *, think: bool = True) -> dict[str, Any]:
    """One TRL SFTTrainer record (conversational, with tools)."""
    return _trl(traj, think=think)[0]


def _openai(traj: Trajectory, *, think: bool = True) -> tuple[dict[str, Any], list[str]]:
    del think  # always left out: OpenAI would train it as visible text
    messages, notes = _prepared(traj)
    out, dropped = _chat_messages(messages, think=False)
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
    return _openai(traj)[0]


# -- files and CLI ------------------------------------------------------------------

CONVERTERS: dict[ExportFormat, Callable[..., tuple[dict[str, Any], list[str]]]] = {
    "llamafactory": _llamafactory,
    "swift": _swift,
    "trl": _trl,
    "openai": _openai,
}


def convert(traj: Trajectory, fmt: ExportFormat, *, think: bool = True) -> tuple[dict[str, Any], list[str]]:
    """One record in `fmt` and what was changed to fit it; raises `Unexpressible` (the reason)."""
    return CONVERTERS[fmt](traj, think=think)


class ExportResult(BaseModel):
    """What `export_file` did: every trajectory read is written, not selected, or skipped."""

    format: ExportFormat
    output: Path
    read: int = 0
    written: int = 0
    not_selected: dict[str, int] = Field(default_factory=dict)  # reason -> trajectories
    changed: dict[str, int] = Field(default_factory=dict)  # written, changed to fit: reason -> trajectories
    skipped: dict[str, int] = Field(default_factory=dict)  # selected, but the format cannot hold them
    dataset_info: Path | None = None  # llamafactory: the dataset_info.json holding the entry
    dataset_name: str | None = None

    def summary(self) -> str:
        def counts(items: dict[str, int]) -> str:
            return ", ".join(f"{n} {reason}" for reason, n in sorted(items.items(), key=lambda kv: -kv[1]))

        lines = [f"wrote {self.written} of {self.read} trajectories to {self.output} ({self.format})"]
        if self.changed:
            lines.append(f"  changed {sum(self.changed.values())}: {counts(self.changed)}")
        if self.skipped:
            lines.append(f"  skipped {sum(self.skipped.values())}: {counts(self.skipped)}")
        if self.not_selected:
            lines.append(f"  not selected {sum(self.not_selected.values())}: {counts(self.not_selected)}")
        if self.dataset_info is not None:
            lines.append(f"  LLaMA-Factory dataset {self.dataset_name!r} in {self.dataset_info}")
        return "\n".join(lines)


def export_file(
    src: str | Path,
    dst: str | Path,
    *,
    fmt: str = "llamafactory",
    min_reward: float | None = None,
    success_only: bool = False,
    think: bool = True,
    dataset_name: str | None = None,
) -> ExportResult:
    """Convert a trajectory JSONL file, counting what was changed or left out and why.

    Writes atomically; `llamafactory` also writes its entry (named `dataset_name`, default the
    output file's stem) into `dataset_info.json` beside the output. An old format name works, with a
    `FutureWarning`."""
    name, warning = resolve_format(fmt)
    if warning:
        warnings.warn(warning, FutureWarning, stacklevel=2)
    dst = Path(dst)
    if name == "llamafactory":
        _dataset_info(dst.parent / "dataset_info.json")  # a broken one fails before anything is written
    raws = read_jsonl(src)  # the whole file first: a bad line fails before anything is written
    result = ExportResult(format=name, output=dst, read=len(raws))
    records: list[dict[str, Any]] = []
    not_selected: Counter[str] = Counter()
    changed: Counter[str] = Counter()
    skipped: Counter[str] = Counter()
    for number, raw in enumerate(raws, start=1):
        try:
            traj = Trajectory.model_validate(raw)
        except ValidationError:
            raise ValueError(f"{src}: record {number} is not a trajectory") from None
        reason = selection_reason(traj, min_reward=min_reward, success_only=success_only)
        if reason is not None:
            not_selected[reason] += 1
            continue
        try:
            record, notes = convert(traj, name, think=think)
        except Unexpressible as exc:
            skipped[str(exc)] += 1
            continue
        changed.update(set(notes))
        records.append(record)
    write_jsonl(dst, records)
    result.written = len(records)
    result.not_selected, result.changed, result.skipped = dict(not_selected), dict(changed), dict(skipped)
    if name == "llamafactory":
        result.dataset_name = dataset_name or dst.stem
        result.dataset_info = write_dataset_info(dst.parent, result.dataset_name, dst.name)
    return result


def iter_trajectories(path: str | Path) -> Iterable[Trajectory]:
    for raw in iter_jsonl(path):
        yield Trajectory.model_validate(raw)


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(
        prog="python -m rollouts.export",
        description=(
            "Export trajectories (rollouts.generate output) for a trainer: llamafactory (also writes its "
            "dataset_info.json entry), swift (ms-swift), trl (SFTTrainer), openai (OpenAI fine-tuning). "
            "Infra failures are never exported; what a format cannot hold is counted in the printout."
        ),
    )
    parser.add_argument("input", metavar="IN", help="trajectory JSONL")
    add_out_with_old_positional(parser, help="the exported JSONL")
    parser.add_argument(
        "--format",
        choices=(*FORMATS, *ALIASES, *REMOVED),
        default="llamafactory",
        help="the consumer to write for (sharegpt and messages: old names of llamafactory and trl)",
    )
    parser.add_argument("--min-reward", type=float, default=None, help="keep only trajectories with reward >= X")
    parser.add_argument("--success-only", action="store_true", help="keep only trajectories the env verified")
    parser.add_argument(
        "--no-think", action="store_true", help="drop <think> text from assistant turns (openai always drops it)"
    )
    parser.add_argument(
        "--dataset-name",
        default=None,
        help="llamafactory: the entry's name in dataset_info.json (default: OUT's file name without .jsonl)",
    )
    return parser


def main() -> int:
    args = build_parser().parse_args()
    out = out_from(args)
    src = Path(args.input)
    if not src.is_file():
        raise UsageError(f"no such file: {src}")
    try:
        fmt, warning = resolve_format(args.format)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if warning:
        print(f"warning: {warning}", file=sys.stderr)
    try:
        result = export_file(
            src,
            out,
            fmt=fmt,
            min_reward=args.min_reward,
            success_only=args.success_only,
            think=not args.no_think,
            dataset_name=args.dataset_name,
        )
    except JsonlFormatError as exc:
        raise UsageError(str(exc)) from None
    except ValueError as exc:  # a line that is JSON but not a trajectory; a dataset_info.json that is not JSON
        raise UsageError(str(exc)) from None
    print(result.summary())
    return 0


if __name__ == "__main__":
    run_cli(main)
