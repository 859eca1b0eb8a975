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

Where each part lives (this module is the CLI and keeps every name importable from here):
`rollouts.formats.base` (format names, reasons, `Unexpressible`, the shared message helpers,
`export_messages`), `.selection` (what is exported), `.llamafactory`, `.swift`, `.chat` (trl and
openai), `.files` (`export_file`, `ExportResult`, `convert`).
"""

from __future__ import annotations

import sys
from pathlib import Path

from common.cli import ArgumentParser, UsageError, run_cli
from common.files import MODE_HELP
from common.flags import add_out_with_old_positional, out_from
from rollouts.jsonl import JsonlFormatError

from .formats.base import (
    ALIASES,
    BAD_ARGUMENTS,
    FORMATS,
    LATE_SYSTEM,
    NO_ASSISTANT,
    NOT_ALTERNATING,
    REMOVED,
    THINK_LEFT_OUT,
    TRIMMED_TOOL_RESULTS,
    TRIMMED_USER_TURN,
    ExportFormat,
    Unexpressible,
    export_messages,
    resolve_format,
)
from .formats.chat import OPENAI_KEYS, to_openai, to_trl
from .formats.files import CONVERTERS, ExportResult, convert, export_file
from .formats.llamafactory import (
    LLAMAFACTORY_ENTRY,
    OBSERVATION_JOIN,
    TOOL_CALL_CLOSE,
    TOOL_CALL_OPEN,
    llamafactory_to_messages,
    to_llamafactory,
    write_dataset_info,
)
from .formats.selection import exportable, selection_reason
from .formats.swift import to_swift
from .jsonl import iter_trajectories

__all__ = [
    "ALIASES",
    "BAD_ARGUMENTS",
    "CONVERTERS",
    "FORMATS",
    "LATE_SYSTEM",
    "LLAMAFACTORY_ENTRY",
    "NOT_ALTERNATING",
    "NO_ASSISTANT",
    "OBSERVATION_JOIN",
    "OPENAI_KEYS",
    "REMOVED",
    "THINK_LEFT_OUT",
    "TOOL_CALL_CLOSE",
    "TOOL_CALL_OPEN",
    "TRIMMED_TOOL_RESULTS",
    "TRIMMED_USER_TURN",
    "ExportFormat",
    "ExportResult",
    "Unexpressible",
    "build_parser",
    "convert",
    "export_file",
    "export_messages",
    "exportable",
    "iter_trajectories",
    "llamafactory_to_messages",
    "main",
    "resolve_format",
    "selection_reason",
    "to_llamafactory",
    "to_openai",
    "to_swift",
    "to_trl",
    "write_dataset_info",
]


# -- CLI --------------------------------------------------------------------------


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
    add_out_with_old_positional(parser, help=f"the exported JSONL ({MODE_HELP})")
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
