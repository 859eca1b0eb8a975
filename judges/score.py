"""Rescore a trajectory file: `python -m judges.score --judge rules IN.jsonl --out OUT.jsonl`.

    python -m judges.score --judge rules data/traj.jsonl --out data/scored.jsonl
    python -m judges.score --judge mypkg.rewards:brevity data/traj.jsonl --out data/scored.jsonl
    python -m judges.score --judge ruler:0.7+rules:0.3 --judge-model Qwen/Qwen3-8B \\
        --judge-base-url http://localhost:8001/v1 data/traj.jsonl --out data/scored.jsonl

(OUT as a second positional argument still works for one release, with a warning.)

Without `--judge`, the judge is the env's default (judges.registry): that of `--env`, else that
of the env the records name when it is a registered name (energy: rules, bfcl-multi-turn: env),
else rules.

Each group is appended to OUT as soon as it is scored (crash-safe JSONL). A
rerun resumes (rollouts.resume, the same rule as the rollouts): trajectories
already in OUT are skipped, except those the judge failed on (infra failures of
the judge, not of the rollout), which are judged again (`--keep-infra` keeps
them); OUT is compacted to one record per id first. With the verdict cache (on
by default) re-judging costs nothing. One run per OUT: a second one exits 2
naming the first one's pid.

Exit code (common.cli.infra_exit_code): 1 when the judge failed on every
trajectory it was asked about (one line naming the judge endpoint and the
error), 0 otherwise (a warning line with the counts when it failed on some),
2 for bad input. A 400/401/403/404 from the judge is not retried, and its line
says which key or flag to check (JUDGE_API_KEY, --judge-base-url, ...). The judge's key comes from the environment
(`--judge-api-key-env`, default JUDGE_API_KEY; OPENAI_API_KEY stands in only for api.openai.com). At the
end it prints the metrics table (judges.metrics plus the judge's own stats:
calls, cache hits, retries, latency, tokens) and writes it as JSON (`--report`).
"""

from __future__ import annotations

import asyncio
import json
import warnings
from pathlib import Path

from tqdm import tqdm

from common.cli import ArgumentParser, UsageError, infra_exit_code, run_cli
from common.files import write_private_atomic
from common.flags import add_flag, add_out_with_old_positional, apply_no_progress, out_from, progress_off
from contracts import Trajectory
from rollouts.jsonl import JsonlAppender, JsonlFormatError
from rollouts.lock import output_lock
from rollouts.resume import Record, is_infra_record, resume_records

from .base import Judge
from .cache import default_cache_dir
from .compose import build_judge
from .groups import group_trajectories
from .metrics import compute_metrics, format_table, json_safe, load_trajectories
from .registry import FALLBACK_JUDGE, JUDGE_HELP, default_judge_of
from .rules import RubricConfig


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(
        prog="python -m judges.score",
        description="Score a trajectory file with rules, RULER, an LLM rubric judge or a weighted mix of them.",
    )
    parser.add_argument("input", metavar="IN", help="trajectory JSONL (rollouts.generate output)")
    add_out_with_old_positional(parser, help="scored trajectory JSONL (appended to; ids in it are skipped)")
    parser.add_argument("--judge", default=None, help=JUDGE_HELP)
    parser.add_argument(
        "--env",
        default=None,
        help="env (name, mcp.json or module:factory) whose default judge --judge means when not given "
        "(default: the env the records name, when it is a registered name; else rules)",
    )
    parser.add_argument("--judge-model", default=None, help="judge model name (needed for ruler and llm)")
    add_flag(parser, "--judge-base-url", default=None, help="OpenAI-compatible base URL of the judge (e.g. vLLM)")
    add_flag(
        parser,
        "--judge-api-key-env",
        default="JUDGE_API_KEY",
        help="the judge key's variable (OPENAI_API_KEY stands in for api.openai.com only)",
    )
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
    add_flag(
        parser, "--report", default=None, aliases=("--metrics-json",), help="metrics JSON (default OUT.metrics.json)"
    )
    add_flag(parser, "--no-progress", help="no progress bar")
    parser.add_argument(
        "--keep-infra", action="store_true", help="on resume, keep trajectories the judge failed on (do not rejudge)"
    )
    return parser


def main() -> int:
    args = build_parser().parse_args()
    apply_no_progress(args.no_progress)
    args.out = out_from(args)
    # litellm's response models trip pydantic's serializer checks on every judge call: noise, not a problem.
    warnings.filterwarnings("ignore", message="Pydantic serializer warnings", category=UserWarning)
    src, dst = Path(args.input), Path(args.out)
    if src.resolve() == dst.resolve():
        raise UsageError("OUT must differ from IN (OUT is appended to)")
    if args.concurrency < 1 or args.retries < 0:
        raise UsageError("--concurrency must be >= 1 and --retries >= 0")
    trajs = load_trajectories(src)
    if not trajs:
        raise UsageError(f"{src}: no trajectories")
    spec = args.judge or default_spec(args.env, trajs)
    try:
        rubric = RubricConfig.from_file(args.rubric) if args.rubric else None
        judge_rubric = Path(args.judge_rubric).read_text() if args.judge_rubric else None
        extra_body = json.loads(args.judge_extra_body) if args.judge_extra_body else None
        if extra_body is not None and not isinstance(extra_body, dict):
            raise ValueError("--judge-extra-body must be a JSON object")
        judge = build_judge(
            spec,
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
    with output_lock(dst):
        todo, done, retried = plan_scoring(trajs, dst, keep_infra=args.keep_infra)
        written = asyncio.run(score_into(judge, todo, dst, done, desc=f"judge {spec}"))
    scored = load_trajectories(dst)
    values = compute_metrics(scored) | reward_part_means(scored)
    values |= {f"judge/{key}": value for key, value in judge.report().items()}
    metrics_path = Path(args.report) if args.report else dst.with_suffix(".metrics.json")
    write_private_atomic(metrics_path, json.dumps(json_safe(values), indent=2) + "\n")
    print(format_table(values))
    again = f"; {retried} judged again after the judge failed on them" if retried else ""
    print(
        f"scored {len(todo)} of {len(trajs)} trajectories ({len(trajs) - len(todo)} already in {dst}{again}); "
        f"wrote {dst}"
    )
    # The judge's work is the trajectories it was asked about: those not already infra-failed rollouts.
    asked = [traj for traj in written if "judge_error" in traj.metrics or not traj.is_infra_failure]
    failed = [traj for traj in asked if "judge_error" in traj.metrics]
    return infra_exit_code(
        what="trajectories judged",
        total=len(asked),
        failed=len(failed),
        endpoint=f"judge {args.judge_base_url or args.judge_model or spec}",
        error=str(failed[0].metrics["judge_error"]) if failed else None,
    )


def default_spec(env_spec: str | None, trajs: list[Trajectory]) -> str:
    """The judge `--judge` means when not given (module docstring); printed, so a run says which."""
    from envs.registry import available

    if env_spec is not None:
        spec, source = _env_default(env_spec), f"env {env_spec}"
    else:
        registered = {entry.name for entry in available()}
        names = sorted({traj.env for traj in trajs})
        defaults = {name: _env_default(name) if name in registered else FALLBACK_JUDGE for name in names}
        if len(set(defaults.values())) > 1:
            shown = ", ".join(f"{name}: {spec}" for name, spec in defaults.items())
            raise UsageError(f"the records' envs have different default judges ({shown}); give --judge")
        spec, source = next(iter(defaults.values())), f"env {', '.join(names)}"
    print(f"judge {spec} (the default of {source})")
    return spec


def _env_default(env_spec: str) -> str:
    from envs.registry import load

    try:
        env = load(env_spec)  # not started: only its default judge is read
    except ImportError as exc:  # an env whose extra is not installed
        raise UsageError(f"env {env_spec}: {exc}; give --judge") from None
    return default_judge_of(env)


def reward_part_means(trajs: list[Trajectory]) -> dict[str, float]:
    """The mean of each reward part over the scored trajectories (`reward/<part>`)."""
    sums: dict[str, list[float]] = {}
    for traj in trajs:
        if traj.reward is not None:
            for name, value in traj.reward_parts.items():
                sums.setdefault(name, []).append(value)
    return {f"reward/{name}": sum(values) / len(values) for name, values in sorted(sums.items())}


def plan_scoring(
    trajs: list[Trajectory], dst: Path, *, keep_infra: bool = False
) -> tuple[list[Trajectory], set[str], int]:
    """(the trajectories to score, the ids `dst` already holds, how many of those to score the
    judge failed on before) for a run into
    `dst`, resuming from it (call it holding `output_lock(dst)`: it compacts `dst`).

    A record of `dst` is judged again when it is an infra failure and its input is not: the judge
    failed on it (or the rollout was rerun since and now stands). A group is rescored whole when
    any member is missing (relative judges need all of them); members already in `dst` are not
    rewritten."""
    input_infra = {traj.id: traj.is_infra_failure for traj in trajs}

    def again(record: Record) -> bool:
        return not keep_infra and is_infra_record(record) and input_infra.get(str(record.get("id"))) is False

    try:
        resumed = resume_records(dst, retry=again)
    except JsonlFormatError as exc:
        raise UsageError(str(exc)) from None
    done = resumed.done_ids
    todo = [traj for group in group_trajectories(trajs) if any(t.id not in done for t in group) for traj in group]
    return todo, done, len(resumed.retry_ids)


async def score_into(judge: Judge, todo: list[Trajectory], dst: Path, done: set[str], *, desc: str) -> list[Trajectory]:
    """Score `todo` group by group, appending each group to `dst` as soon as it is scored (members
    in `done` are not written again); returns what was written."""
    written: list[Trajectory] = []
    with (
        JsonlAppender(dst) as out,
        tqdm(total=len(group_trajectories(todo)), unit="group", desc=desc, disable=progress_off()) as bar,
    ):

        def write(group: list[Trajectory]) -> None:
            for traj in group:
                if traj.id not in done:
                    out.write(traj)
                    done.add(traj.id)
                    written.append(traj)
            bar.update(1)

        try:
            await judge.score(todo, on_group=write)
        finally:
            await judge.aclose()
    return written


if __name__ == "__main__":
    run_cli(main)
