"""Domain questions from an env's tool list, written by an LLM.

    python -m rollouts.questions --env energy -n 200 --out questions.jsonl \\
        --base-url http://localhost:8000/v1 --model Qwen3-8B

Each request asks for a batch of questions, many requests run at once, and every accepted
question is appended to `--out` as it arrives, so a killed run resumes where it stopped.

Structured output (`--structured auto|on|off`, default auto). With `on` or `auto` each request
carries `response_format: {"type": "json_schema", ...}` with the batch's schema, in which a
question's `tools` is an enum of the env's real tool names and the question text is bounded in
length: vLLM (0.32 maps it onto `structured_outputs.json`, decoded by xgrammar) then only lets
the model write schema-valid JSON naming real tools, so even a small local model yields usable
questions. A server that refuses the schema (an HTTP 400 or 422, e.g. a hosted model without
json_schema support) is asked the same request again without it; when that plain request is
answered, `auto` says so in one line and asks every later request as plain JSON (`on` counts
the refusal as a failed request instead; `off` never sends the schema). Plain replies are read
leniently: a code fence or text around the JSON is ignored, and the complete questions of a
reply cut off mid-JSON are kept.

Every question is checked whatever the server did: a question that names a tool the env does
not have is dropped (it asks for something the tools cannot do), so is one that does not fit the
schema, and questions are de-duplicated on normalised text (case, accents, punctuation and
spacing ignored), also against what the file already holds.

Each line: `{"id", "question", "difficulty": "easy"|"medium"|"hard", "tools": [...], "env"}`,
the input of `python -m rollouts.generate --questions FILE` (tasks of kind "open").
One run per `--out` (rollouts.lock: a second one exits 2 naming the first one's pid).

Exit code (the README's rule, common.cli.infra_exit_code, plus one outcome of its own):
- 1: every request failed on infrastructure (one `error:` line naming the server and the error);
- 3: the server answered but no usable question came back (one `error:` line with the counts
  of what was dropped and why);
- 0: all `-n` questions are in `--out`, or some came back (one `warning:` line with the counts;
  a rerun asks for the rest), also when some requests failed (one `warning:` line);
- 2: bad input.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import re
import sys
import unicodedata
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Literal

import anyio
from pydantic import BaseModel, Field, ValidationError
from tqdm.auto import tqdm

from common.cli import ArgumentParser, UsageError, infra_exit_code, run_cli
from common.flags import add_flag, add_policy_endpoint, apply_no_progress, progress_off
from common.redact import redact_url
from contracts import Task
from rollouts.jsonl import JsonlAppender, JsonlFormatError, iter_jsonl
from rollouts.lock import output_lock
from rollouts.resume import resume_records

from .errors import describe_error, is_transient
from .policy import ChatPolicy, PolicyConfig
from .rollout import RetryConfig

Difficulty = Literal["easy", "medium", "hard"]
StructuredMode = Literal["auto", "on", "off"]

# Bounds the schema puts on a question: a small model constrained to JSON would otherwise happily
# write one string (or list one tool) until it runs out of tokens, and the whole batch is lost.
QUESTION_MIN_CHARS = 10
QUESTION_MAX_CHARS = 300
MAX_TOOLS_PER_QUESTION = 4


class GeneratedQuestion(BaseModel):
    question: str = Field(min_length=1)
    difficulty: Difficulty
    tools: list[str]


class ParsedBatch(BaseModel):
    """What one reply held: the questions that fit the schema, and how many items did not.
    `usable` is False when no JSON with a questions list could be found at all."""

    questions: list[GeneratedQuestion] = Field(default_factory=list)
    invalid: int = 0
    usable: bool = True


class QuestionRecord(BaseModel):
    id: str
    question: str
    difficulty: Difficulty = "medium"
    tools: list[str] = Field(default_factory=list)
    env: str = ""


def tool_names_of(tools: Iterable[dict[str, Any]]) -> list[str]:
    """The names of OpenAI tool schemas (or bare function schemas), in order, once each."""
    names = (tool.get("function", tool).get("name") for tool in tools)
    return list(dict.fromkeys(name for name in names if isinstance(name, str) and name))


def batch_schema(size: int, tool_names: Sequence[str] = ()) -> dict[str, Any]:
    """The JSON schema a batch must follow (strict: every field required, nothing else).

    With `tool_names` a question's `tools` may only hold those names (an enum), one to
    MAX_TOOLS_PER_QUESTION of them: a server that enforces the schema cannot let the model name
    a tool the env does not have."""
    tool_item: dict[str, Any] = {"type": "string"}
    tools: dict[str, Any] = {"type": "array", "items": tool_item}
    if tool_names:
        tool_item["enum"] = list(tool_names)
        tools.update(minItems=1, maxItems=MAX_TOOLS_PER_QUESTION)
    return {
        "type": "object",
        "properties": {
            "questions": {
                "type": "array",
                "minItems": 1,
                "maxItems": size,
                "items": {
                    "type": "object",
                    "properties": {
                        "question": {
                            "type": "string",
                            "minLength": QUESTION_MIN_CHARS,
                            "maxLength": QUESTION_MAX_CHARS,
                        },
                        "difficulty": {"type": "string", "enum": ["easy", "medium", "hard"]},
                        "tools": tools,
                    },
                    "required": ["question", "difficulty", "tools"],
                    "additionalProperties": False,
                },
            }
        },
        "required": ["questions"],
        "additionalProperties": False,
    }


def normalize(text: str) -> str:
    """The de-duplication key: case, accents, punctuation and spacing do not make a new question."""
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode() or text
    text = re.sub(r"[^\w\s]", " ", text.lower())
    return " ".join(text.split())


def question_id(text: str) -> str:
    return "q-" + hashlib.sha1(normalize(text).encode()).hexdigest()[:12]


def build_prompt(env_name: str, tools: list[dict[str, Any]], size: int, avoid: list[str]) -> list[dict[str, Any]]:
    functions = [tool.get("function", tool) for tool in tools]
    listing = json.dumps(
        [
            {"name": f.get("name"), "description": f.get("description", ""), "parameters": f.get("parameters", {})}
            for f in functions
        ],
        ensure_ascii=False,
        indent=1,
    )
    names = ", ".join(tool_names_of(tools))
    avoid_text = "\n".join(f"- {q}" for q in avoid) if avoid else "(none yet)"
    example = {"questions": [{"question": "...", "difficulty": "easy", "tools": ["tool_name"]}]}
    return [
        {
            "role": "system",
            "content": (
                f"You write realistic questions that users of a {env_name} assistant ask. The assistant answers "
                "them by calling the tools listed below. Every question must be answerable with these tools, "
                "concrete (name the entities, dates and numbers it needs) and self-contained."
            ),
        },
        {
            "role": "user",
            "content": (
                f"Tools:\n{listing}\n\nWrite {size} new, diverse questions: a mix of easy (one tool call), "
                "medium (two or three calls) and hard (several dependent calls) ones. For each give its "
                f"difficulty and the names of the tools it needs, only from: {names}. Do not repeat these "
                f"questions:\n{avoid_text}\n\nAnswer with JSON only, in this form: {json.dumps(example)}"
            ),
        },
    ]


def parse_batch(text: str) -> ParsedBatch:
    """Read a reply leniently: a thinking model's preamble, a code fence or text around the JSON
    are skipped, a bare list of questions is taken as the batch, each question is checked on its
    own (one bad item does not lose the rest) and the complete questions of a reply cut off
    mid-JSON (max_tokens) are kept."""
    text = re.sub(r"^.*?</think>", "", text, flags=re.DOTALL).strip()
    decoder = json.JSONDecoder()
    items: list[Any] | None = None
    for match in re.finditer(r"[\[{]", text):
        try:
            value, _ = decoder.raw_decode(text, match.start())
        except json.JSONDecodeError:
            continue
        if isinstance(value, dict) and isinstance(value.get("questions"), list):
            items = value["questions"]
        elif isinstance(value, list) and value and all(isinstance(item, dict) for item in value):
            items = value
        else:
            continue
        break
    if items is None:
        items = _complete_items(text, decoder)
    if items is None:
        return ParsedBatch(usable=False)
    batch = ParsedBatch()
    for item in items:
        try:
            batch.questions.append(GeneratedQuestion.model_validate(item))
        except ValidationError:
            batch.invalid += 1
    return batch


def _complete_items(text: str, decoder: json.JSONDecoder) -> list[Any] | None:
    """The whole objects at the start of a `"questions": [` array whose end was cut off."""
    match = re.search(r'"questions"\s*:\s*\[', text)
    if match is None:
        return None
    items: list[Any] = []
    position = match.end()
    while True:
        while position < len(text) and text[position] in " \t\r\n,":
            position += 1
        try:
            value, position = decoder.raw_decode(text, position)
        except json.JSONDecodeError:
            return items
        items.append(value)


class _Requester:
    """Sends the batch requests of one run and remembers whether the server takes the schema."""

    def __init__(self, policy: ChatPolicy, structured: StructuredMode, retry: RetryConfig) -> None:
        self.policy = policy
        self.mode = structured
        self.retry = retry
        self.use_schema = structured != "off"
        self.fell_back = False

    def _kwargs(self, messages: list[dict[str, Any]], schema: dict[str, Any] | None) -> dict[str, Any]:
        cfg = self.policy.config
        kwargs: dict[str, Any] = {"model": cfg.model, "messages": messages}
        if schema is not None:
            kwargs["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": "questions", "schema": schema, "strict": True},
            }
        for key in ("temperature", "top_p", "max_tokens", "seed"):
            value = getattr(cfg, key)
            if value is not None:
                kwargs[key] = value
        if cfg.extra_body:
            kwargs["extra_body"] = cfg.extra_body
        return kwargs

    async def _send(self, kwargs: dict[str, Any]) -> str:
        async for attempt in self.retry.retrying():
            with attempt:
                completion = await self.policy.create(**kwargs)
        return (completion.choices[0].message.content or "") if completion.choices else ""

    async def request(self, messages: list[dict[str, Any]], schema: dict[str, Any]) -> str:
        """One batch's reply text. In `auto` a refused schema is retried once as plain JSON; when
        that is answered, every later request is plain (and one line says so)."""
        if not self.use_schema:
            return await self._send(self._kwargs(messages, None))
        try:
            return await self._send(self._kwargs(messages, schema))
        except Exception as exc:
            if self.mode != "auto" or not _refuses_request(exc):
                raise
            refusal = exc
        text = await self._send(self._kwargs(messages, None))  # its error, if any, is the one to report
        if self.use_schema:
            self.use_schema = False
            self.fell_back = True
            where = redact_url(self.policy.config.base_url)
            print(
                f"warning: {where} refused structured output ({describe_error(refusal)}); "
                "asking for plain JSON instead (--structured off skips the schema)",
                file=sys.stderr,
            )
        return text


def _refuses_request(exc: BaseException) -> bool:
    """A 400 or 422: the server refused what was asked (here, possibly the schema), not a failure
    worth retrying as it is."""
    import openai

    return isinstance(exc, openai.BadRequestError | openai.UnprocessableEntityError)


class QuestionRun(BaseModel):
    """What one `run_questions` call gave: every question (old ones first) and its counts."""

    records: list[QuestionRecord]
    n: int = 0  # how many were asked for
    existing: int = 0  # of `records`, how many `out` already held
    # requests, answered, duplicates, unknown_tools, invalid (items off the schema), bad_batches
    # (replies with no questions JSON at all), failed (infrastructure)
    counts: dict[str, int]
    structured: bool = False  # whether the last request carried the schema
    fell_back: bool = False  # whether the server refused the schema and the run went on without it
    first_error: str | None = None  # the first request that failed on infrastructure

    @property
    def new(self) -> int:
        return len(self.records) - self.existing

    def summary(self) -> str:
        c = self.counts
        schema = "json_schema" if self.structured else "plain JSON"
        return (
            f"{len(self.records)}/{self.n} questions after {c['requests']} requests ({schema}; dropped "
            f"{c['duplicates']} duplicates, {c['unknown_tools']} with unknown tools, {c['invalid']} off the "
            f"schema; {c['bad_batches']} replies without questions JSON, {c['failed']} failed requests)"
        )


async def generate_questions(
    env_name: str,
    tools: list[dict[str, Any]],
    policy: ChatPolicy,
    n: int,
    **options: Any,
) -> list[QuestionRecord]:
    """Collect `n` unique questions (fewer if `max_requests` runs out); returns all of them, old
    ones first. Options as `run_questions`."""
    return (await run_questions(env_name, tools, policy, n, **options)).records


async def run_questions(
    env_name: str,
    tools: list[dict[str, Any]],
    policy: ChatPolicy,
    n: int,
    *,
    out: str | Path | None = None,
    batch_size: int = 10,
    concurrency: int = 4,
    max_requests: int | None = None,
    structured: StructuredMode = "auto",
    retry: RetryConfig | None = None,
    progress: bool = True,
) -> QuestionRun:
    """`generate_questions` with its counts; holds the one-writer lock of `out`. `structured`:
    see the module's docstring. Prints nothing but the progress bar and the one line of a
    fallback; `QuestionRun.summary()` is the line to show."""
    out_path = Path(out) if out is not None else None
    with output_lock(out_path) if out_path is not None else contextlib.nullcontext():
        return await _questions_locked(
            env_name,
            tools,
            policy,
            n,
            out_path,
            batch_size,
            concurrency,
            max_requests,
            _Requester(policy, structured, retry or RetryConfig()),
            progress,
        )


async def _questions_locked(
    env_name: str,
    tools: list[dict[str, Any]],
    policy: ChatPolicy,
    n: int,
    out_path: Path | None,
    batch_size: int,
    concurrency: int,
    max_requests: int | None,
    requester: _Requester,
    progress: bool,
) -> QuestionRun:
    tool_names = tool_names_of(tools)
    schema = batch_schema(batch_size, tool_names)
    accepted = _existing_questions(out_path)
    existing = len(accepted)
    budget = max_requests if max_requests is not None else math.ceil(max(n - len(accepted), 0) / batch_size) * 4 + 4
    kept = _Collector(env_name, tool_names, n, accepted, out_path=out_path, progress=progress)
    counts = kept.counts

    async def worker() -> None:
        while not kept.full and counts["requests"] < budget:
            counts["requests"] += 1
            avoid = [record.question for record in accepted[-20:]]
            messages = build_prompt(env_name, tools, batch_size, avoid)
            try:
                text = await requester.request(messages, schema)
            except Exception as exc:
                if not is_transient(exc) and not _is_api_error(exc):
                    raise
                counts["failed"] += 1
                kept.errors.append(describe_error(exc))
                continue
            counts["answered"] += 1
            batch = parse_batch(text)
            if not batch.usable:
                counts["bad_batches"] += 1
                continue
            kept.take(batch)

    try:
        if not kept.full:
            async with anyio.create_task_group() as group:
                for _ in range(max(1, concurrency)):
                    group.start_soon(worker)
    finally:
        kept.close()
    return QuestionRun(
        records=accepted,
        n=n,
        existing=existing,
        counts=counts,
        structured=requester.use_schema,
        fell_back=requester.fell_back,
        first_error=kept.errors[0] if kept.errors else None,
    )


def _existing_questions(out_path: Path | None) -> list[QuestionRecord]:
    """The questions `out_path` already holds (read once, before any request)."""
    if out_path is None or not out_path.exists():
        return []
    accepted = []
    # Questions have no infra failures to retry: one record per id, compacted (rollouts.resume).
    for number, record in enumerate(resume_records(out_path, retry=None).iter_records(), start=1):
        try:
            accepted.append(QuestionRecord.model_validate(record))
        except ValidationError:
            raise JsonlFormatError(f"{out_path}: record {number} is not a question record") from None
    return accepted


class _Collector:
    """The questions kept so far (`accepted`, shared with the caller) and the counts of what was
    dropped; each kept one is written to `out_path` and ticks the bar as it comes."""

    def __init__(
        self,
        env_name: str,
        tool_names: list[str],
        n: int,
        accepted: list[QuestionRecord],
        *,
        out_path: Path | None,
        progress: bool,
    ) -> None:
        self.env_name, self.n, self.accepted = env_name, n, accepted
        self.known = set(tool_names)
        self.seen = {normalize(record.question) for record in accepted}
        self.counts = dict.fromkeys(
            ("requests", "answered", "duplicates", "unknown_tools", "invalid", "bad_batches", "failed"), 0
        )
        self.errors: list[str] = []
        self.appender = JsonlAppender(out_path) if out_path is not None else None
        shown = progress and not progress_off()
        self.bar = tqdm(total=n, initial=min(len(accepted), n), desc="questions", unit="q", disable=not shown)

    @property
    def full(self) -> bool:
        return len(self.accepted) >= self.n

    def take(self, batch: ParsedBatch) -> None:
        self.counts["invalid"] += batch.invalid
        for item in batch.questions:
            if self.full:
                return
            reason = self._rejection(item)
            if reason is not None:
                self.counts[reason] += 1
                continue
            self.seen.add(normalize(item.question))
            record = QuestionRecord(
                id=question_id(item.question),
                question=item.question.strip(),
                difficulty=item.difficulty,
                tools=list(dict.fromkeys(item.tools)),
                env=self.env_name,
            )
            self.accepted.append(record)
            if self.appender is not None:
                self.appender.write(record)
            self.bar.update(1)

    def _rejection(self, item: GeneratedQuestion) -> str | None:
        """The count a question is dropped under, or None when it is kept."""
        key = normalize(item.question)
        if not key:  # nothing but punctuation and spaces: not a question
            return "invalid"
        if key in self.seen:
            return "duplicates"
        if any(name not in self.known for name in item.tools):
            return "unknown_tools"
        return None

    def close(self) -> None:
        self.bar.close()
        if self.appender is not None:
            self.appender.close()


def _is_api_error(exc: BaseException) -> bool:
    import openai

    return isinstance(exc, openai.OpenAIError)


NOTHING_USABLE_EXIT = 3  # the server answered, the model gave no usable question (README: exit codes)


def questions_exit_code(run: QuestionRun, *, endpoint: str, model: str) -> int:
    """The CLI's exit code for a run, with its one line on stderr (the module's docstring)."""
    code = infra_exit_code(
        what="question requests",
        total=run.counts["requests"],
        failed=run.counts["failed"],
        endpoint=endpoint,
        error=run.first_error,
    )
    if code != 0:
        return code
    if len(run.records) >= run.n:
        print(run.summary(), file=sys.stderr)
        return 0
    if run.new == 0 and run.counts["requests"]:
        where = redact_url(endpoint)
        print(f"error: no usable question came back from {model} at {where}: {run.summary()}", file=sys.stderr)
        return NOTHING_USABLE_EXIT
    print(f"warning: only {run.summary()} (a rerun asks for the rest)", file=sys.stderr)
    return 0


def load_questions(path: str | Path, env_name: str = "") -> list[Task]:
    """Tasks of kind "open" from a JSONL of `{"question": ...}` lines (no expected answer).
    Raises UsageError naming the line when one is not a question."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"no such questions file: {path}")
    tasks: list[Task] = []
    seen: set[str] = set()
    try:
        records = list(iter_jsonl(path))
    except JsonlFormatError as exc:
        raise UsageError(str(exc)) from None
    for number, record in enumerate(records, start=1):
        question = record.get("question")
        if not isinstance(question, str) or not question.strip():
            raise UsageError(f'{path}: record {number} has no "question" string')
        task_id = str(record.get("id") or question_id(question))
        if task_id in seen:
            continue  # the same question twice would collide on trajectory ids
        seen.add(task_id)
        metadata = {key: record[key] for key in ("difficulty", "tools") if key in record}
        tasks.append(Task(id=task_id, question=question.strip(), kind="open", metadata=metadata))
    return tasks


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(
        prog="python -m rollouts.questions",
        description="Generate domain questions from an env's tool list with an LLM (resumable, de-duplicated).",
    )
    parser.add_argument("--env", default="energy", help="env spec for envs.load (name, mcp.json, module:factory)")
    parser.add_argument("-n", type=int, default=200, help="how many unique questions to have in --out")
    add_flag(parser, "--out", default="data/questions.jsonl", help="JSONL to append to (resumes from it)")
    add_policy_endpoint(parser)
    parser.add_argument(
        "--structured",
        choices=["auto", "on", "off"],
        default="auto",
        help="constrain replies with a json_schema response_format naming the env's tools: auto (fall back to "
        "plain JSON when the server refuses it), on (a refusal fails the request), off (plain JSON)",
    )
    parser.add_argument("--batch-size", type=int, default=10, help="questions asked for per request")
    parser.add_argument("--concurrency", type=int, default=4, help="requests in flight")
    parser.add_argument("--max-requests", type=int, default=None, help="give up after this many requests")
    parser.add_argument("--temperature", type=float, default=1.0, help="sampling temperature")
    parser.add_argument("--max-tokens", type=int, default=4096, help="max tokens per reply")
    parser.add_argument("--request-timeout", type=float, default=120.0, help="seconds before a request times out")
    parser.add_argument("--retries", type=int, default=4, help="retries of a transient request failure")
    add_flag(parser, "--no-progress", help="no progress bar")
    return parser


async def main() -> int:
    args = build_parser().parse_args()
    for flag in ("n", "batch_size", "concurrency"):
        if getattr(args, flag) < 1:
            raise UsageError(f"--{flag.replace('_', '-')} must be at least 1")
    from .envs_io import open_env

    async with open_env(args.env) as env:
        tools = await env.tools()
    if not tools:
        raise UsageError(f"env {args.env!r} has no tools to write questions about")
    config = PolicyConfig(
        base_url=args.base_url,
        model=args.model,
        temperature=args.temperature,
        max_tokens=args.max_tokens,
        request_timeout_s=args.request_timeout,
        api_key_env=args.api_key_env,
    )
    apply_no_progress(args.no_progress)
    async with ChatPolicy(config) as policy:
        run = await run_questions(
            env.name,
            tools,
            policy,
            args.n,
            out=args.out,
            batch_size=args.batch_size,
            concurrency=args.concurrency,
            max_requests=args.max_requests,
            structured=args.structured,
            retry=RetryConfig(retries=args.retries),
            progress=not args.no_progress,
        )
    print(f"{len(run.records)} questions in {args.out}")
    return questions_exit_code(run, endpoint=args.base_url, model=args.model)


if __name__ == "__main__":
    run_cli(main, user_errors=(JsonlFormatError,))
