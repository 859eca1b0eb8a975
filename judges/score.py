"""Rescore a trajectory file: `python -m judges.score --judge rules IN.jsonl OUT.jsonl`.

    python -m judges.score --judge rules data/traj.jsonl data/scored.jsonl
    python -m judges.score --judge ruler:0.7+rules:0.3 --judge-model Qwen/Qwen3-8B \\
        --judge-base-url http://localhost:8001/v1 data/traj.jsonl data/scored.jsonl

Each group is appended to OUT as soon as it is scored (crash-safe JSONL); a
rerun skips trajectories already in OUT, and with the verdict cache (on by
default) re-judging costs nothing. The judge's key comes from the environment
(`--judge-api-key-env`, default JUDGE_API_KEY, else OPENAI_API_KEY). At the
end it prints the metrics table (judges.metrics plus the judge's own stats:
calls, cache hits, retries, latency, tokens) and writes it as JSON.
"""

from __future__ import annotations

import asyncio
import json
import warnings
from pathlib import Path

from tqdm import tqdm

from envs.cli import ArgumentParser, UsageError, run_cli
from rollouts.jsonl import JsonlAppender, iter_jsonl
from rollouts.record import Trajectory

from .base import Judge, group_trajectories
from .cache import default_cache_dir
from .compose import build_judge
from .metrics import compute_metrics, format_table, json_safe, load_trajectories
from .rules import RubricConfig


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(
        prog="python -m judges.score",
        description="Score a trajectory file with rules, RULER, an LLM rubric judge or a weighted mix of them.",
    )
    parser.add_argument("input", metavar="IN", help="trajectory JSONL (rollouts.generate output)")
    parser.add_argument("output", metavar="OUT", help="scored trajectory JSONL (appended to; ids in it are skipped)")
    parser.add_argument(
        "--judge",
        default="rules",
        help='"rules", "ruler", "llm", or a weighted sum such as "ruler+rules" or "ruler:0.7+rules:0.3"',
    )
    parser.add_argument("--judge-model", default=None, help="judge model name (needed for ruler and llm)")
    parser.add_argument("--judge-base-url", default=None, help="OpenAI-compatible base URL of the judge (e.g. vLLM)")
    parser.add_argument("--judge-api-key-env", default="JUDGE_API_KEY", help="environment variable with the judge key")
    parser.add_argument(
        "--judge-extra-body",
        default=None,
        help='JSON merged into every judge request, e.g. \'{"chat_template_kwargs": {"enable_thinking": false}}\'',
    )
    parser.add_argument("--rubric", default=None, help="rule rubric file (YAML or JSON, judges.rules.RubricConfig)")
    parser.add_argument("--judge-rubric", default=None, help="text file with the rubric for the LLM judges")
    parser.add_argument("--concurrency", type=int, default=8, help="judge requests in flight at once")
    parser.add_argument("--retries", type=int, default=2, help="retries of a failed or malformed judge reply")
    parser.add_argument("--cache-dir", default=str(default_cache_dir()), help="verdict cache directory")
    parser.add_argument("--no-cache", action="store_true", help="do not read or write the verdict cache")
    parser.add_argument("--metrics-json", default=None, help="where to write the metrics (default OUT.metrics.json)")
    return parser


def main() -> int:
    args = build_parser().parse_args()
    # litellm's response models trip pydantic's serializer checks on every judge call: noise, not a problem.
    warnings.filterwarnings("ignore", message="Pydantic serializer warnings", category=UserWarning)
    src, dst = Path(args.input), Path(args.output)
    if src.resolve() == dst.resolve():
        raise UsageError("OUT must differ from IN (OUT is appended to)")
    if args.concurrency < 1 or args.retries < 0:
        raise UsageError("--concurrency must be >= 1 and --retries >= 0")
    try:
        rubric = RubricConfig.from_file(args.rubric) if args.rubric else None
        judge_rubric = Path(args.judge_rubric).read_text() if args.judge_rubric else None
        extra_body = json.loads(args.judge_extra_body) if args.judge_extra_body else None
        if extra_body is not None and not isinstance(extra_body, dict):
            raise ValueError("--judge-extra-body must be a JSON object")
        judge = build_judge(
            args.judge,
            judge_model=args.judge_model,
            judge_base_url=args.judge_base_url,
            rubric=rubric,
            concurrency=args.concurrency,
            cache_dir=None if args.no_cache else Path(args.cache_dir),
            judge_rubric=judge_rubric,
            api_key_env=args.judge_api_key_env,
            extra_body=extra_body,
            retries=args.retries,
        )
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    trajs = load_trajectories(src)
    if not trajs:
        raise UsageError(f"{src}: no trajectories")
    done = {raw.get("id") for raw in iter_jsonl(dst, strict=False)} if dst.exists() else set()
    # A group is rescored whole when any member is missing (relative judges need all of them).
    todo = [traj for group in group_trajectories(trajs) if any(t.id not in done for t in group) for traj in group]
    asyncio.run(score_into(judge, todo, dst, done, desc=f"judge {args.judge}"))
    scored = load_trajectories(dst)
    values = compute_metrics(scored) | {f"judge/{key}": value for key, value in judge.report().items()}
    metrics_path = Path(args.metrics_json) if args.metrics_json else dst.with_suffix(".metrics.json")
    metrics_path.write_text(json.dumps(json_safe(values), indent=2) + "\n")
    print(format_table(values))
    print(f"scored {len(todo)} of {len(trajs)} trajectories ({len(trajs) - len(todo)} already in {dst}); wrote {dst}")
    return 0


async def score_into(judge: Judge, todo: list[Trajectory], dst: Path, done: set[str], *, desc: str) -> None:
    """Score `todo` group by group, appending each group to `dst` as soon as it is scored."""
    with JsonlAppender(dst) as out, tqdm(total=len(group_trajectories(todo)), unit="group", desc=desc) as bar:

        def write(group: list[Trajectory]) -> None:
            for traj in group:
                if traj.id not in done:
                    out.write(traj)
                    done.add(traj.id)
            bar.update(1)

        try:
            await judge.score(todo, on_group=write)
        finally:
            await judge.aclose()


if __name__ == "__main__":
    run_cli(main)
