"""Evaluate a policy on an env split: success rate and the judges' function-calling metrics.

    python -m train.eval --env energy --split test --checkpoint .art/energy/models/agent/checkpoints/0003
    python -m train.eval --env energy --split test --base-url http://localhost:8000/v1 --model Qwen3-8B
    python -m train.eval --env energy --compare runs/base .art/energy/models/agent/checkpoints/0003
    python -m train.eval --compare runs/grpo/energy/agent/eval/warm_start.jsonl runs/grpo/energy/agent/eval/grpo.jsonl
    python -m train.eval --bench bfcl --categories simple,multiple --base-url URL --model NAME  # train.bfcl

A model is either a folder (a LoRA checkpoint, served on its base model by a vLLM started here, or
a full model folder) or `URL#MODEL` (any OpenAI-compatible server). Greedy decoding, one sample
per task, so two runs of one model give one number. Prints a table and writes the JSON report
(`--report`, with the trajectories beside it, the same JSONL every stage reads:
`REPORT.<i>.trajectories.jsonl` for the i-th model). `--limit N` evaluates N tasks (0: all).

Resumable like `rollouts.generate` (the same runner, rollouts.runner): rerunning with the same
`--report` skips the tasks whose trajectories are there, except infra failures (server down,
timeouts), which run again (`--keep-infra` keeps them); each trajectory file is compacted to one
record per id first and held by one run at a time (a second run on it exits 2 naming the first
one's pid). The closing line of each model says how many were run again. The exit code follows
the rule of every CLI that calls an endpoint (README: exit codes), over the rollouts of this run.

This module is the CLI shell: the evaluation itself is `train.evaluation` (which GRPO uses for its
before/after and validation evaluations; its names are importable from here too), the model specs
and the vLLM servers for folders are `train.eval_models`.
"""

from __future__ import annotations

import functools
import sys
import time
from pathlib import Path
from typing import Any

from common.cli import ArgumentParser, UsageError, run_cli
from common.config_flags import add_config_flags, config_from_args
from common.flags import add_flag, add_replay_flag, apply_no_progress
from judges.registry import JUDGE_HELP
from rollouts.endpoints import summary_line
from train.compare import format_comparison
from train.eval_models import ModelSpec, Served, adapter_base, parse_spec
from train.evaluation import (
    TABLE_METRICS,
    EvalConfig,
    EvalReport,
    evaluate,
    evaluate_endpoint,
    exit_code,
    format_table,
    paired_comparisons,
    policy_for,
    select_tasks,
    write_reports,
)

__all__ = [
    "TABLE_METRICS",
    "EvalConfig",
    "EvalReport",
    "ModelSpec",
    "Served",
    "adapter_base",
    "build_parser",
    "check_args",
    "cli",
    "compare_files",
    "evaluate",
    "format_table",
    "main",
    "paired_comparisons",
    "parse_spec",
    "policy_for",
    "select_tasks",
    "write_reports",
]


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(
        prog="python -m train.eval",
        description="Success rate and function-calling metrics of one model, or two side by side.",
    )
    parser.add_argument(
        "--bench", choices=("bfcl",), help="bfcl: the Berkeley leaderboard instead (`--bench bfcl --help`)"
    )
    parser.add_argument("--env", default="energy", help="env name, mcp.json or module:factory")
    add_replay_flag(parser)
    add_config_flags(parser, EvalConfig, ["split"])
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--checkpoint", type=Path, help="LoRA checkpoint or model folder, served here by vLLM")
    add_flag(which, "--base-url", help="OpenAI-compatible endpoint, URL,URL,... for replicas (with --model)")
    which.add_argument(
        "--compare",
        nargs=2,
        metavar=("A", "B"),
        help="two models (folders or URL#MODEL) or two evaluations already run (trajectory .jsonl), "
        "compared task by task: fixed, lost, McNemar's exact p, a bootstrap 95%% interval",
    )
    add_flag(parser, "--model", help="model name at --base-url")
    add_config_flags(parser, EvalConfig, ["api_key_env"], help={"api_key_env": "variable holding --base-url's API key"})
    add_flag(parser, "--base-model", default=None, help="base model of LoRA checkpoints (default: theirs)")
    add_config_flags(parser, EvalConfig, ["limit", "seed"], limit={"aliases": ("--tasks",)})
    parser.add_argument("--judge", default=None, help=f"rewards: {JUDGE_HELP}")
    parser.add_argument("--judge-model", default=None, help="model of LLM judges")
    add_flag(parser, "--judge-base-url", default=None, help="endpoint of LLM judges")
    add_flag(parser, "--judge-api-key-env", default="JUDGE_API_KEY", help="the judge key's variable")
    add_config_flags(parser, EvalConfig, ["max_turns", "max_tokens", "concurrency"])
    parser.add_argument("--max-model-len", type=int, default=4096, help="context of a vLLM started here")
    add_config_flags(parser, EvalConfig, ["retries"])
    add_flag(
        parser,
        "--report",
        type=Path,
        default=None,
        aliases=("--out",),
        help="trajectories beside it (REPORT.N.trajectories.jsonl); the same --report again resumes "
        "(default runs/eval/<time>.json)",
    )
    add_flag(parser, "--no-progress", help="no progress bar")
    add_config_flags(parser, EvalConfig, ["keep_infra"])
    return parser


def check_args(args: Any) -> None:
    if args.base_url is not None and not args.model:
        raise UsageError("--base-url needs --model")
    if args.limit < 0 or args.retries < 0:
        raise UsageError("--limit and --retries must be >= 0")
    for name in ("max_turns", "max_tokens", "concurrency"):
        if getattr(args, name) < 1:
            raise UsageError(f"--{name.replace('_', '-')} must be >= 1")


def model_specs(args: Any) -> list[ModelSpec]:
    """The models to evaluate, in order; two of one label get A:/B: prefixes to tell them apart."""
    if args.checkpoint is not None:
        return [parse_spec(str(args.checkpoint))]
    if not args.compare:
        return [ModelSpec(label=args.model, base_url=args.base_url, model=args.model)]
    specs = [parse_spec(text) for text in args.compare]
    if specs[0].label == specs[1].label:
        specs = [
            spec.model_copy(update={"label": f"{key}:{spec.label}"}) for key, spec in zip("AB", specs, strict=True)
        ]
    return specs


async def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    check_args(args)
    apply_no_progress(args.no_progress)
    specs = model_specs(args)
    files = [spec.trajectories is not None for spec in specs]
    if len(specs) == 2 and all(files):
        return compare_files(specs[0], specs[1])
    if any(files):
        raise UsageError("a trajectory .jsonl is compared only with another (--compare A.jsonl B.jsonl)")
    config = config_from_args(EvalConfig, vars(args))
    out = args.report or Path("runs") / "eval" / f"{time.strftime('%Y%m%d-%H%M%S')}.json"
    reports, endpoints = await _evaluate_specs(specs, args, config, out)
    comparisons = paired_comparisons(reports)
    print(format_table(reports))
    for comparison in comparisons:
        print(format_comparison(comparison))
    print(f"report {write_reports(reports, out, comparisons=comparisons)}")
    return exit_code(reports, endpoints)


def _judge(args: Any, env: Any) -> Any:
    """The judge `--judge` names, else the env's default judge."""
    from judges import build_judge, default_judge_of

    try:
        return build_judge(
            args.judge or default_judge_of(env),
            judge_model=args.judge_model,
            judge_base_url=args.judge_base_url,
            api_key_env=args.judge_api_key_env,
        )
    except ValueError as exc:
        raise UsageError(f"--judge: {exc}") from None


async def _evaluate_specs(
    specs: list[ModelSpec], args: Any, config: EvalConfig, out: Path
) -> tuple[list[EvalReport], list[str]]:
    """Each model on the same tasks, serving the folders here; (reports, endpoint of each)."""
    import envs
    from envs.replay import attach, replay_from_flag

    setting = replay_from_flag(args.replay)
    env = envs.load(args.env)
    judge = _judge(args, env)
    attach(env, setting)
    served = Served(max_model_len=args.max_model_len, base_model=args.base_model)
    reports, endpoints = [], []
    async with env:
        tasks = select_tasks(env.tasks(config.split), config.limit, seed=config.seed)
        if not tasks:
            raise UsageError(f"env {env.name!r} has no tasks in split {config.split!r}")
        try:
            for index, spec in enumerate(specs):
                base_url, model, key = await served.resolve(spec)
                trajectories = out.with_name(f"{out.stem}.{index}.trajectories.jsonl")
                report = await evaluate_endpoint(
                    env, base_url, model, tasks, config, label=spec.label, judge=judge, out=trajectories, api_key=key
                )
                _print_closing_lines(report)
                reports.append(report)
                endpoints.append(base_url)
        finally:
            await served.aclose()
    return reports, endpoints


def _print_closing_lines(report: EvalReport) -> None:
    """Each model's endpoints (when several, or one failed) and how many trajectories are new."""
    if len(report.endpoints) > 1 or any(item.failures for item in report.endpoints):
        print(f"{report.label} endpoints: {summary_line(report.endpoints)}", file=sys.stderr)
    again = f" ({report.retried} of them retried after infra failures)" if report.retried else ""
    print(
        f"{report.label}: {report.new} new{again} + {report.n_tasks - report.new} resumed trajectories "
        f"in {report.trajectories}",
        file=sys.stderr,
    )


def compare_files(a: ModelSpec, b: ModelSpec) -> int:
    """Two evaluations already run, compared task by task (no model is served)."""
    from contracts import Trajectory
    from rollouts.jsonl import JsonlFormatError, iter_jsonl
    from train.compare import compare_runs

    loaded = []
    for spec in (a, b):
        try:
            loaded.append([Trajectory.model_validate(row) for row in iter_jsonl(Path(str(spec.trajectories)))])
        except (JsonlFormatError, ValueError) as exc:
            raise UsageError(f"{spec.trajectories}: not a trajectory JSONL ({str(exc).splitlines()[0]})") from None
    comparison = compare_runs(*loaded, before_label=a.label, after_label=b.label)
    if comparison.n_tasks == 0:
        raise UsageError(f"{a.trajectories} and {b.trajectories} have no task in common")
    print(format_comparison(comparison))
    return 0


def cli(argv: list[str] | None = None) -> Any:
    """`--bench bfcl` hands the whole argv to train.bfcl (the Berkeley leaderboard); else the env eval."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--bench" in argv or any(arg.startswith("--bench=") for arg in argv):
        from train import bfcl

        return functools.partial(bfcl.main, argv, prog="python -m train.eval --bench bfcl")
    return main


if __name__ == "__main__":
    run_cli(cli())
