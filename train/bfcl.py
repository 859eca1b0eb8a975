"""BFCL v4 (the Berkeley Function Calling Leaderboard) against any OpenAI-compatible model.

    python -m train.bfcl --categories simple,multiple,parallel,parallel_multiple,irrelevance,live \\
        --base-url http://localhost:8000/v1 --model Qwen3-8B --limit 50 --concurrency 8
    python -m train.bfcl --compare runs/bfcl/base.jsonl runs/bfcl/trained.jsonl

Each entry's function docs become OpenAI tools (judges.bfcl.tools, the
leaderboard's own conversion), the model is asked once through the policy
client the rollouts use (rollouts.ChatPolicy: native tool calls or calls parsed
from text), and the reply is scored with the leaderboard's AST checker
(judges.bfcl.checker, agreement with bfcl-eval's checker is tested). Sampling
defaults to the leaderboard's temperature 0.001.

Out: `--out` JSONL, one line per entry with its verdict, the reply as the
leaderboard stores it and the assistant message (appended as answers arrive:
safe to kill); a per-category table with the leaderboard's aggregates on
stdout and in the summary JSON (`--summary`, default OUT with `.summary.json`).

Multi-turn categories (multi_turn_base/miss_func/miss_param/long_context, or
`multi_turn` for all four) run through mcpgym's own environment path
(train.bfcl_multi_turn): each entry is an episode of the bfcl-multi-turn env
(envs.bfcl_mt: the leaderboard's stateful APIs behind an MCP server, one user
turn after another, at most 20 steps a turn) scored by the leaderboard's
`multi_turn_checker` (ported onto an executor that never `eval`s a model's
calls); the record's `reply` is the calls of each turn as the leaderboard's
decoded call text. The Multi-Turn aggregate is the unweighted mean of the
four, beside the single-turn ones.

Resume, as every resumable writer does it (rollouts.resume): rerunning the
same command skips the ids already in `--out`, except entries that failed on
infrastructure (server down, timeouts, 5xx after the retries): those are
written as records with `error: {"kind": "infra", "message": ...}` (no
verdict: they score neither right nor wrong) and asked again; `--keep-infra`
keeps them. The file is compacted first (one record per id, the last), and the
closing line says how many entries were retried. One run per `--out`
(rollouts.lock: a second one exits 2 naming the first one's pid).

Exit codes (common.cli.infra_exit_code): 1 when every entry asked failed on
infrastructure (one line naming the server and the error); 0 otherwise, with
a warning line and the counts when some did; 2 for bad input.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import re
import sys
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import openai
from pydantic import BaseModel, Field, ValidationError
from tqdm import tqdm

from common.cli import ArgumentParser, UsageError, infra_exit_code, run_cli
from common.files import write_private_atomic
from common.flags import add_flag, add_policy_endpoint, apply_no_progress
from contracts import TrajectoryError
from judges.bfcl import (
    MULTI_TURN,
    BfclEntry,
    CategoryScore,
    category_size,
    check_reply,
    expand_categories,
    installed_version,
    leaderboard_summary,
    load_category,
    reply_from_calls,
    to_openai_tools,
)
from judges.bfcl.checker import Reply
from judges.bfcl.scores import Score
from rollouts.endpoints import EndpointStats, summary_line
from rollouts.errors import describe_error, is_transient
from rollouts.jsonl import JsonlAppender, JsonlFormatError, iter_jsonl
from rollouts.lock import output_lock
from rollouts.policy import ChatPolicy, PolicyConfig, PolicyError
from rollouts.resume import Record, is_infra_record, resume_records
from rollouts.rollout import Policy, RetryConfig, act_with_retries
from rollouts.runner import move_aside

from .bfcl_multi_turn import MultiTurnOutcome, MultiTurnRunner

BFCL_TEMPERATURE = 0.001  # the leaderboard's default sampling temperature


class BfclRecord(BaseModel):
    """One entry's answer and verdict (one JSONL line)."""

    id: str
    category: str
    model: str
    valid: bool
    error_type: str = ""  # the checker's, or "infra" when the server failed (then no verdict)
    # The checker's errors; {"kind": "infra", "message": ...} (the trajectory record's error) when
    # the server, not the model, failed: a resume asks that entry again.
    error: list[Any] | TrajectoryError = Field(default_factory=list)
    reply: Any = None  # the leaderboard's `model_responses`: [{name: arguments_text}] or the text
    message: dict[str, Any] | None = None  # the assistant message as the policy parsed it
    parse_errors: list[str] = Field(default_factory=list)
    text_tool_calls: bool = False
    latency_s: float = 0.0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    created: str = ""

    @property
    def is_infra_failure(self) -> bool:
        return isinstance(self.error, TrajectoryError) and self.error.kind == "infra"


def infra_record(entry: BfclEntry, model: str, message: str) -> BfclRecord:
    """The record of an entry the server failed on: no verdict, resumed by asking it again."""
    error = TrajectoryError(kind="infra", message=message)
    return BfclRecord(
        id=entry.id, category=entry.category, model=model, valid=False, error_type="infra", error=error, created=_now()
    )


class BfclRunResult(BaseModel):
    model: str
    bfcl_version: str | None
    categories: dict[str, CategoryScore]
    summary: dict[str, Score]
    out: Path | None
    new: int  # records written by this run (infra failures included)
    skipped: int  # entries already in `out` and not asked again
    asked: int = 0  # entries sent to the model by this run
    retried: int = 0  # of `asked`: entries `out` held as infra failures
    infra_kept: int = 0  # infra failures in `out` kept as they were (`--keep-infra`)
    infra_failures: int  # of `asked`: entries the server failed on in this run
    infra_examples: list[str] = Field(default_factory=list)
    retries: int = 0


class _InfraError(Exception):
    pass


def check_categories(categories: Sequence[str]) -> None:
    """Every category runs (multi-turn ones through the bfcl-multi-turn env); kept for callers."""
    del categories


async def answer_multi_turn(
    runner: MultiTurnRunner, policy: Policy, entry: BfclEntry, counter: Counter[str]
) -> BfclRecord:
    """One multi-turn entry as an episode of the env. Raises _InfraError when the server, not the model, failed."""
    outcome: MultiTurnOutcome = await runner.answer(policy, entry.id)
    if outcome.infra is not None:
        raise _InfraError(outcome.infra)
    return BfclRecord(
        id=entry.id,
        category=entry.category,
        model=policy.model,
        valid=outcome.valid,
        error_type=outcome.error_type,
        error=[outcome.reason] if not outcome.valid else [],
        reply=outcome.reply,
        latency_s=outcome.latency_s,
        prompt_tokens=outcome.prompt_tokens,
        completion_tokens=outcome.completion_tokens,
        created=_now(),
    )


async def answer_entry(policy: Policy, entry: BfclEntry, retry: RetryConfig, counter: Counter[str]) -> BfclRecord:
    """Ask the model once and score its reply. Raises _InfraError when the server, not the model, failed."""
    messages = [dict(message) for message in entry.question[0]]
    tools = to_openai_tools(entry.functions, entry.category)
    base = {"id": entry.id, "category": entry.category, "model": policy.model, "created": _now()}
    try:
        turn = await act_with_retries(policy, messages, tools, retry, counter)
    except openai.BadRequestError as exc:
        # A request the server refuses for this entry (context too long, a schema it rejects): the
        # leaderboard records the error as the model's result, which scores wrong.
        reply: Reply = f"Error during inference: {describe_error(exc)}"
        verdict = check_reply(entry, reply)
        return BfclRecord(**base, valid=verdict.valid, error_type="inference_error", error=[str(reply)], reply=reply)
    except Exception as exc:
        if is_transient(exc) or isinstance(exc, openai.APIStatusError | openai.APIConnectionError | PolicyError):
            raise _InfraError(describe_error(exc)) from exc
        raise
    reply = reply_from_calls([(call.name, call.arguments) for call in turn.tool_calls], turn.content)
    verdict = check_reply(entry, reply)
    return BfclRecord(
        **base,
        valid=verdict.valid,
        error_type=verdict.error_type,
        error=_jsonable(verdict.error),
        reply=reply,
        message=turn.message,
        parse_errors=turn.parse_errors,
        text_tool_calls=turn.text_tool_calls,
        latency_s=round(turn.latency_s, 4),
        prompt_tokens=turn.prompt_tokens,
        completion_tokens=turn.completion_tokens,
    )


def load_records(path: Path) -> list[BfclRecord]:
    if not path.exists():
        raise UsageError(f"no such file: {path}")
    return [BfclRecord.model_validate(record) for record in iter_jsonl(path)]


def score_records(records: Sequence[BfclRecord], categories: Sequence[str]) -> dict[str, CategoryScore]:
    """Per-category correct/total over the records (the last record of an id wins); infra failures
    have no verdict and count in neither."""
    latest = {record.id: record for record in records if not record.is_infra_failure}
    scores = {}
    for category in categories:
        chosen = [record for record in latest.values() if record.category == category]
        if chosen:
            scores[category] = CategoryScore(
                category=category, correct=sum(record.valid for record in chosen), total=len(chosen)
            )
    return scores


async def run_bfcl(
    policy: Policy,
    categories: Sequence[str],
    *,
    out: str | Path | None = None,
    limit: int | None = None,
    concurrency: int = 8,
    resume: bool = True,
    retry: RetryConfig | None = None,
    progress: bool = True,
    retry_infra: bool = True,
) -> BfclRunResult:
    """Ask the model every chosen entry (resuming from `out`: done ids are skipped, infra failures
    asked again unless `retry_infra=False`) and score the run like the leaderboard."""
    check_categories(categories)
    if concurrency < 1 or (limit is not None and limit < 1):
        raise UsageError("--concurrency and --limit must be at least 1")
    out_path = Path(out) if out is not None else None
    with output_lock(out_path) if out_path is not None else contextlib.nullcontext():
        return await _run_locked(
            policy,
            categories,
            out_path=out_path,
            limit=limit,
            concurrency=concurrency,
            resume=resume,
            retry=retry or RetryConfig(),
            progress=progress,
            retry_infra=retry_infra,
        )


async def _run_locked(
    policy: Policy,
    categories: Sequence[str],
    *,
    out_path: Path | None,
    limit: int | None,
    concurrency: int,
    resume: bool,
    retry: RetryConfig,
    progress: bool,
    retry_infra: bool,
) -> BfclRunResult:
    entries = [entry for category in categories for entry in load_category(category, limit)]
    chosen_ids = {entry.id for entry in entries}

    previous: list[BfclRecord] = []
    retried = 0
    if out_path is not None and out_path.exists():  # noqa: ASYNC240  (once, before any request)
        if resume:
            previous, retried = _resume(out_path, chosen_ids, policy.model, retry_infra=retry_infra)
        else:
            move_aside(out_path)
    done = {record.id for record in previous}
    work = [entry for entry in entries if entry.id not in done]
    asked = await _ask_entries(
        policy, work, categories, retry=retry, concurrency=concurrency, out_path=out_path, progress=progress
    )

    scores = score_records([*previous, *asked.records], categories)
    return BfclRunResult(
        model=policy.model,
        bfcl_version=installed_version(),
        categories=scores,
        summary=leaderboard_summary(scores, category_size),
        out=out_path,
        new=len(asked.records),
        skipped=len(previous),
        asked=len(work),
        retried=retried,
        infra_kept=sum(record.is_infra_failure for record in previous),
        infra_failures=len(asked.infra),
        infra_examples=asked.infra[:5],
        retries=asked.counter["policy_retries"],
    )


@dataclass
class _Asked:
    """The records of the entries asked in this run (in the order answers came), the infra
    failures among them ("id: error"), and the policy's counters (retries)."""

    records: list[BfclRecord] = field(default_factory=list)
    infra: list[str] = field(default_factory=list)
    counter: Counter[str] = field(default_factory=Counter)


async def _ask_entries(
    policy: Policy,
    work: list[BfclEntry],
    categories: Sequence[str],
    *,
    retry: RetryConfig,
    concurrency: int,
    out_path: Path | None,
    progress: bool,
) -> _Asked:
    """Ask `concurrency` entries at a time, appending each record to `out_path` as it comes."""
    asked = _Asked()
    bar = tqdm(total=len(work), desc=f"bfcl {policy.model}", unit="entry", disable=not progress, dynamic_ncols=True)
    appender = JsonlAppender(out_path) if out_path is not None else None
    queue = iter(work)
    tally = Counter[str]()
    multi_turn = [category for category in categories if category in MULTI_TURN]
    runner = MultiTurnRunner(multi_turn, retry) if any(e.category in MULTI_TURN for e in work) else None

    async def worker() -> None:
        for entry in queue:  # one shared iterator: each entry goes to exactly one worker
            try:
                if runner is not None and entry.category in MULTI_TURN:
                    record = await answer_multi_turn(runner, policy, entry, asked.counter)
                else:
                    record = await answer_entry(policy, entry, retry, asked.counter)
            except _InfraError as exc:
                asked.infra.append(f"{entry.id}: {exc}")
                tally["infra"] += 1
                record = infra_record(entry, policy.model, str(exc))
            else:
                tally["right" if record.valid else "wrong"] += 1
            if appender is not None:
                appender.write(record)
            asked.records.append(record)
            bar.update(1)
            scored = tally["right"] + tally["wrong"]
            bar.set_postfix(
                acc=f"{tally['right'] / scored:.3f}" if scored else "-", infra=tally["infra"], refresh=False
            )

    try:
        async with runner if runner is not None else contextlib.nullcontext(), anyio.create_task_group() as group:
            for _ in range(min(concurrency, max(1, len(work)))):
                group.start_soon(worker)
    finally:
        bar.close()
        if appender is not None:
            appender.close()
    return asked


def _resume(out: Path, chosen: set[str], model: str, *, retry_infra: bool) -> tuple[list[BfclRecord], int]:
    """(the records of `out` for the chosen entries, how many infra failures were taken out to ask
    again) -- rollouts.resume's rule; call it holding the output lock (it compacts `out`)."""
    try:
        # Before compacting: an infra failure of another model is still a sign of another run.
        models = {str(r.get("model")) for r in iter_jsonl(out) if r.get("id") in chosen} - {model}
        if models:
            raise UsageError(
                f"{out} holds replies of model {sorted(models)[0]!r}, not {model!r}: pass another --out or --no-resume"
            )

        def again(record: Record) -> bool:
            return retry_infra and is_infra_record(record) and record.get("id") in chosen

        resumed = resume_records(out, retry=again)
        kept = [BfclRecord.model_validate(record) for record in resumed.iter_records() if record.get("id") in chosen]
    except (JsonlFormatError, ValidationError) as exc:
        raise UsageError(f"{out}: not a BFCL records file ({str(exc).splitlines()[0]})") from None
    return kept, len(resumed.retry_ids)


# -- reports ------------------------------------------------------------------------

SUMMARY_ROWS = [
    ("non_live", "Non-Live (simple, multiple, parallel, parallel_multiple; unweighted)"),
    ("non_live_simple", "  Non-Live simple (python, java, javascript; unweighted)"),
    ("live", "Live (live AST categories; weighted by count)"),
    ("irrelevance", "Irrelevance (irrelevance, live_irrelevance; unweighted)"),
    ("relevance", "Relevance (live_relevance)"),
    ("multi_turn", "Multi-Turn (base, miss_func, miss_param, long_context; unweighted)"),
    ("overall", "Overall (10 Non-Live + 10 Live + 10 Irrelevance + 30 Multi-Turn + 40 Agentic)"),
]


def format_table(result: BfclRunResult) -> str:
    lines = [f"BFCL v4 ({result.bfcl_version or '?'}) model={result.model}", ""]
    lines.append(f"{'category':<24} {'correct':>8} {'total':>6} {'accuracy':>9}")
    for score in result.categories.values():
        lines.append(f"{score.category:<24} {score.correct:>8} {score.total:>6} {100 * score.accuracy:>8.2f}%")
    correct = sum(score.correct for score in result.categories.values())
    total = sum(score.total for score in result.categories.values())
    if total:
        lines.append(f"{'all entries (micro)':<24} {correct:>8} {total:>6} {100 * correct / total:>8.2f}%")
    lines.append("")
    lines.append("leaderboard aggregates (N/A: a member category was not run; it counts as 0 there)")
    for key, label in SUMMARY_ROWS:
        score = result.summary[key]
        lines.append(f"{label:<84} {score.display():>7}")
    if result.infra_failures:
        lines.append("")
        lines.append(
            f"{result.infra_failures} entries failed on infrastructure (written as infra, unscored; "
            "rerun to retry them):"
        )
        lines.extend(f"  {example}" for example in result.infra_examples)
    if result.infra_kept:
        lines.append(f"{result.infra_kept} infra failures kept from before (--keep-infra), unscored")
    return "\n".join(lines)


def summary_json(result: BfclRunResult) -> dict[str, Any]:
    return {
        "bench": "bfcl",
        "bfcl_version": result.bfcl_version,
        "model": result.model,
        "records": str(result.out) if result.out else None,
        "categories": {
            name: {"correct": s.correct, "total": s.total, "accuracy": s.accuracy}
            for name, s in result.categories.items()
        },
        "summary": {
            key: {"accuracy": s.accuracy, "total": s.total, "complete": s.complete, "display": s.display()}
            for key, s in result.summary.items()
        },
        "new": result.new,
        "skipped": result.skipped,
        "retried": result.retried,
        "infra_failures": result.infra_failures,
        "infra_kept": result.infra_kept,
        "retries": result.retries,
    }


def compare(path_a: Path, path_b: Path) -> str:
    """Two runs side by side: per-category accuracy, delta, and entries that flipped (on common ids)."""
    # An infra failure has no verdict: it is an entry that run did not answer.
    runs = [[r for r in load_records(path) if not r.is_infra_failure] for path in (path_a, path_b)]
    by_id = [{record.id: record for record in run} for run in runs]
    categories = list(dict.fromkeys(record.category for run in runs for record in run))
    names = [_run_name(path_a, runs[0]), _run_name(path_b, runs[1])]
    width = max(12, *(len(name) for name in names))
    header = (
        f"{'category':<24} {names[0]:>{width}} {names[1]:>{width}} {'delta':>7} {'common':>6} {'fixed':>5} {'broke':>5}"
    )
    lines = [header]
    totals = Counter[str]()
    for category in categories:
        scores = [score_records(run, [category]).get(category) for run in runs]
        common = [i for i, r in by_id[0].items() if r.category == category and i in by_id[1]]
        fixed = sum(1 for i in common if not by_id[0][i].valid and by_id[1][i].valid)
        broke = sum(1 for i in common if by_id[0][i].valid and not by_id[1][i].valid)
        cells = [f"{100 * s.accuracy:.2f}% ({s.total})" if s else "-" for s in scores]
        delta = f"{100 * (scores[1].accuracy - scores[0].accuracy):+.2f}" if all(scores) else "-"
        lines.append(
            f"{category:<24} {cells[0]:>{width}} {cells[1]:>{width}} {delta:>7} {len(common):>6} {fixed:>5} {broke:>5}"
        )
        totals.update(common=len(common), fixed=fixed, broke=broke)
    summaries = [leaderboard_summary(score_records(run, categories), category_size) for run in runs]
    lines.append("")
    for key, label in SUMMARY_ROWS:
        a, b = summaries[0][key], summaries[1][key]
        delta = f"{100 * (b.accuracy - a.accuracy):+.2f}" if a.complete and b.complete else "-"
        lines.append(f"{label.strip().split(' (')[0]:<24} {a.display():>{width}} {b.display():>{width}} {delta:>7}")
    lines.append("")
    lines.append(
        f"common entries: {totals['common']}, fixed (wrong -> right): {totals['fixed']}, "
        f"broke (right -> wrong): {totals['broke']}"
    )
    return "\n".join(lines)


def _run_name(path: Path, records: Sequence[BfclRecord]) -> str:
    models = {record.model for record in records}
    return models.pop() if len(models) == 1 else path.stem


def write_json_atomic(path: Path, data: Any) -> None:
    """Temp file + rename: a crash never leaves half a summary."""
    write_private_atomic(path, json.dumps(data, indent=2) + "\n")


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=repr))


def _now() -> str:
    return _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _default_out(model: str) -> Path:
    return Path("runs") / "bfcl" / f"{re.sub(r'[^A-Za-z0-9._-]+', '_', model)}.jsonl"


# -- CLI ----------------------------------------------------------------------------


def build_parser(prog: str = "python -m train.bfcl") -> ArgumentParser:
    parser = ArgumentParser(
        prog=prog,
        description="Run BFCL v4 (the Berkeley Function Calling Leaderboard: single-turn categories with its AST "
        "checker, multi-turn ones through the bfcl-multi-turn env with its multi-turn checker) against an "
        "OpenAI-compatible model; or --compare two runs.",
    )
    parser.add_argument("--bench", choices=("bfcl",), default="bfcl", help="the benchmark (for train.eval's argv)")
    parser.add_argument(
        "--categories",
        default="single_turn",
        help="comma-separated BFCL categories or groups (simple, non_live, live, single_turn, multi_turn, ...)",
    )
    add_policy_endpoint(parser)
    add_flag(parser, "--limit", type=int, default=None, help="only the first N entries of each category")
    parser.add_argument("--concurrency", type=int, default=8, help="requests in flight")
    parser.add_argument("--temperature", type=float, default=BFCL_TEMPERATURE, help="sampling temperature")
    parser.add_argument("--max-tokens", type=int, default=1024, help="max tokens per reply")
    parser.add_argument("--request-timeout", type=float, default=120.0, help="seconds per request")
    parser.add_argument("--retries", type=int, default=4, help="retries of a transient error")
    add_flag(parser, "--out", default=None, help="records JSONL (default runs/bfcl/<model>.jsonl; appended, resumes)")
    add_flag(
        parser, "--report", default=None, aliases=("--summary",), help="summary JSON (default: OUT with .summary.json)"
    )
    parser.add_argument("--no-resume", action="store_true", help="start fresh: move an existing OUT aside")
    parser.add_argument(
        "--keep-infra", action="store_true", help="on resume, keep entries that failed on infrastructure (do not ask)"
    )
    add_flag(parser, "--no-progress", help="no progress bar")
    parser.add_argument(
        "--compare", nargs=2, metavar=("A.jsonl", "B.jsonl"), default=None, help="print two runs side by side and exit"
    )
    return parser


def _policy_config(args: Any) -> PolicyConfig:
    return PolicyConfig(
        base_url=args.base_url,
        model=args.model,
        api_key_env=args.api_key_env,
        temperature=args.temperature,
        max_tokens=args.max_tokens,
        request_timeout_s=args.request_timeout,
    )


def main(argv: Sequence[str] | None = None, *, prog: str = "python -m train.bfcl") -> int:
    """The CLI; raises UsageError for bad input (run it under common.cli.run_cli for the one-line exit 2)."""
    args = build_parser(prog).parse_args(list(argv) if argv is not None else None)
    apply_no_progress(args.no_progress)
    if args.compare:
        print(compare(Path(args.compare[0]), Path(args.compare[1])))
        return 0
    categories = expand_categories(args.categories)
    check_categories(categories)
    for flag, value in (
        ("--limit", args.limit),
        ("--concurrency", args.concurrency),
        ("--max-tokens", args.max_tokens),
    ):
        if value is not None and value < 1:
            raise UsageError(f"{flag} must be at least 1")
    out = Path(args.out) if args.out else _default_out(args.model)
    config = _policy_config(args)

    endpoints: list[EndpointStats] = []

    async def go() -> BfclRunResult:
        async with ChatPolicy(config) as policy:
            try:
                return await run_bfcl(
                    policy,
                    categories,
                    out=out,
                    limit=args.limit,
                    concurrency=args.concurrency,
                    resume=not args.no_resume,
                    retry=RetryConfig(retries=args.retries),
                    progress=not args.no_progress,
                    retry_infra=not args.keep_infra,
                )
            finally:
                endpoints.extend(policy.endpoint_stats())

    result = anyio.run(go)
    print(format_table(result))
    summary_path = Path(args.report) if args.report else out.with_suffix(".summary.json")
    per_endpoint = {"endpoints": [item.model_dump() for item in endpoints]}
    write_json_atomic(summary_path, summary_json(result) | per_endpoint)
    if len(endpoints) > 1 or any(item.failures for item in endpoints):
        print(f"endpoints: {summary_line(endpoints)}", file=sys.stderr)
    again = f" ({result.retried} of them retried after infra failures)" if result.retried else ""
    print(f"\n{result.new} new{again} + {result.skipped} resumed entries in {out}", file=sys.stderr)
    print(f"records: {out}\nsummary: {summary_path}", file=sys.stderr)
    return infra_exit_code(
        what="entries",
        total=result.asked,
        failed=result.infra_failures,
        endpoint=args.base_url,
        error=result.infra_examples[0] if result.infra_examples else None,
    )


if __name__ == "__main__":
    run_cli(main)
