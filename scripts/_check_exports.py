"""Each export loaded by its consumer's own code (run by scripts/check_exports.sh, in the consumer's venv).

    python scripts/_check_exports.py llamafactory DATA_DIR DATASET_NAME TOKENIZER_DIR
    python scripts/_check_exports.py swift FILE.jsonl TOKENIZER_DIR
    python scripts/_check_exports.py trl FILE.jsonl MODEL_DIR
    python scripts/_check_exports.py openai FILE.jsonl

Imports nothing of mcpgym (the consumer venvs do not have it). Prints one JSON line:
{"format", "consumer", "version", "rows", "loaded", "issues": [...]}; an issue is anything the
consumer dropped or rendered without the system prompt, the tools, the calls or the thinking.
"""

from __future__ import annotations

import json
import sys
import tempfile
from importlib.metadata import version
from pathlib import Path
from typing import Any


def read_lines(path: str | Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]


def report(fmt: str, consumer: str, dist: str, rows: int, loaded: int, issues: list[str], **extra: Any) -> None:
    print(
        json.dumps(
            {
                "format": fmt,
                "consumer": consumer,
                "version": version(dist),
                "rows": rows,
                "loaded": loaded,
                "issues": issues,
                **extra,
            }
        )
    )


def rendering_issues(texts: list[str], sources: list[dict[str, Any]]) -> list[str]:
    """What a rendered training text lost: the system prompt, the tools, the calls, the thinking."""
    issues = []
    for index, (text, src) in enumerate(zip(texts, sources, strict=True)):
        want = src["want"]
        for label, needle in want.items():
            if needle and needle not in text:
                issues.append(f"row {index}: {label} missing ({needle[:40]!r})")
        for needle in set(src["calls"]):  # every call, the parallel ones too, with its arguments
            if text.count(needle) < src["calls"].count(needle):
                issues.append(f"row {index}: call missing ({needle[:60]!r})")
    return issues


def sample(texts: list[str], wants: list[dict[str, Any]]) -> str:
    """The rendering of the first row that thinks and talks beside its calls (else the first)."""
    for text, want in zip(texts, wants, strict=False):
        if "thinking" in want["want"] and "assistant text" in want["want"]:
            return text
    return texts[0] if texts else ""


def call_objects(row: dict[str, Any], fmt: str) -> list[dict[str, Any]]:
    """Every call in an exported row as {"name", "arguments": dict}."""
    if fmt == "llamafactory":
        out = []
        for turn in row["conversations"]:
            if turn["from"] == "function_call":
                body = turn["value"].split("</think>")[-1]
                body = body.split("<tool_call>", 1)[1].rsplit("</tool_call>", 1)[0] if "<tool_call>" in body else body
                calls = json.loads(body)
                out += calls if isinstance(calls, list) else [calls]
        return out
    if fmt == "swift":
        return [json.loads(m["content"]) for m in row["messages"] if m["role"] == "tool_call"]
    return [
        {"name": c["function"]["name"], "arguments": json.loads(c["function"]["arguments"])}
        for m in row["messages"]
        for c in m.get("tool_calls") or []
    ]


def expectations(rows: list[dict[str, Any]], fmt: str) -> list[dict[str, Any]]:
    """What each exported row should show once rendered, read from the export itself."""
    out = []
    for row in rows:
        want: dict[str, str] = {}
        if fmt == "llamafactory":
            tools = json.loads(row["tools"]) if row["tools"] else []
            want["system prompt"] = row["system"][:60]
            calls = [t["value"] for t in row["conversations"] if t["from"] == "function_call"]
            answers = [t["value"] for t in row["conversations"] if t["from"] == "gpt"]
            values = calls + answers
        else:
            messages = row["messages"]
            tools = json.loads(row["tools"]) if isinstance(row.get("tools"), str) and row["tools"] else []
            want["system prompt"] = next((m["content"][:60] for m in messages if m["role"] == "system"), "")
            values = [m["content"] for m in messages if m["role"] == "assistant" and m.get("content")]
            calls = [m["content"] for m in messages if m["role"] == "tool_call"]
            calls += [c["function"]["name"] for m in messages for c in m.get("tool_calls") or []]
        rendered_calls = [
            f'"arguments": {json.dumps(c["arguments"], ensure_ascii=False)}' for c in call_objects(row, fmt)
        ]
        if tools:
            first = tools[0].get("function", tools[0])
            want["tool schema"] = first["name"]
        if calls:
            want["a tool call"] = "<tool_call>"
        thinking = [v.split("</think>")[0].split("<think>")[-1].strip() for v in values if "<think>" in v]
        if thinking:
            want["thinking"] = thinking[-1][:40]
        texts = [v.split("</think>")[-1].split("<tool_call>")[0].strip() for v in values]
        texts = [t for t in texts if t and not t.startswith(("{", "["))]
        if texts:
            want["assistant text"] = texts[0][:40]
        out.append({"want": want, "calls": rendered_calls})
    return out


# -- LLaMA-Factory ---------------------------------------------------------------------


def check_llamafactory(data_dir: str, name: str, tokenizer_dir: str) -> None:
    from llamafactory.data import get_dataset, get_template_and_fix_tokenizer
    from llamafactory.data.loader import _get_merged_dataset
    from llamafactory.hparams import get_train_args
    from llamafactory.model import load_tokenizer

    info = json.loads((Path(data_dir) / "dataset_info.json").read_text())
    rows = read_lines(Path(data_dir) / info[name]["file_name"])
    with tempfile.TemporaryDirectory() as out:
        model_args, data_args, training_args, _, _ = get_train_args(
            {
                "stage": "sft",
                "do_train": True,
                "model_name_or_path": tokenizer_dir,
                "dataset": name,
                "dataset_dir": data_dir,
                "template": "qwen3",  # Qwen3's tool format (hermes <tool_call>) and thought words
                "cutoff_len": 8192,
                "output_dir": out,
                "overwrite_cache": True,
                "finetuning_type": "lora",
                "report_to": "none",
            }
        )
        tokenizer = load_tokenizer(model_args)["tokenizer"]
        template = get_template_and_fix_tokenizer(tokenizer, data_args)
        aligned = _get_merged_dataset(data_args.dataset, model_args, data_args, training_args, "sft")
        issues = []
        for index, row in enumerate(aligned):
            if not row["_prompt"]:
                issues.append(f"row {index}: skipped by the converter")
            if not row["_system"]:
                issues.append(f"row {index}: system prompt lost (_system empty)")
            if not row["_tools"]:
                issues.append(f"row {index}: tools lost (_tools empty)")
        module = get_dataset(template, model_args, data_args, training_args, "sft", tokenizer)
        train = module["train_dataset"]
        texts = [tokenizer.decode(ids) for ids in train["input_ids"]]
        if len(texts) == len(rows):
            issues += rendering_issues(texts, expectations(rows, "llamafactory"))
        else:
            issues.append(f"{len(rows) - len(texts)} rows dropped by the tokenizing step")
        trained = [tokenizer.decode([t for t in labels if t >= 0]) for labels in train["labels"]]
        issues += [f"row {i}: no trained tokens" for i, t in enumerate(trained) if not t.strip()]
    report(
        "llamafactory",
        "LLaMA-Factory get_dataset (sft, template qwen3)",
        "llamafactory",
        len(rows),
        len(train),
        issues,
        sample=sample(texts, expectations(rows, "llamafactory")),
    )


# -- ms-swift --------------------------------------------------------------------------


def check_swift(path: str, tokenizer_dir: str) -> None:
    from swift.dataset import load_dataset
    from swift.model import get_processor
    from swift.template import get_template

    rows = read_lines(path)
    # ms-swift's default (strict=False): a row its preprocessing cannot read is dropped with a log line
    dataset, _ = load_dataset([path], load_from_cache_file=False)
    issues = []
    if len(dataset) != len(rows):
        issues.append(f"{len(rows) - len(dataset)} of {len(rows)} rows dropped by ms-swift's preprocessing")
    processor = get_processor(tokenizer_dir, model_type="qwen3", download_model=False)
    template = get_template(processor, template_type="qwen3", agent_template="hermes")
    template.set_mode("train")
    texts = []
    for index, row in enumerate(dataset):
        try:
            encoded = template.encode(row)
        except Exception as exc:  # what the consumer raises is the finding
            issues.append(f"row {index}: encode failed: {type(exc).__name__}: {exc}")
            continue
        texts.append(processor.decode(encoded["input_ids"]))
        if not any(label >= 0 for label in encoded["labels"]):
            issues.append(f"row {index}: no trained tokens")
    in_layout = all("messages" in row for row in rows)  # the control feeds it another layout
    if len(texts) == len(rows) and in_layout:
        issues += rendering_issues(texts, expectations(rows, "swift"))
    report(
        "swift",
        "ms-swift load_dataset + qwen3 template, hermes agent template",
        "ms-swift",
        len(rows),
        len(texts),
        issues,
        sample=sample(texts, expectations(rows, "swift")) if in_layout else "",
    )


# -- TRL -------------------------------------------------------------------------------


def check_trl(path: str, model_dir: str) -> None:
    from datasets import load_dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    rows = read_lines(path)
    dataset = load_dataset("json", data_files=path, split="train")
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    with tempfile.TemporaryDirectory() as out:
        args = SFTConfig(
            output_dir=out,
            assistant_only_loss=True,
            max_length=None,
            report_to="none",
            dataset_num_proc=None,
            bf16=False,
            use_cpu=True,
        )
        trainer = SFTTrainer(model=model, args=args, train_dataset=dataset, processing_class=tokenizer)
        train = trainer.train_dataset
        texts = [tokenizer.decode(ids) for ids in train["input_ids"]]
        issues = []
        masks = train["assistant_masks"] if "assistant_masks" in train.column_names else None
        labels = train["labels"] if "labels" in train.column_names else None
        for index in range(len(train)):
            trained = (1 in masks[index]) if masks is not None else any(t != -100 for t in labels[index])
            if not trained:
                issues.append(f"row {index}: no assistant tokens")
        if len(texts) == len(rows):
            issues += rendering_issues(texts, expectations(rows, "trl"))
        else:
            issues.append(f"{len(rows) - len(texts)} rows dropped")
        batch = trainer.data_collator([train[i] for i in range(min(4, len(train)))])  # what training is fed
        trained = int((batch["labels"] != -100).sum())
        if not trained:
            issues.append("the collated batch trains no token")
    report(
        "trl",
        "TRL SFTTrainer dataset prep (assistant_only_loss, the model folder's chat template) + collator",
        "trl",
        len(rows),
        len(texts),
        issues,
        batch=list(batch["input_ids"].shape),
        trained_tokens=trained,
        sample=sample(texts, expectations(rows, "trl")),
    )


# -- OpenAI ------------------------------------------------------------------------------

# OpenAI's published format checks ("Data preparation and analysis for chat model fine-tuning",
# the openai-cookbook), reimplemented here and extended to tools as the fine-tuning guide
# describes them: the `openai` package has no file validator, so each message and tool is also
# validated against the package's own request types (ChatCompletionMessageParam, ...ToolParam).
TOP_KEYS = {"messages", "tools", "parallel_tool_calls"}
MESSAGE_KEYS = {
    "system": {"role", "content", "name"},
    "developer": {"role", "content", "name"},
    "user": {"role", "content", "name"},
    "assistant": {"role", "content", "name", "tool_calls", "weight", "refusal"},
    "tool": {"role", "content", "tool_call_id"},
}


def openai_format_errors(line: dict[str, Any]) -> list[str]:
    from openai.types.chat import ChatCompletionFunctionToolParam, ChatCompletionMessageParam
    from pydantic import TypeAdapter, ValidationError

    message_type = TypeAdapter(ChatCompletionMessageParam)
    tool_type = TypeAdapter(ChatCompletionFunctionToolParam)
    errors = []
    if not isinstance(line, dict):
        return ["data_type"]
    if set(line) - TOP_KEYS:
        errors.append(f"unrecognized_key {sorted(set(line) - TOP_KEYS)}")
    messages = line.get("messages")
    if not messages:
        return [*errors, "missing_messages_list"]
    open_calls: set[str] = set()
    for message in messages:
        role = message.get("role")
        if role not in MESSAGE_KEYS:
            errors.append(f"unrecognized_role {role!r}")
            continue
        if set(message) - MESSAGE_KEYS[role]:
            errors.append(f"message_unrecognized_key {sorted(set(message) - MESSAGE_KEYS[role])}")
        content, calls = message.get("content"), message.get("tool_calls")
        if (not content and not calls) or (content is not None and not isinstance(content, str)):
            errors.append(f"missing_content ({role})")
        if "weight" in message and message["weight"] not in (0, 1):
            errors.append("invalid_weight")
        for call in calls or []:
            arguments = call.get("function", {}).get("arguments")
            try:
                if not isinstance(json.loads(arguments), dict):
                    errors.append("tool_call_arguments_not_object")
            except (TypeError, json.JSONDecodeError):
                errors.append("tool_call_arguments_not_json_string")
            open_calls.add(call.get("id"))
        if role == "tool" and message.get("tool_call_id") not in open_calls:
            errors.append("tool_message_without_call")
        try:
            message_type.validate_python(message)
        except ValidationError as exc:
            errors.append(f"openai_type {exc.errors()[0]['loc']}: {exc.errors()[0]['msg']}")
    if not any(message.get("role") == "assistant" for message in messages):
        errors.append("example_missing_assistant_message")
    tools = line.get("tools") or []
    if not isinstance(tools, list):
        return [*errors, "tools_not_a_list"]
    for tool in tools:
        try:
            tool_type.validate_python(tool)
        except ValidationError as exc:
            errors.append(f"tool_type {exc.errors()[0]['loc']}: {exc.errors()[0]['msg']}")
    if "<think>" in json.dumps(line):
        errors.append("thinking_as_visible_text")
    return errors


def check_openai(path: str) -> None:
    rows = read_lines(path)
    issues = [f"row {i}: {error}" for i, row in enumerate(rows) for error in openai_format_errors(row)]
    bad_rows = {issue.split(":")[0] for issue in issues}
    report(
        "openai",
        "OpenAI cookbook format checks + openai package types",
        "openai",
        len(rows),
        len(rows) - len(bad_rows),
        issues,
    )


# -- the shell script's bookkeeping (stdlib only) ---------------------------------------------


def label(name: str) -> None:
    """A check's JSON line from stdin, its format renamed to the check's label."""
    print(json.dumps(json.loads(sys.stdin.read()) | {"format": name}))


def raised(name: str, log: str) -> None:
    """The line for a check whose consumer raised: its last log line is the issue."""
    lines = [line for line in Path(log).read_text(errors="replace").splitlines() if line.strip()]
    print(
        json.dumps(
            {
                "format": name,
                "consumer": f"(raised, see {log})",
                "version": "",
                "rows": 0,
                "loaded": 0,
                "issues": [lines[-1][:200] if lines else "no output"],
            }
        )
    )


def table(results: str, controls: str) -> None:
    """The markdown tables of both runs; exit 1 on an issue in the exports or a control not flagged."""

    def show(path: str) -> list[dict[str, Any]]:
        rows = read_lines(path)
        print("| format | consumer | version | rows | loaded | issues |")
        print("|---|---|---|---|---|---|")
        for r in rows:
            issues = "; ".join(r["issues"][:3]) + (f" (+{len(r['issues']) - 3} more)" if len(r["issues"]) > 3 else "")
            issues = issues.replace("|", "\\|") or "none"
            print(f"| `{r['format']}` | {r['consumer']} | {r['version']} | {r['rows']} | {r['loaded']} | {issues} |")
        return rows

    print()
    bad = [r["format"] for r in show(results) if r["issues"] or r["loaded"] != r["rows"]]
    print("\ncontrols (inputs the issue found broken: each must be flagged)\n")
    blind = [r["format"] for r in show(controls) if not r["issues"]]
    if bad or blind:
        print(f"\nFAILED: issues in {bad}; controls not flagged: {blind}")
        raise SystemExit(1)
    print("\nOK: every export loads in its consumer with nothing lost, and every control is flagged")


if __name__ == "__main__":
    command, *argv = sys.argv[1:]
    commands = {
        "llamafactory": check_llamafactory,
        "swift": check_swift,
        "trl": check_trl,
        "openai": check_openai,
        "label": label,
        "raised": raised,
        "table": table,
    }
    commands[command](*argv)
