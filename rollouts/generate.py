"""Generate trajectories: a policy behind an OpenAI-compatible API against an env.

    python -m rollouts.generate --env energy --split train \\
        --base-url http://localhost:8000/v1 --model Qwen3-8B \\
        --concurrency 8 --samples 1 --limit 100 --out data/trajectories.jsonl

`--base-url` may name several replicas of one model, comma-separated
(`http://h1:8000/v1,http://h2:8000/v1`): each request goes to the one with
the fewest in flight, a replica that fails (refused, timeout, 5xx) is left out
for a cool-down and the request goes to another; a rollout is an infra failure
only when every replica failed. Per-replica counts are in the stats JSON
(`endpoints`) and, with several, on the closing line.

`--questions FILE.jsonl` runs questions without expected answers instead of
the env's task split (tasks of kind "open"; write such a file with
`python -m rollouts.questions`). The API key comes from the variable named by
`--api-key-env` (default OPENAI_API_KEY) and is never written anywhere.

Safe to kill at any moment: each finished trajectory is one whole line of
`--out`; rerunning the same command resumes: ids already written are skipped,
except infra failures (server down, timeouts), which run again (`--keep-infra`
keeps them). The file holds one record per id (it is compacted on resume, see
rollouts.resume). One run per `--out`: a second one on the same file exits 2
naming the first one's pid. `--no-resume` starts fresh and moves the old file
aside to `OUT.<time>.bak`. A stats JSON (`--report`, default `OUT` with
`.stats.json`) is written at the end. Weave tracing only with `--weave`.

Exit code (common.cli.infra_exit_code): 1 when every rollout of this run failed
on infrastructure (one line naming the server and the error); 0 otherwise,
with a warning line and the counts when some did; 2 for bad input.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from common.cli import ArgumentParser, UsageError, infra_exit_code, run_cli
from common.config_flags import add_config_flags, config_from_args
from common.files import MODE_HELP, write_private_atomic
from common.flags import add_flag, add_policy_endpoint, add_replay_flag, apply_no_progress
from contracts import Task
from rollouts.jsonl import JsonlFormatError

from .endpoints import summary_line
from .envs_io import open_env
from .policy import ChatPolicy, PolicyConfig
from .questions import load_questions
from .rollout import RetryConfig
from .runner import RunResult, run_rollouts
from .tracing import setup_tracing, wanted_project

POLICY_HELP = {
    "temperature": "sampling temperature",
    "top_p": "nucleus sampling",
    "max_tokens": "max tokens per policy turn",
    "seed": "sampling seed (when the server supports it); each task and sample gets its own, derived from it",
    "tool_choice": "tool_choice sent to the server",
    "logprobs": "record per-token logprobs and token ids (for RL)",
}


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(
        prog="python -m rollouts.generate",
        description="Run concurrent rollouts of an OpenAI-compatible policy against an env; "
        "write resumable trajectory JSONL and a stats JSON.",
    )
    src = parser.add_argument_group("tasks")
    src.add_argument("--env", default="energy", help="env spec for envs.load (name, mcp.json, module:factory)")
    src.add_argument("--split", default="train", help="task split of the env")
    src.add_argument("--questions", default=None, metavar="FILE", help='JSONL of {"question": ...} to run instead')
    add_flag(src, "--limit", type=int, default=None, help="only the first N tasks")
    src.add_argument("--samples", type=int, default=1, help="rollouts per task (a GRPO group)")
    add_replay_flag(src)

    pol = parser.add_argument_group("policy")
    add_policy_endpoint(pol)
    # These restate PolicyConfig's fields: their types, defaults and choices come from it.
    add_config_flags(
        pol,
        PolicyConfig,
        ["temperature", "top_p", "max_tokens", "seed", "tool_choice", "logprobs"],
        types={"tool_choice": str},
        help=POLICY_HELP,
        tool_choice={"choices": ("auto", "required", "none")},
    )
    pol.add_argument("--no-think", action="store_true", help="do not keep <think> text in the trajectories")
    pol.add_argument("--request-timeout", type=float, default=120.0, help="seconds per policy request")

    run = parser.add_argument_group("run")
    add_flag(run, "--out", default="data/trajectories.jsonl", help=f"trajectory JSONL (appended; resumes; {MODE_HELP})")
    add_flag(run, "--report", default=None, aliases=("--stats",), help="stats JSON (default: OUT with .stats.json)")
    run.add_argument("--no-resume", action="store_true", help="start fresh: move an existing OUT aside to OUT.*.bak")
    run.add_argument(
        "--keep-infra", action="store_true", help="on resume, keep infra-failed rollouts instead of running them again"
    )
    run.add_argument("--concurrency", type=int, default=8, help="rollouts in flight")
    run.add_argument("--max-turns", type=int, default=8, help="policy turns per rollout")
    run.add_argument("--max-total-tokens", type=int, default=None, help="stop a rollout past this context length")
    run.add_argument("--timeout", type=float, default=600.0, help="seconds per rollout (then: infra error)")
    run.add_argument("--retries", type=int, default=4, help="retries of a transient policy error")
    run.add_argument("--fsync", action="store_true", help="fsync after every line (survives power loss)")
    add_flag(run, "--no-progress", help="no progress bar")
    add_flag(run, "--weave", nargs="?", const="", default=None, help="trace rollouts to weave (bare: project mcpgym)")
    run.add_argument("--no-weave", action="store_true", help="no tracing even when MCPGYM_WEAVE is set")
    return parser


def _check(args: object) -> None:
    for flag in ("samples", "concurrency", "max_turns", "max_tokens"):
        value = getattr(args, flag)
        if value is not None and value < 1:
            raise UsageError(f"--{flag.replace('_', '-')} must be at least 1")
    for flag in ("limit", "max_total_tokens", "retries"):
        value = getattr(args, flag)
        if value is not None and value < 0:
            raise UsageError(f"--{flag.replace('_', '-')} must not be negative")
    for flag in ("timeout", "request_timeout"):
        if getattr(args, flag) <= 0:
            raise UsageError(f"--{flag.replace('_', '-')} must be positive")


def stats_path(out: Path, stats: str | None) -> Path:
    return Path(stats) if stats else out.with_name(out.stem + ".stats.json")


def policy_config(args: argparse.Namespace) -> PolicyConfig:
    """The policy the flags describe (`--no-think` and `--request-timeout` are named for the CLI)."""
    values = vars(args) | {"keep_think": not args.no_think, "request_timeout_s": args.request_timeout}
    return config_from_args(PolicyConfig, values)


async def generate(args: argparse.Namespace, config: PolicyConfig, questions: list[Task] | None) -> RunResult:
    """The run the flags ask for: the env's split (or `questions`), first `--limit`, into `--out`."""
    async with open_env(args.env, replay=args.replay) as env:
        tasks = questions if questions is not None else env.tasks(args.split)
        if args.limit is not None:
            tasks = tasks[: args.limit]
        if not tasks:
            raise UsageError(f"no tasks: env {env.name!r} split {args.split!r} is empty")
        async with ChatPolicy(config) as policy:
            return await run_rollouts(
                env,
                policy,
                tasks,
                samples=args.samples,
                concurrency=args.concurrency,
                out=Path(args.out),
                resume=not args.no_resume,
                timeout_s=args.timeout,
                retry=RetryConfig(retries=args.retries),
                max_turns=args.max_turns,
                max_total_tokens=args.max_total_tokens,
                progress=not args.no_progress,
                durable=args.fsync,
                retry_infra=not args.keep_infra,
            )


def write_report(result: RunResult, path: Path) -> None:
    write_private_atomic(path, json.dumps(result.stats.model_dump(mode="json"), indent=2) + "\n")


def print_summary(result: RunResult, out: Path, stats_file: Path) -> None:
    """The closing lines: where the old file went, the counts, and the replicas when they matter."""
    s = result.stats
    if result.moved_aside:
        print(f"moved the old {out} aside to {result.moved_aside}", file=sys.stderr)
    reward = f"{s.mean_reward:.3f}" if s.mean_reward is not None else "-"
    retried = f" ({s.retried} of them retried after infra failures)" if s.retried else ""
    print(
        f"{s.new} new{retried} + {s.resumed} resumed trajectories in {out}: success {s.success_rate:.1%} "
        f"of {s.scored} scored, mean reward {reward}, errors {s.errors or '{}'}; stats in {stats_file}"
    )
    if len(s.endpoints) > 1 or any(item.failures for item in s.endpoints):
        print(f"endpoints: {summary_line(s.endpoints)}")


def exit_code(result: RunResult, endpoint: str) -> int:
    failed = [traj for traj in result.trajectories if traj.is_infra_failure]
    return infra_exit_code(
        what="rollouts",
        total=len(result.trajectories),
        failed=len(failed),
        endpoint=endpoint,
        error=failed[0].error.message if failed and failed[0].error else None,
    )


async def main() -> int:
    args = build_parser().parse_args()
    _check(args)
    questions = load_questions(args.questions) if args.questions else None
    apply_no_progress(args.no_progress)
    setup_tracing(wanted_project(args.weave, disabled=args.no_weave))
    config = policy_config(args)
    result = await generate(args, config, questions)
    out, stats_file = Path(args.out), stats_path(Path(args.out), args.report)
    write_report(result, stats_file)
    print_summary(result, out, stats_file)
    return exit_code(result, args.base_url)


if __name__ == "__main__":
    run_cli(main, user_errors=(JsonlFormatError,))
