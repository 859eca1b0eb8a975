"""Domain questions from an env's tool list, written by an LLM.

    python -m rollouts.questions --env energy -n 200 --out questions.jsonl \\
        --base-url http://localhost:8000/v1 --model Qwen3-8B

Each request asks for a batch of questions as JSON-schema structured output
(`response_format` json_schema, which vLLM enforces with guided decoding), many
requests run at once, and every accepted question is appended to `--out` as it
arrives, so a killed run resumes where it stopped. Questions are de-duplicated
on normalised text (case, accents, punctuation and spacing ignored), also
against what the file already holds. A question that names a tool the env does
not have is dropped: it asks for something the tools cannot do.

Each line: `{"id", "question", "difficulty": "easy"|"medium"|"hard", "tools": [...], "env"}`,
the input of `python -m rollouts.generate --questions FILE` (tasks of kind "open").
One run per `--out` (rollouts.lock: a second one exits 2 naming the first one's pid).

Exit code: 1 when every request failed on infrastructure (envs.cli.infra_exit_code: one
line naming the server and the error), or when fewer than `-n` questions came back; 0
otherwise, with a warning line and the counts when some requests failed; 2 for bad input.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import re
import sys
import unicodedata
from pathlib import Path
from typing import Any, Literal

import anyio
from pydantic import BaseModel, Field, ValidationError
from tqdm.auto import tqdm

from envs.base import Task
from envs.cli import ArgumentParser, UsageError, infra_exit_code, run_cli
from rollouts.jsonl import JsonlAppender, JsonlFormatError, iter_jsonl
from rollouts.lock import output_lock
from rollouts.resume import resume_records

from .policy import ChatPolicy, PolicyConfig, describe_error, is_transient
from .rollout import RetryConfig

Difficulty = Literal["easy", "medium", "hard"]


class GeneratedQuestion(BaseModel):
    question: str = Field(min_length=1)
    difficulty: Difficulty
    tools: list[str]


class QuestionBatch(BaseModel):
    questions: list[GeneratedQuestion]


class QuestionRecord(BaseModel):
    id: str
    question: str
    difficulty: Difficulty = "medium"
    tools: list[str] = Field(default_factory=list)
    env: str = ""


def batch_schema(size: int) -> dict[str, Any]:
    """The JSON schema the model must follow (strict: every field required, nothing else)."""
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
                        "question": {"type": "string"},
                        "difficulty": {"type": "string", "enum": ["easy", "medium", "hard"]},
                        "tools": {"type": "array", "items": {"type": "string"}},
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
    avoid_text = "\n".join(f"- {q}" for q in avoid) if avoid else "(none yet)"
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
                "difficulty and the names of the tools it needs. Do not repeat these questions:\n"
                f"{avoid_text}\n\nAnswer with JSON only."
            ),
        },
    ]


async def _request_batch(
    policy: ChatPolicy, messages: list[dict[str, Any]], size: int, retry: RetryConfig
) -> QuestionBatch | None:
    """One structured-output request; None when the model's JSON does not fit the schema."""
    cfg = policy.config
    kwargs: dict[str, Any] = {
        "model": cfg.model,
        "messages": messages,
        "response_format": {
            "type": "json_schema",
            "json_schema": {"name": "questions", "schema": batch_schema(size), "strict": True},
        },
    }
    for key in ("temperature", "top_p", "max_tokens", "seed"):
        value = getattr(cfg, key)
        if value is not None:
            kwargs[key] = value
    if cfg.extra_body:
        kwargs["extra_body"] = cfg.extra_body
    async for attempt in retry.retrying():
        with attempt:
            completion = await policy.client.chat.completions.create(**kwargs)
    text = completion.choices[0].message.content or "" if completion.choices else ""
    text = re.sub(r"^.*?</think>", "", text, flags=re.DOTALL).strip()  # a thinking model's preamble
    try:
        return QuestionBatch.model_validate_json(text)
    except ValidationError:
        return None


class QuestionRun(BaseModel):
    """What one `run_questions` call gave: every question (old ones first) and its counts."""

    records: list[QuestionRecord]
    counts: dict[str, int]  # requests, duplicates, unknown_tools, bad_batches, failed
    first_error: str | None = None  # the first request that failed on infrastructure


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
    retry: RetryConfig | None = None,
    progress: bool = True,
) -> QuestionRun:
    """`generate_questions` with its counts; holds the one-writer lock of `out`."""
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
            retry or RetryConfig(),
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
    retry: RetryConfig,
    progress: bool,
) -> QuestionRun:
    tool_names = {tool.get("function", tool).get("name") for tool in tools}
    accepted: list[QuestionRecord] = []
    if out_path is not None and out_path.exists():  # noqa: ASYNC240  (once, before any request)
        # Questions have no infra failures to retry: one record per id, compacted (rollouts.resume).
        for number, record in enumerate(resume_records(out_path, retry=None).records, start=1):
            try:
                accepted.append(QuestionRecord.model_validate(record))
            except ValidationError:
                raise JsonlFormatError(f"{out_path}: record {number} is not a question record") from None
    seen = {normalize(record.question) for record in accepted}
    budget = max_requests if max_requests is not None else math.ceil(max(n - len(accepted), 0) / batch_size) * 4 + 4
    counts = {"requests": 0, "duplicates": 0, "unknown_tools": 0, "bad_batches": 0, "failed": 0}
    errors: list[str] = []
    appender = JsonlAppender(out_path) if out_path is not None else None
    bar = tqdm(total=n, initial=min(len(accepted), n), desc="questions", unit="q", disable=not progress)

    def take(batch: QuestionBatch) -> None:
        for item in batch.questions:
            if len(accepted) >= n:
                return
            key = normalize(item.question)
            if not key or key in seen:
                counts["duplicates"] += 1
                continue
            if any(name not in tool_names for name in item.tools):
                counts["unknown_tools"] += 1
                continue
            seen.add(key)
            record = QuestionRecord(
                id=question_id(item.question),
                question=item.question.strip(),
                difficulty=item.difficulty,
                tools=item.tools,
                env=env_name,
            )
            accepted.append(record)
            if appender is not None:
                appender.write(record)
            bar.update(1)

    async def worker() -> None:
        while len(accepted) < n and counts["requests"] < budget:
            counts["requests"] += 1
            avoid = [record.question for record in accepted[-20:]]
            messages = build_prompt(env_name, tools, batch_size, avoid)
            try:
                batch = await _request_batch(policy, messages, batch_size, retry)
            except Exception as exc:
                if not is_transient(exc) and not _is_api_error(exc):
                    raise
                counts["failed"] += 1
                errors.append(describe_error(exc))
                print(f"warning: question batch failed: {describe_error(exc)}", file=sys.stderr)
                continue
            if batch is None:
                counts["bad_batches"] += 1
                continue
            take(batch)

    try:
        if len(accepted) < n:
            async with anyio.create_task_group() as group:
                for _ in range(max(1, concurrency)):
                    group.start_soon(worker)
    finally:
        bar.close()
        if appender is not None:
            appender.close()
    bar.write(
        f"questions: {len(accepted)}/{n} after {counts['requests']} requests "
        f"(dropped {counts['duplicates']} duplicates, {counts['unknown_tools']} with unknown tools, "
        f"{counts['bad_batches']} bad batches, {counts['failed']} failed requests)",
        file=sys.stderr,
    )
    return QuestionRun(records=accepted, counts=counts, first_error=errors[0] if errors else None)


def _is_api_error(exc: BaseException) -> bool:
    import openai

    return isinstance(exc, openai.OpenAIError)


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
    parser.add_argument("--out", default="data/questions.jsonl", help="JSONL to append to (resumes from it)")
    parser.add_argument("--base-url", default="http://localhost:8000/v1", help="OpenAI-compatible server")
    parser.add_argument("--model", default="Qwen3-8B", help="model name on that server")
    parser.add_argument("--batch-size", type=int, default=10, help="questions asked for per request")
    parser.add_argument("--concurrency", type=int, default=4, help="requests in flight")
    parser.add_argument("--max-requests", type=int, default=None, help="give up after this many requests")
    parser.add_argument("--temperature", type=float, default=1.0, help="sampling temperature")
    parser.add_argument("--max-tokens", type=int, default=4096, help="max tokens per reply")
    parser.add_argument("--retries", type=int, default=4, help="retries of a transient request failure")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
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
        base_url=args.base_url, model=args.model, temperature=args.temperature, max_tokens=args.max_tokens
    )
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
            retry=RetryConfig(retries=args.retries),
            progress=not args.no_progress,
        )
    print(f"{len(run.records)} questions in {args.out}")
    code = infra_exit_code(
        what="question requests",
        total=run.counts["requests"],
        failed=run.counts["failed"],
        endpoint=args.base_url,
        error=run.first_error,
    )
    if code == 0 and len(run.records) < args.n:
        print(f"error: only {len(run.records)} of the {args.n} questions asked for", file=sys.stderr)
        return 1
    return code


if __name__ == "__main__":
    run_cli(main, user_errors=(JsonlFormatError,))
