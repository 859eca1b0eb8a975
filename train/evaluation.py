"""Evaluate a policy on an env's tasks: run each once (resumable), score, summarise, compare.

    report = await evaluate(env, policy, select_tasks(env.tasks("test"), 40), label="base", split="test")
    report = await evaluate_endpoint(env, base_url, model, tasks, EvalConfig(), label="base", judge=judge)
    print(format_table([before, after]))

Greedy decoding, one sample per task, so two runs of one model give one number. With `out`, an
evaluation resumes from its trajectory JSONL like `rollouts.generate` (the same runner,
rollouts.runner): tasks done are skipped, infra failures run again unless `keep_infra`.
`train.grpo` uses this for its before/after and validation evaluations; `python -m train.eval`
(train.eval) is the CLI that serves models with vLLM and calls it.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from common.cli import infra_exit_code
from common.files import write_private_atomic
from contracts import Task, Trajectory
from rollouts.endpoints import EndpointStats
from train.compare import Comparison


class EvalConfig(BaseModel):
    """How a policy is evaluated: which tasks, how it is sampled, what happens to failures.
    `python -m train.eval` builds its flags of the same names from these fields."""

    split: str = Field("test", description="task split")
    limit: int = Field(40, description="tasks to evaluate (0: the split)")
    seed: int = Field(0, description="which subset of tasks")
    max_turns: int = Field(4, description="policy turns per task at most")
    max_tokens: int = Field(256, description="per policy turn")
    concurrency: int = Field(8, description="tasks run at once")
    retries: int = Field(4, description="retries of a transient policy error")
    keep_infra: bool = Field(False, description="on resume, keep infra-failed rollouts instead of running them again")
    api_key_env: str = Field("OPENAI_API_KEY", description="the variable holding the policy endpoint's API key")


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
    if judge is not None:
        trajs = await judge.score(trajs)
    report = summarise(trajs, label=label, model=policy.model, env=env.name, split=split)
    new_infra = [traj for traj in result.trajectories if traj.is_infra_failure]
    return report.model_copy(
        update={
            "new": len(result.trajectories),
            "retried": result.retried,
            "new_infra": len(new_infra),
            "first_infra_error": new_infra[0].error.message if new_infra and new_infra[0].error else None,
            "wall_s": time.perf_counter() - started,
            "trajectories": out,
        }
    )


def summarise(trajs: Sequence[Trajectory], *, label: str, model: str, env: str, split: str) -> EvalReport:
    """Success rate, mean reward, success per task kind and the judges' metrics of scored
    trajectories; infra failures are counted, never scored."""
    from judges import compute_metrics

    scored = [traj for traj in trajs if not traj.is_infra_failure]
    rewards = [traj.reward for traj in scored if traj.reward is not None]
    kinds: dict[str, list[bool]] = {}
    for traj in scored:
        kinds.setdefault(traj.task.kind, []).append(traj.success)
    metrics = {key: value for key, value in compute_metrics(list(trajs)).items() if _finite_or_int(value)}
    return EvalReport(
        label=label,
        model=model,
        env=env,
        split=split,
        n_tasks=len(trajs),
        success_rate=sum(traj.success for traj in scored) / len(scored) if scored else 0.0,
        reward_mean=sum(rewards) / len(rewards) if rewards else None,
        n_infra=len(trajs) - len(scored),
        metrics=metrics,
        by_kind={kind: sum(values) / len(values) for kind, values in sorted(kinds.items())},
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


def write_reports(
    reports: Sequence[EvalReport],
    path: Path,
    *,
    comparisons: Sequence[Comparison] = (),
    phases: dict[str, dict[str, float]] | None = None,
) -> Path:
    """The reports (and their paired comparisons, and a run's seconds per phase) as one JSON file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data: dict[str, Any] = {"reports": [report.model_dump(mode="json") for report in reports]}
    if comparisons:
        data["comparisons"] = [comparison.model_dump(mode="json") for comparison in comparisons]
    if phases:
        data["phases"] = phases
    write_private_atomic(path, json.dumps(data, indent=2) + "\n")  # a crash never leaves half a JSON file
    return path


def policy_for(
    base_url: str, model: str, *, max_tokens: int, api_key_env: str = "OPENAI_API_KEY", api_key: str | None = None
) -> Any:
    """The greedy policy evaluations sample from (temperature 0: one run gives the model's number).
    `api_key`: the key of a server started here; else the variable `api_key_env` names."""
    from rollouts import ChatPolicy, PolicyConfig

    return ChatPolicy(
        PolicyConfig(base_url=base_url, model=model, temperature=0.0, max_tokens=max_tokens, api_key_env=api_key_env),
        api_key=api_key,
    )


async def evaluate_endpoint(
    env: Any,
    base_url: str,
    model: str,
    tasks: Sequence[Task],
    config: EvalConfig,
    *,
    label: str,
    judge: Any = None,
    out: Path | None = None,
    api_key: str | None = None,
) -> EvalReport:
    """`evaluate` the model `model` at `base_url` (URL,URL,... for replicas), with each
    replica's request counts in `report.endpoints`; `api_key`: the key of a server started here."""
    policy = policy_for(base_url, model, max_tokens=config.max_tokens, api_key_env=config.api_key_env, api_key=api_key)
    try:
        report = await evaluate(
            env,
            policy,
            tasks,
            label=label,
            split=config.split,
            judge=judge,
            out=out,
            concurrency=config.concurrency,
            max_turns=config.max_turns,
            retry_infra=not config.keep_infra,
            retries=config.retries,
        )
        report.endpoints = policy.endpoint_stats() if hasattr(policy, "endpoint_stats") else []
    finally:
        await policy.aclose()
    return report


def exit_code(reports: Sequence[EvalReport], endpoints: Sequence[str]) -> int:
    """The rule of every CLI that calls an endpoint (README: exit codes), once per model evaluated,
    over the rollouts of this run (infra failures kept with `keep_infra` are not this run's)."""
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
