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

`evaluate(...)` is the library entry GRPO uses for its before/after and validation evaluations.
"""

from __future__ import annotations

import functools
import json
import random
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from common.cli import ArgumentParser, UsageError, infra_exit_code, run_cli
from common.flags import add_flag, apply_no_progress
from contracts import Task
from rollouts.endpoints import EndpointStats, summary_line
from train.compare import Comparison, format_comparison

# The metrics shown in tables, in this order (all from judges.compute_metrics except success/reward).
TABLE_METRICS = (
    "success_rate",
    "reward_mean",
    "parse_rate",
    "func_name_accuracy",
    "param_f1",
    "exec_rate",
    "tool_selection_accuracy",
    "plan_success_rate",
)


class EvalReport(BaseModel):
    """One model on one split: what tables and JSON show."""

    label: str
    model: str
    env: str
    split: str
    n_tasks: int
    success_rate: float
    reward_mean: float | None = None
    n_infra: int = 0
    new: int = 0  # trajectories this run produced (the rest were resumed from `trajectories`)
    retried: int = 0  # of `new`: tasks the file held as infra failures, run again
    new_infra: int = 0  # of `new`: infra failures (the exit code's count)
    first_infra_error: str | None = None  # of this run's infra failures, for the exit line
    metrics: dict[str, Any] = Field(default_factory=dict)
    by_kind: dict[str, float] = Field(default_factory=dict)  # success rate per task kind
    wall_s: float = 0.0
    trajectories: Path | None = None
    endpoints: list[EndpointStats] = Field(default_factory=list)  # per policy replica (--base-url URL,URL,...)

    def value(self, key: str) -> float | None:
        if key == "success_rate":
            return self.success_rate
        if key == "reward_mean":
            return self.reward_mean
        value = self.metrics.get(key)
        return float(value) if isinstance(value, int | float) else None


def select_tasks(tasks: Sequence[Task], limit: int | None, *, seed: int = 0) -> list[Task]:
    """A fixed subset of `limit` tasks (all when None or 0), spread over the task kinds so a small
    subset still has every kind: a seeded shuffle per kind, then round-robin across kinds."""
    if not limit or limit >= len(tasks):
        return list(tasks)
    rng = random.Random(seed)
    by_kind: dict[str, list[Task]] = {}
    for task in tasks:
        by_kind.setdefault(task.kind, []).append(task)
    for items in by_kind.values():
        rng.shuffle(items)
    # Proportional share per kind (at least one each), filled largest-remainder style.
    total = len(tasks)
    share = {kind: max(1, round(limit * len(items) / total)) for kind, items in by_kind.items()}
    chosen: list[Task] = []
    for kind in sorted(by_kind):
        chosen += by_kind[kind][: share[kind]]
    leftovers = [task for kind in sorted(by_kind) for task in by_kind[kind][share[kind] :]]
    chosen = (chosen + leftovers)[:limit]
    return sorted(chosen, key=lambda task: task.id)


async def evaluate(
    env: Any,
    policy: Any,
    tasks: Sequence[Task],
    *,
    label: str,
    split: str,
    judge: Any = None,
    out: Path | None = None,
    concurrency: int = 8,
    max_turns: int = 4,
    progress: bool = True,
    retry_infra: bool = True,
    retries: int = 4,
) -> EvalReport:
    """Run each task once with `policy`, score with `judge` (else the env verdict), summarise.
    With `out`, resumes from it: tasks done are skipped, infra failures run again unless
    `retry_infra=False`."""
    from judges import compute_metrics
    from rollouts import run_rollouts

    started = time.perf_counter()
    result = await run_rollouts(
        env,
        policy,
        list(tasks),
        samples=1,
        concurrency=concurrency,
        out=out,
        max_turns=max_turns,
        progress=progress,
        retry_infra=retry_infra,
        retries=retries,
    )
    trajs = result.all  # a resumed evaluation counts what it had
    new_infra = [traj for traj in result.trajectories if traj.is_infra_failure]
    if judge is not None:
        trajs = await judge.score(trajs)
    scored = [traj for traj in trajs if not traj.is_infra_failure]
    rewards = [traj.reward for traj in scored if traj.reward is not None]
    kinds: dict[str, list[bool]] = {}
    for traj in scored:
        kinds.setdefault(traj.task.kind, []).append(traj.success)
    metrics = {key: value for key, value in compute_metrics(trajs).items() if _finite_or_int(value)}
    return EvalReport(
        label=label,
        model=policy.model,
        env=env.name,
        split=split,
        n_tasks=len(trajs),
        success_rate=sum(traj.success for traj in scored) / len(scored) if scored else 0.0,
        reward_mean=sum(rewards) / len(rewards) if rewards else None,
        n_infra=len(trajs) - len(scored),
        new=len(result.trajectories),
        retried=result.retried,
        new_infra=len(new_infra),
        first_infra_error=new_infra[0].error.message if new_infra and new_infra[0].error else None,
        metrics=metrics,
        by_kind={kind: sum(values) / len(values) for kind, values in sorted(kinds.items())},
        wall_s=time.perf_counter() - started,
        trajectories=out,
    )


def _finite_or_int(value: Any) -> bool:
    if isinstance(value, float):
        return value == value  # NaN (no data for the metric) is left out
    return isinstance(value, int)


def format_table(reports: Sequence[EvalReport]) -> str:
    """Metrics as rows, one column per report."""
    headers = ["metric", *[report.label for report in reports]]
    rows = [[key, *[_fmt(report.value(key)) for report in reports]] for key in TABLE_METRICS]
    kinds = sorted({kind for report in reports for kind in report.by_kind})
    rows += [[f"success[{kind}]", *[_fmt(report.by_kind.get(kind)) for report in reports]] for kind in kinds]
    rows.append(["tasks", *[str(report.n_tasks) for report in reports]])
    rows.append(["infra failures", *[str(report.n_infra) for report in reports]])
    widths = [max(len(row[col]) for row in [headers, *rows]) for col in range(len(headers))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(headers, widths, strict=True))]
    lines.append("  ".join("-" * width for width in widths))
    lines += ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)) for row in rows]
    return "\n".join(lines)


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def paired_comparisons(reports: Sequence[EvalReport]) -> list[Comparison]:
    """Each report against the one before it, task by task (train.compare), where both kept
    their trajectories: fixed, lost, McNemar's exact p and a bootstrap interval."""
    from contracts import Trajectory
    from rollouts.jsonl import iter_jsonl
    from train.compare import compare_runs

    def trajectories(report: EvalReport) -> list[Trajectory] | None:
        if report.trajectories is None or not Path(report.trajectories).is_file():
            return None
        return [Trajectory.model_validate(row) for row in iter_jsonl(Path(report.trajectories), strict=False)]

    loaded = [trajectories(report) for report in reports]
    return [
        compare_runs(loaded[i - 1], loaded[i], before_label=reports[i - 1].label, after_label=reports[i].label)
        for i in range(1, len(reports))
        if loaded[i - 1] is not None and loaded[i] is not None
    ]


def write_reports(reports: Sequence[EvalReport], path: Path, *, comparisons: Sequence[Comparison] = ()) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    data: dict[str, Any] = {"reports": [report.model_dump(mode="json") for report in reports]}
    if comparisons:
        data["comparisons"] = [comparison.model_dump(mode="json") for comparison in comparisons]
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    tmp.replace(path)  # atomic: a crash never leaves half a JSON file
    return path


# --------------------------------------------------------------------------- model specs


class ModelSpec(BaseModel):
    """What to evaluate: an endpoint, or a folder to serve here."""

    label: str
    base_url: str | None = None
    model: str | None = None
    folder: Path | None = None  # a LoRA checkpoint or a full model folder
    trajectories: Path | None = None  # an evaluation already run (its trajectory JSONL): nothing to serve


def parse_spec(text: str) -> ModelSpec:
    """`URL#MODEL` or a folder (LoRA checkpoint or model)."""
    if "#" in text and text.split("#", 1)[0].startswith(("http://", "https://")):
        url, model = text.split("#", 1)
        if not model:
            raise UsageError(f"{text!r}: give the model name after '#' (URL#MODEL)")
        return ModelSpec(label=model, base_url=url, model=model)
    folder = Path(text).expanduser()
    if folder.is_file() and folder.suffix == ".jsonl":
        return ModelSpec(label=folder.stem, trajectories=folder.resolve())
    if not folder.is_dir():
        raise UsageError(f"{text!r} is neither a folder (checkpoint or model), URL#MODEL nor a trajectory .jsonl")
    if not (folder / "adapter_config.json").is_file() and not (folder / "config.json").is_file():
        raise UsageError(f"{folder}: not a LoRA checkpoint (adapter_config.json) nor a model (config.json)")
    return ModelSpec(label=folder.name if folder.name else str(folder), folder=folder.resolve())


def adapter_base(folder: Path, override: str | None = None) -> Path:
    """The base model a LoRA checkpoint was trained on (its adapter_config.json), or `override`."""
    if override:
        return Path(override).expanduser()
    config = json.loads((folder / "adapter_config.json").read_text())
    base = config.get("base_model_name_or_path")
    if base and Path(base).is_dir():
        return Path(base)
    from train.models import ensure_base_model

    return ensure_base_model()  # checkpoints of the embedded model may name it by its hub id


class Served:
    """Starts one vLLM per base model for the folder specs; endpoints pass through."""

    def __init__(self, *, max_model_len: int, base_model: str | None) -> None:
        self.max_model_len = max_model_len
        self.base_model = base_model
        self.servers: dict[Path, Any] = {}

    async def resolve(self, spec: ModelSpec) -> tuple[str, str]:
        """(base_url, served model name) for a spec."""
        if spec.folder is None:
            return str(spec.base_url), str(spec.model)
        from serve.vllm import VLLMConfig, VLLMServer

        is_adapter = (spec.folder / "adapter_config.json").is_file()
        base = adapter_base(spec.folder, self.base_model) if is_adapter else spec.folder
        server = self.servers.get(base)
        if server is None:
            print(f"eval: starting vLLM for {base} ...", file=sys.stderr)
            server = VLLMServer(
                VLLMConfig(model=base, served_model_name="base", enable_lora=True, max_model_len=self.max_model_len)
            )
            self.servers[base] = server
            await server.start()
        if not is_adapter:
            return server.base_url, server.served_model_name
        name = f"eval{len(self.servers)}-{abs(hash(spec.folder)) % 10**6}"
        await server.load_lora(name, spec.folder, replace=True)
        return server.base_url, name

    async def aclose(self) -> None:
        for server in self.servers.values():
            await server.stop()


# --------------------------------------------------------------------------- CLI


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(
        prog="python -m train.eval",
        description="Success rate and function-calling metrics of one model, or two side by side.",
    )
    parser.add_argument(
        "--bench", choices=("bfcl",), help="bfcl: the Berkeley leaderboard instead (`--bench bfcl --help`)"
    )
    parser.add_argument("--env", default="energy", help="env name, mcp.json or module:factory")
    parser.add_argument("--split", default="test", help="task split")
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
    add_flag(parser, "--api-key-env", default="OPENAI_API_KEY", help="variable holding --base-url's API key")
    add_flag(parser, "--base-model", default=None, help="base model of LoRA checkpoints (default: theirs)")
    add_flag(parser, "--limit", type=int, default=40, aliases=("--tasks",), help="tasks to evaluate (0: the split)")
    parser.add_argument("--seed", type=int, default=0, help="which subset of tasks")
    parser.add_argument("--judge", default="rules", help="rules | ruler | ruler+rules (rewards and metrics)")
    parser.add_argument("--judge-model", default=None, help="model of LLM judges")
    add_flag(parser, "--judge-base-url", default=None, help="endpoint of LLM judges")
    add_flag(parser, "--judge-api-key-env", default="JUDGE_API_KEY", help="the judge key's variable")
    parser.add_argument("--max-turns", type=int, default=4)
    parser.add_argument("--max-tokens", type=int, default=256, help="per policy turn")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--max-model-len", type=int, default=4096, help="context of a vLLM started here")
    parser.add_argument("--retries", type=int, default=4, help="retries of a transient policy error")
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
    parser.add_argument(
        "--keep-infra", action="store_true", help="on resume, keep infra-failed rollouts instead of running them again"
    )
    return parser


def check_args(args: Any) -> None:
    if args.base_url is not None and not args.model:
        raise UsageError("--base-url needs --model")
    if args.limit < 0 or args.retries < 0:
        raise UsageError("--limit and --retries must be >= 0")
    for name in ("max_turns", "max_tokens", "concurrency"):
        if getattr(args, name) < 1:
            raise UsageError(f"--{name.replace('_', '-')} must be >= 1")


def policy_for(base_url: str, model: str, *, max_tokens: int, api_key_env: str = "OPENAI_API_KEY") -> Any:
    from rollouts import ChatPolicy, PolicyConfig

    return ChatPolicy(
        PolicyConfig(base_url=base_url, model=model, temperature=0.0, max_tokens=max_tokens, api_key_env=api_key_env)
    )


async def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    check_args(args)
    apply_no_progress(args.no_progress)
    if args.compare:
        specs = [parse_spec(text) for text in args.compare]
        if specs[0].label == specs[1].label:
            specs = [
                spec.model_copy(update={"label": f"{key}:{spec.label}"}) for key, spec in zip("AB", specs, strict=True)
            ]
    elif args.checkpoint is not None:
        specs = [parse_spec(str(args.checkpoint))]
    else:
        specs = [ModelSpec(label=args.model, base_url=args.base_url, model=args.model)]

    files = [spec.trajectories is not None for spec in specs]
    if len(specs) == 2 and all(files):
        return compare_files(specs[0], specs[1])
    if any(files):
        raise UsageError("a trajectory .jsonl is compared only with another (--compare A.jsonl B.jsonl)")
    import envs
    from judges import build_judge

    try:
        judge = build_judge(
            args.judge,
            judge_model=args.judge_model,
            judge_base_url=args.judge_base_url,
            api_key_env=args.judge_api_key_env,
        )
    except ValueError as exc:
        raise UsageError(f"--judge: {exc}") from None
    env = envs.load(args.env)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    out = args.report or Path("runs") / "eval" / f"{stamp}.json"
    served = Served(max_model_len=args.max_model_len, base_model=args.base_model)
    reports = []
    endpoints = []  # per report, for the exit line
    async with env:
        tasks = select_tasks(env.tasks(args.split), args.limit, seed=args.seed)
        if not tasks:
            raise UsageError(f"env {env.name!r} has no tasks in split {args.split!r}")
        try:
            for index, spec in enumerate(specs):
                base_url, model = await served.resolve(spec)
                policy = policy_for(base_url, model, max_tokens=args.max_tokens, api_key_env=args.api_key_env)
                try:
                    report = await evaluate(
                        env,
                        policy,
                        tasks,
                        label=spec.label,
                        split=args.split,
                        judge=judge,
                        out=out.with_name(f"{out.stem}.{index}.trajectories.jsonl"),
                        concurrency=args.concurrency,
                        max_turns=args.max_turns,
                        retry_infra=not args.keep_infra,
                        retries=args.retries,
                    )
                    report.endpoints = policy.endpoint_stats() if hasattr(policy, "endpoint_stats") else []
                finally:
                    await policy.aclose()
                if len(report.endpoints) > 1 or any(item.failures for item in report.endpoints):
                    print(f"{spec.label} endpoints: {summary_line(report.endpoints)}", file=sys.stderr)
                again = f" ({report.retried} of them retried after infra failures)" if report.retried else ""
                print(
                    f"{spec.label}: {report.new} new{again} + {report.n_tasks - report.new} resumed trajectories "
                    f"in {report.trajectories}",
                    file=sys.stderr,
                )
                reports.append(report)
                endpoints.append(base_url)
        finally:
            await served.aclose()
    comparisons = paired_comparisons(reports)
    print(format_table(reports))
    for comparison in comparisons:
        print(format_comparison(comparison))
    print(f"report {write_reports(reports, out, comparisons=comparisons)}")
    # The rule of every CLI that calls an endpoint (README: exit codes), once per model evaluated,
    # over the rollouts of this run (infra failures kept with --keep-infra are not this run's).
    codes = [
        infra_exit_code(
            what="tasks evaluated",
            total=report.new,
            failed=report.new_infra,
            endpoint=endpoint,
            error=report.first_infra_error,
        )
        for report, endpoint in zip(reports, endpoints, strict=True)
    ]
    return max(codes, default=0)


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
