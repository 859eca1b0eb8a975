"""Many rollouts at once: tasks x samples, bounded concurrency, crash-safe JSONL, resume.

`run_rollouts` is the one entry point; the CLI (`rollouts.generate`) and the
GRPO trainer (with `out=None`, in memory) both call it.

- Concurrency: `concurrency` workers (anyio) pull work from one queue, so a
  million tasks cost no more memory than eight.
- Retries: each policy call retries transient errors (connection, timeout,
  429, 5xx) with exponential backoff and jitter (tenacity, see `rollout`); a
  failure that survives them is recorded as `error.kind = "infra"` and
  WRITTEN like any other trajectory — never dropped, never scored as the model's.
- Per-rollout timeout: a rollout that runs past `timeout_s` is an infra failure.
- Crash safety: every finished trajectory is appended as one whole line and
  flushed (`rollouts.jsonl.JsonlAppender`), so `kill -9` at any moment leaves
  a readable file that holds everything reported done.
- One writer per file: the run holds `rollouts.lock.output_lock(out)` from
  before it reads `out` until its last line is written; a second run on the
  same file raises `OutputLocked` (its CLI: one line naming the pid, exit 2).
- Resume (default, `rollouts.resume.resume_records`): ids already in `out` are
  skipped, except those whose record is an infra failure: those run again
  (`retry_infra=False` keeps them). The file is compacted first, so it holds
  one record per id at every moment. `resume=False` starts fresh by MOVING the
  old file aside to `<out>.<UTC time>.bak` — starting over never destroys data.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import anyio
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from tqdm.auto import tqdm

from common.flags import progress_off
from contracts import Task, Trajectory, group_id, trajectory_id
from rollouts.jsonl import JsonlAppender, JsonlFormatError
from rollouts.lock import output_lock
from rollouts.resume import is_infra_record, resume_records

from .endpoints import EndpointStats
from .rollout import Policy, RetryConfig, rollout
from .stats import RunStats, compute_stats
from .tracing import traced


class RunResult(BaseModel):
    model_config = ConfigDict(arbitrary_types_allowed=True)

    trajectories: list[Trajectory]  # the ones this call ran, in task x sample order
    stats: RunStats  # over the whole output file when `out` is given (resumed ones included)
    skipped: int = 0  # ids found in `out` and not run again
    retried: int = 0  # ids found in `out` as infra failures and run again
    out: Path | None = None
    moved_aside: Path | None = None  # where `resume=False` put the old file
    previous: list[Trajectory] = Field(default_factory=list, exclude=True)

    @property
    def all(self) -> list[Trajectory]:
        """Every trajectory of the output: those a resumed run found (`previous`), then this call's."""
        return [*self.previous, *self.trajectories]


def move_aside(path: Path) -> Path | None:
    """Rename an existing output out of the way (`--no-resume`); None when there was none."""
    if not path.exists():
        return None
    stamp = _dt.datetime.now(_dt.UTC).strftime("%Y%m%dT%H%M%S%fZ")
    target = path.with_name(f"{path.name}.{stamp}.bak")
    path.rename(target)
    return target


def to_trajectories(path: Path, records: Iterable[dict[str, Any]]) -> list[Trajectory]:
    """Validate resumed records; one that is not a trajectory raises `JsonlFormatError`."""
    done = []
    for number, record in enumerate(records, start=1):
        try:
            done.append(Trajectory.model_validate(record))
        except ValidationError:
            raise JsonlFormatError(f"{path}: record {number} is not a trajectory") from None
    return done


def load_done(path: Path) -> list[Trajectory]:
    """The trajectories of `path`, one per id (the last), infra failures included. Call it
    holding the output lock: it compacts `path` (see rollouts.resume)."""
    return to_trajectories(path, resume_records(path, retry=None).iter_records())


async def run_rollouts(
    env: Any,
    policy: Policy,
    tasks: Sequence[Task],
    *,
    samples: int = 1,
    concurrency: int = 8,
    out: str | Path | None = None,
    resume: bool = True,
    timeout_s: float | None = 600.0,
    retries: int = 4,
    retry: RetryConfig | None = None,
    max_turns: int = 8,
    max_total_tokens: int | None = None,
    progress: bool = True,
    durable: bool = False,
    on_trajectory: Callable[[Trajectory], None] | None = None,
    retry_infra: bool = True,
) -> RunResult:
    """Run every task `samples` times and return the trajectories and their stats."""
    if samples < 1 or concurrency < 1 or max_turns < 1:
        raise ValueError("samples, concurrency and max_turns must be at least 1")
    out_path = Path(out) if out is not None else None
    with output_lock(out_path) if out_path is not None else contextlib.nullcontext():
        return await _run_locked(
            env,
            policy,
            tasks,
            samples=samples,
            concurrency=concurrency,
            out_path=out_path,
            resume=resume,
            timeout_s=timeout_s,
            retry=retry or RetryConfig(retries=retries),
            max_turns=max_turns,
            max_total_tokens=max_total_tokens,
            progress=progress,
            durable=durable,
            on_trajectory=on_trajectory,
            retry_infra=retry_infra,
        )


async def _run_locked(
    env: Any,
    policy: Policy,
    tasks: Sequence[Task],
    *,
    samples: int,
    concurrency: int,
    out_path: Path | None,
    resume: bool,
    timeout_s: float | None,
    retry: RetryConfig,
    max_turns: int,
    max_total_tokens: int | None,
    progress: bool,
    durable: bool,
    on_trajectory: Callable[[Trajectory], None] | None,
    retry_infra: bool,
) -> RunResult:
    wanted = {trajectory_id(env.name, task.id, sample) for task in tasks for sample in range(samples)}
    previous, retried, moved = _previous(out_path, resume=resume, retry_infra=retry_infra, wanted=wanted)
    work = _pending(env.name, tasks, samples, done_ids={traj.id for traj in previous})
    started = time.perf_counter()
    before = policy.endpoint_stats() if hasattr(policy, "endpoint_stats") else []
    results = await _run_work(
        env,
        policy,
        work,
        concurrency=concurrency,
        appender=JsonlAppender(out_path, durable=durable) if out_path is not None else None,
        bar=_progress_bar(len(work), env.name, progress),
        on_trajectory=on_trajectory,
        rollout_kwargs={
            "max_turns": max_turns,
            "max_total_tokens": max_total_tokens,
            "retry": retry,
            "timeout_s": timeout_s,
        },
    )
    wall = time.perf_counter() - started
    new = [results[key] for key in sorted(results)]
    stats = compute_stats([*previous, *new], new=len(new), wall_s=wall)
    stats.retried = retried
    endpoint_stats = getattr(policy, "endpoint_stats", None)
    if endpoint_stats is not None:
        stats.endpoints = _since(endpoint_stats(), before)
    return RunResult(
        trajectories=new,
        stats=stats,
        skipped=len(tasks) * samples - len(work),
        retried=retried,
        out=out_path,
        moved_aside=moved,
        previous=previous,
    )


def _previous(
    out_path: Path | None, *, resume: bool, retry_infra: bool, wanted: set[str]
) -> tuple[list[Trajectory], int, Path | None]:
    """What the output already holds: the trajectories kept, how many infra failures run again,
    and where `resume=False` moved the old file."""
    if out_path is None:
        return [], 0, None
    if not resume:
        return [], 0, move_aside(out_path)

    # Only infra failures of this run's tasks are taken out: others stay until a run asks for them.
    def again(record: dict[str, Any]) -> bool:
        return retry_infra and is_infra_record(record) and str(record.get("id")) in wanted

    resumed = resume_records(out_path, retry=again)
    return to_trajectories(out_path, resumed.iter_records()), len(resumed.retry_ids), None


def _pending(env_name: str, tasks: Sequence[Task], samples: int, *, done_ids: set[str]) -> list[tuple[int, Task, int]]:
    """(task index, task, sample) of every rollout not done yet, in task x sample order."""
    return [
        (index, task, sample)
        for index, task in enumerate(tasks)
        for sample in range(samples)
        if trajectory_id(env_name, task.id, sample) not in done_ids
    ]


def _progress_bar(total: int, env_name: str, progress: bool) -> Any:
    return tqdm(
        total=total,
        desc=f"rollouts {env_name}",
        unit="rollout",
        disable=not progress or progress_off(),
        dynamic_ncols=True,
        smoothing=0.1,
    )


async def _run_work(
    env: Any,
    policy: Policy,
    work: list[tuple[int, Task, int]],
    *,
    concurrency: int,
    appender: JsonlAppender | None,
    bar: Any,
    on_trajectory: Callable[[Trajectory], None] | None,
    rollout_kwargs: dict[str, Any],
) -> dict[tuple[int, int], Trajectory]:
    """Run `work` on `concurrency` workers, each trajectory written, reported and counted as it
    finishes; returns them by (task index, sample). Closes the bar and the appender."""
    run_one = traced(rollout, name="rollout")
    results: dict[tuple[int, int], Trajectory] = {}
    tally = {"done": 0, "scored": 0, "success": 0, "infra": 0}
    queue = iter(work)
    # A policy may vary per rollout (ChatPolicy: a seed of its own per task and sample).
    for_rollout = getattr(policy, "for_rollout", None)

    async def worker() -> None:
        for index, task, sample in queue:  # one shared iterator: each item goes to exactly one worker
            traj = await run_one(
                env,
                for_rollout(task.id, sample) if for_rollout is not None else policy,
                task,
                sample=sample,
                group=group_id(env.name, task.id),
                **rollout_kwargs,
            )
            if appender is not None:
                appender.write(traj)
            results[(index, sample)] = traj
            if on_trajectory is not None:
                on_trajectory(traj)
            _tick(bar, tally, traj)

    try:
        async with anyio.create_task_group() as group:
            for _ in range(min(concurrency, max(1, len(work)))):
                group.start_soon(worker)
    finally:
        bar.close()
        if appender is not None:
            appender.close()
    return results


def _since(now: list[EndpointStats], before: list[EndpointStats]) -> list[EndpointStats]:
    """This run's share of each replica's counts (a policy may outlive one run: GRPO steps)."""
    out = []
    for index, item in enumerate(now):
        # By position: the pool's replicas keep their order, and two may share a redacted URL.
        prev = before[index] if index < len(before) and before[index].url == item.url else None
        if prev is not None:
            item = item.model_copy(
                update={
                    "requests": item.requests - prev.requests,
                    "failures": item.failures - prev.failures,
                    "taken_out": item.taken_out - prev.taken_out,
                }
            )
        out.append(item)
    return out


def _tick(bar: Any, tally: dict[str, int], traj: Trajectory) -> None:
    tally["done"] += 1
    if traj.is_infra_failure:
        tally["infra"] += 1
    else:
        tally["scored"] += 1
        tally["success"] += int(traj.success)
    rate = tally["success"] / tally["scored"] if tally["scored"] else 0.0
    bar.set_postfix_str(f"success={rate:.0%} infra={tally['infra']}", refresh=False)
    bar.update(1)
