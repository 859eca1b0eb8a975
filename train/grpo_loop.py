"""GRPO on an env with OpenPipe ART: warm start, the loop, evaluation before and after.

`run_grpo(config)` is the whole run that `python -m train.grpo` starts (train.grpo is its CLI,
train.grpo_config its config):

1. The model is registered with the backend (`train.art_adapter.register`), which serves it
   (vLLM) as `served_name(model)`: the base model, then `name@step` after each step.
2. Evaluation of the base model on a fixed subset of the test split (`--base-eval-tasks`).
3. Warm start (`--warm-start auto`): probe the base model on a few training tasks that need tools; below
   `--warm-start-threshold` build SFT data (train.warmstart) and SFT it (train.sft.run_sft), then
   evaluate again. `FILE` SFTs on a trajectory JSONL directly; `none` skips.
4. Each step: the next G training tasks (train.curriculum.step_tasks), K rollouts of each against
   the current checkpoint (through ART's client, `inference_client`), score every group with the judge, drop
   infra failures and groups without signal (judges.signal_groups), add a demonstration to groups
   with no success (`--guidance`, train.guidance), and train on the groups
   (`train.art_adapter.train_step`: ART `TrajectoryGroup`s, `backend.train`): one update per
   step (`--accumulate`). The step's tasks also run greedily before and after the update.
   Before the first step and every `--eval-every` steps evaluate on the val split; the best
   checkpoint (val success) is copied to `<run>/best_checkpoint`, the last is ART's latest.
5. Evaluation of the warm start and the final checkpoint on the test split (`--eval-tasks`, 0: all);
   the table and the paired comparisons (train.compare) are printed and written to `<run>/summary.json`.

Everything lands in `runs/grpo/<project>/<name>/`: `metrics.jsonl` (one line per step),
`reward_curve.png` (train.plots), `state.json` (for `--resume`), the trajectories of every step and
evaluation. Ctrl-C stops after the current step with everything written; `--resume` continues.
"""

from __future__ import annotations

import asyncio
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from common.cli import UsageError
from common.flags import apply_no_progress, wandb_wanted
from common.redact import redact_url
from judges import signal_groups
from train import art_adapter
from train.curriculum import step_tasks
from train.grpo_config import DEFAULT_GPU_MODEL, GRPOConfig
from train.loop_state import BestCheckpoint, LoopState, StopFlag
from train.phase_clock import PhaseClock, format_phases, phase_table
from train.plots import finite, plot_curve, read_rows, step_line
from train.warmstart import stratified_tasks

TOOL_METRICS = ("parse_rate", "func_name_accuracy", "param_f1", "exec_rate", "tool_selection_accuracy")
# The trainer's metrics a step row keeps (ART's `loss/<key>`). probs_corr near 1 says the trainer
# scores the sampled tokens as vLLM did (no template drift).
TRAINER_METRICS = ("entropy", "probs_corr", "grad_norm", "kl_policy_ref", "off_policy_tokens")


class EndpointDown(RuntimeError):
    """A whole step failed for infrastructure (the policy server or the judge is down): the run
    stops with its state saved, and `--resume` re-runs that step."""


class GRPOSummary(BaseModel):
    run_dir: Path
    iterations: int
    step: int
    reports: list[dict[str, Any]]
    wall_s: float
    stopped: bool = False


# --------------------------------------------------------------------------- helpers


def success_rate(trajs: Sequence[Any]) -> float | None:
    """Success over the trajectories that did not fail for infrastructure (None: none did)."""
    live = [traj for traj in trajs if not traj.is_infra_failure]
    return sum(traj.success for traj in live) / len(live) if live else None


def sample_metrics(
    scored: Sequence[Any], greedy_before: Sequence[Any], groups: list[list[Any]], counts: dict[str, int]
) -> dict[str, Any]:
    """A step row's account of its samples: reward and success of the on-policy ones (the
    demonstrations are not the policy's), greedy success before the update, the groups kept and
    left out, the tool-call metrics."""
    from judges import compute_metrics

    on_policy = [traj for traj in scored if not traj.off_policy]
    rewards = [traj.reward for traj in on_policy if traj.reward is not None and not traj.is_infra_failure]
    metrics = compute_metrics(on_policy)
    return {
        "reward_mean": statistics.fmean(rewards) if rewards else None,
        "reward_std": statistics.pstdev(rewards) if len(rewards) > 1 else 0.0,
        "success_rate": success_rate(on_policy),
        "greedy_before": success_rate(greedy_before),
        "n_trajectories": len(on_policy),
        **counts,
        "groups_trained": len(groups),
        "groups_guided": sum(1 for group in groups if any(traj.off_policy for traj in group)),
        **{key: metrics.get(key) for key in TOOL_METRICS if finite(metrics.get(key))},
    }


def _log(message: str, started: float) -> None:
    print(f"[grpo {time.perf_counter() - started:7.1f}s] {message}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- the run


class Run:
    """One GRPO run: its env, model, backend, judge and state."""

    def __init__(self, config: GRPOConfig, *, env: Any, backend: Any, model: Any, judge: Any) -> None:
        self.config = config
        self.env = env
        self.backend = backend
        self.model = model
        self.judge = judge
        self.dir = config.run_dir
        self.state_path = self.dir / "state.json"
        self.metrics_path = self.dir / "metrics.jsonl"
        self.state = LoopState.load(self.state_path) if config.resume and self.state_path.is_file() else LoopState()
        self.state.config = config.model_dump(mode="json")
        self.started = time.perf_counter()
        self.clock = PhaseClock(self.state.phase_seconds)
        self.tokenizer: Any = None  # the policy's, loaded when a demonstration first needs it

    # -- policies ------------------------------------------------------------------

    def policy(self, *, temperature: float, logprobs: bool) -> Any:
        """The current checkpoint, through ART's client (`name@step`, or the base at step 0)."""
        from rollouts import ChatPolicy, PolicyConfig

        config = PolicyConfig(
            base_url=art_adapter.inference_url(self.model),
            model=art_adapter.served_name(self.model),
            temperature=temperature,
            max_tokens=self.config.max_tokens,
            logprobs=logprobs,
        )
        return ChatPolicy(config, client=art_adapter.inference_client(self.model))

    def teacher_policy(self) -> Any:
        from rollouts import ChatPolicy, PolicyConfig

        cfg = self.config
        if cfg.teacher_base_url:
            return ChatPolicy(
                PolicyConfig(
                    base_url=cfg.teacher_base_url,
                    model=str(cfg.teacher_model),
                    temperature=0.7,
                    max_tokens=max(cfg.max_tokens, 256),
                    api_key_env="TEACHER_API_KEY",
                )
            )
        return self.policy(temperature=0.7, logprobs=False)

    # -- phases --------------------------------------------------------------------

    def save(self) -> None:
        self.state.save(self.state_path)

    async def phases(self, stop: StopFlag, on_step: Callable[[dict[str, Any]], None] | None) -> bool:
        """Base evaluation, warm start and its evaluation, the loop, the final evaluation, each
        only while no stop was asked for; records whether the run finished and returns whether it
        stopped early."""
        config = self.config
        stopped = False
        stop.install()
        try:
            if not config.skip_eval:
                await self.evaluate("base", "test", config.base_eval_tasks)
            if not stop.requested:
                await self.warm_start()
            if not config.skip_eval and not stop.requested and (self.state.warm_start or {}).get("done"):
                await self.evaluate("warm_start", "test", config.eval_tasks)
            if not stop.requested:
                stopped = await self.loop(stop, on_step)
            if not config.skip_eval and not stop.requested and self.state.iteration > 0:
                await self.evaluate("grpo", "test", config.eval_tasks)
        finally:
            stop.uninstall()
            self.save()
        stopped = stopped or stop.requested
        self.state.finished = not stopped and self.state.iteration >= config.steps
        self.save()
        return stopped

    async def evaluate(self, label: str, split: str, limit: int) -> dict[str, Any]:
        from train.eval import evaluate, select_tasks

        if label in self.state.evals:
            return self.state.evals[label]
        tasks = select_tasks(self.env.tasks(split), limit, seed=self.config.seed)
        _log(f"eval {label}: {art_adapter.served_name(self.model)} on {len(tasks)} {split} tasks", self.started)
        with self.clock.phase(f"eval:{label.split('@')[0]}"):
            report = await evaluate(
                self.env,
                self.policy(temperature=0.0, logprobs=False),
                tasks,
                label=label,
                split=split,
                judge=self.judge,
                out=self.dir / "eval" / f"{label.replace('@', '_')}.jsonl",
                concurrency=self.config.concurrency,
                max_turns=self.config.max_turns,
            )
        _log(f"eval {label}: success {report.success_rate:.1%} ({report.wall_s:.0f}s)", self.started)
        self.state.evals[label] = report.model_dump(mode="json")
        self.save()
        return self.state.evals[label]

    def summarize(self) -> list[Any]:
        """The test evaluations done (base, warm start, GRPO), their paired comparisons and the
        seconds per phase with each one's share of the run, printed and written to `summary.json`."""
        from train.compare import format_comparison
        from train.eval import EvalReport, format_table, paired_comparisons, write_reports

        reports = [
            EvalReport.model_validate(self.state.evals[label])
            for label in ("base", "warm_start", "grpo")
            if label in self.state.evals
        ]
        comparisons = paired_comparisons(reports) if reports else []
        if reports:
            print(format_table(reports))
        for comparison in comparisons:
            print(format_comparison(comparison))
        phases = phase_table(self.state.phase_seconds)
        print(format_phases(phases))
        write_reports(reports, self.dir / "summary.json", comparisons=comparisons, phases=phases)
        return reports

    # -- warm start ----------------------------------------------------------------

    async def warm_start(self) -> None:
        """SFT before GRPO (`--warm-start`): on a trajectory file, or with `auto` on data built
        when the base model fails the probe. Recorded in the state, so a resumed run skips it."""
        from train.warmstart import should_warm_start

        cfg = self.config
        if self.state.warm_start is not None:
            return
        if cfg.warm_start == "none":
            self.state.warm_start = {"done": False, "reason": "--warm-start none"}
            self.save()
            return
        train_tasks = self.env.tasks("train")
        if cfg.warm_start == "auto":
            with self.clock.phase("warm_start:probe"):
                success = await self.probe(train_tasks)
            if not should_warm_start(success, cfg.warm_start_threshold):
                _log(
                    f"warm start: skipped (probe success {success:.0%} >= {cfg.warm_start_threshold:.0%})", self.started
                )
                self.state.warm_start = {"done": False, "reason": f"probe success {success:.3f}"}
                self.save()
                return
            _log(f"warm start: probe success {success:.0%} < {cfg.warm_start_threshold:.0%}: SFT first", self.started)
            with self.clock.phase("warm_start:data"):
                sft_path, info = await self.sft_data(train_tasks)
        else:
            sft_path, info = Path(cfg.warm_start), {"teacher": "file"}
        with self.clock.phase("warm_start:sft"):
            await self.sft(sft_path, info)

    async def probe(self, train_tasks: Sequence[Any]) -> float:
        """Greedy success of the base model on `--probe-tasks` train tasks (recorded in the state)."""
        from rollouts import run_rollouts
        from train.eval import select_tasks

        cfg = self.config
        # Tasks that need tools: a model that never calls one still "solves" the no-tool ones,
        # and GRPO needs a model that can call tools at all.
        tool_tasks = [task for task in train_tasks if task.expected_calls] or list(train_tasks)
        probe = select_tasks(tool_tasks, cfg.probe_tasks, seed=cfg.seed + 1)
        _log(f"warm start: probing the base model on {len(probe)} train tasks that need tools", self.started)
        result = await run_rollouts(
            self.env,
            self.policy(temperature=0.0, logprobs=False),
            probe,
            concurrency=cfg.concurrency,
            max_turns=cfg.max_turns,
            out=self.dir / "warmstart" / "probe.jsonl",
            progress=True,
        )
        trajs = result.all
        scored = [traj for traj in trajs if not traj.is_infra_failure]
        success = sum(traj.success for traj in scored) / len(scored) if scored else 0.0
        self.state.probe_success = success
        return success

    async def sft_data(self, train_tasks: Sequence[Any]) -> tuple[Path, dict[str, Any]]:
        """SFT data for `--sft-tasks` stratified train tasks (train.warmstart.build_sft_data): its
        file and what it holds."""
        from train.warmstart import build_sft_data

        cfg = self.config
        sft_tasks = stratified_tasks(train_tasks, cfg.sft_tasks, seed=cfg.seed + 2)
        chosen = {task.id for task in sft_tasks}
        example_tasks = stratified_tasks([t for t in train_tasks if t.id not in chosen], 24, seed=cfg.seed + 3)
        data = await build_sft_data(
            self.env,
            sft_tasks,
            teacher=cfg.teacher,
            teacher_policy=self.teacher_policy(),
            example_tasks=example_tasks,
            judge=self.judge,
            out_dir=self.dir / "warmstart",
            min_reward=cfg.sft_min_reward,
            max_turns=cfg.max_turns,
            concurrency=cfg.concurrency,
            teacher_tasks=cfg.teacher_task_limit,
        )
        return data.sft_path, data.model_dump(mode="json")

    async def sft(self, sft_path: Path, info: dict[str, Any]) -> None:
        """SFT the model on `sft_path` (train.sft.run_sft) through this run's backend; the adapter
        becomes the checkpoint GRPO starts from."""
        from train.sft import SFTConfig, run_sft

        cfg = self.config
        _log(f"warm start: SFT on {sft_path}", self.started)
        result = await run_sft(
            SFTConfig(
                trajectories=sft_path,
                env=self.env.name,
                min_reward=cfg.sft_min_reward if cfg.warm_start == "auto" else None,
                backend=cfg.backend,
                name=cfg.name,
                project=cfg.project_name,
                art_path=cfg.art_path,
                epochs=cfg.sft_epochs,
                lr=cfg.sft_lr,
                batch_size=cfg.sft_batch_size,
                lora_rank=cfg.lora_rank,
                max_length=cfg.max_model_len,
                seed=cfg.seed,
                out_dir=self.dir / "warmstart",
            ),
            backend=self.backend,
            model=self.model,
        )
        losses = result.losses
        _log(
            f"warm start: SFT step {result.step} on {result.num_examples} examples, "
            f"loss {losses[0]:.3f} -> {losses[-1]:.3f}"
            if losses
            else "warm start: SFT done",
            self.started,
        )
        self.state.warm_start = info | {"done": True, "step": result.step, "adapter": str(result.adapter_dir)}
        self.state.last_checkpoint = result.adapter_dir
        self.save()

    # -- one step ------------------------------------------------------------------

    async def grpo_step(self) -> dict[str, Any]:
        """One GRPO step: sample groups of the step's tasks, add demonstrations, score, train on the
        groups with signal, validate when due. Returns the step's metrics row."""
        cfg = self.config
        iteration = self.state.iteration + 1
        tasks = step_tasks(self.env.tasks("train"), cfg.groups_per_step, iteration, seed=cfg.seed)
        served = art_adapter.served_name(self.model)
        _log(f"step {iteration}/{cfg.steps}: {len(tasks)} tasks x {cfg.group_size} rollouts of {served}", self.started)
        stem = self.dir / "trajectories" / f"step_{iteration:04d}"
        started = time.perf_counter()
        with self.clock.phase("grpo:rollouts"):
            trajs, greedy_before = await self.sample(tasks, iteration, stem)
        rollout_s = time.perf_counter() - started
        with self.clock.phase("grpo:guidance"):
            demos = await self.guide(trajs, tasks, iteration)
        cost_before = self.judge.stats.cost_usd
        with self.clock.phase("grpo:score"):
            scored, score_s = await self.score([*trajs, *demos], iteration, stem)
        groups, counts = signal_groups(scored, cfg.signal, min_spread=cfg.min_spread)
        row: dict[str, Any] = {
            "iteration": iteration,
            "served": served,
            **sample_metrics(scored, greedy_before, groups, counts),
            "judge_cost_usd": self.judge.stats.cost_usd - cost_before,
            "rollout_s": rollout_s,
            "score_s": score_s,
        }
        row |= await self.update(groups, tasks, stem, iteration, greedy_before=row["greedy_before"])
        self.state.iteration = iteration
        if cfg.eval_every and iteration % cfg.eval_every == 0:
            report = await self.evaluate(f"val@{iteration}", "val", cfg.val_tasks)
            row["val_success_rate"] = report["success_rate"]
            self.track_best(row["step"], report["success_rate"])
        _log(step_line(row), self.started)
        return row

    async def sample(self, tasks: list[Any], iteration: int, stem: Path) -> tuple[list[Any], list[Any]]:
        """The step's groups (`--group-size` samples of each task) and a greedy pass over the same
        tasks. EndpointDown when every sample failed for infrastructure."""
        cfg = self.config
        # The sampled groups and a greedy pass over the same tasks run together (vLLM batches them):
        # greedy success before and after the update is what the step's training did to its tasks.
        result, greedy_before = await asyncio.gather(
            self.rollouts(tasks, temperature=cfg.temperature, samples=cfg.group_size, out=stem.with_suffix(".jsonl")),
            self.rollouts(tasks, temperature=0.0, samples=1, out=stem.with_suffix(".greedy_before.jsonl")),
        )
        trajs = result.all
        if trajs and all(traj.is_infra_failure for traj in trajs):
            where = redact_url(art_adapter.inference_url(self.model))
            raise EndpointDown(
                f"policy at {where}: all {len(trajs)} rollouts of step {iteration} "
                f"failed for infrastructure ({trajs[0].error.message if trajs[0].error else 'no reply'})"
            )
        return trajs, greedy_before.all

    async def score(self, trajs: list[Any], iteration: int, stem: Path) -> tuple[list[Any], float]:
        """The judge's scores of the step's trajectories (written next to them) and the seconds it
        took. EndpointDown when the judge scored none."""
        from rollouts.jsonl import write_jsonl

        started = time.perf_counter()
        scored = await self.judge.score(trajs)
        score_s = time.perf_counter() - started
        if scored and all(traj.is_infra_failure for traj in scored):
            first = scored[0].error.message if scored[0].error else "no score"
            raise EndpointDown(
                f"judge {self.judge.name}: all {len(scored)} trajectories of step {iteration} failed to score ({first})"
            )
        write_jsonl(stem.with_suffix(".scored.jsonl"), scored)
        return scored, score_s

    async def update(
        self, groups: list[list[Any]], tasks: list[Any], stem: Path, iteration: int, *, greedy_before: float | None
    ) -> dict[str, Any]:
        """One update on `groups` and the step's tasks greedily again: the row's checkpoint step,
        the trainer's metrics, greedy success after and the training seconds. Without a group
        nothing trains and the checkpoint stays."""
        cfg = self.config
        if not groups:
            row: dict[str, Any] = {"step": await art_adapter.current_step(self.model), "greedy_after": greedy_before}
            _log(f"step {iteration}: no group with reward spread, nothing to train", self.started)
            return row | {"train_s": 0.0}
        started = time.perf_counter()
        with self.clock.phase("grpo:train"):
            trained = await art_adapter.train_step(
                self.backend, self.model, groups, learning_rate=cfg.lr, **self.train_options()
            )
        train_s = time.perf_counter() - started
        row = {"step": trained.step, "loss": trained.metrics.get("loss/train")}
        for key in TRAINER_METRICS:
            if finite(trained.metrics.get(f"loss/{key}")):
                row[key] = trained.metrics[f"loss/{key}"]
        if trained.checkpoint_path:
            self.state.last_checkpoint = trained.checkpoint_path
        with self.clock.phase("grpo:greedy_after"):
            greedy_after = await self.rollouts(
                tasks, temperature=0.0, samples=1, out=stem.with_suffix(".greedy_after.jsonl")
            )
        row["greedy_after"] = success_rate(greedy_after.all)
        return row | {"train_s": train_s}

    async def rollouts(self, tasks: list[Any], *, temperature: float, samples: int, out: Path) -> Any:
        """The current checkpoint on `tasks` (logprobs when sampling for training), resumable at `out`."""
        from rollouts import run_rollouts

        return await run_rollouts(
            self.env,
            self.policy(temperature=temperature, logprobs=temperature > 0),
            tasks,
            samples=samples,
            concurrency=self.config.concurrency,
            max_turns=self.config.max_turns,
            out=out,
            progress=False,
        )

    async def guide(self, trajs: list[Any], tasks: list[Any], iteration: int) -> list[Any]:
        """Demonstrations for the tasks none of whose samples succeeded (train.guidance), as
        off-policy members of their groups."""
        from train.guidance import as_group_member, demonstrations, policy_tokenizer, unsolved

        cfg = self.config
        if cfg.guidance == "none":
            return []
        missing = set(unsolved(trajs))
        demos = await demonstrations(
            self.env,
            [task for task in tasks if task.id in missing],
            source=cfg.guidance,
            teacher=self.teacher_policy() if cfg.guidance == "teacher" else None,
            out=self.dir / "trajectories" / f"step_{iteration:04d}.guidance.jsonl",
            max_turns=cfg.max_turns,
            concurrency=cfg.concurrency,
        )
        if demos and self.tokenizer is None:
            self.tokenizer = policy_tokenizer(self.model)
        return [as_group_member(demo, sample=cfg.group_size, tokenizer=self.tokenizer) for demo in demos]

    def train_options(self) -> dict[str, Any]:
        """The update's options beyond the learning rate: KL, and on the torch backend
        accumulation and the off-policy shaping (ART's LocalBackend takes neither)."""
        options = self.kl_options()
        if self.config.backend == "torch":
            options["grad_accumulation_sequences"] = self.config.accumulate or None
            options["off_policy_gamma"] = self.config.guidance_gamma
        return options

    def kl_options(self) -> dict[str, Any]:
        if not self.config.kl:
            return {}
        adapter = (self.state.warm_start or {}).get("adapter")
        return {"kl_penalty_coef": self.config.kl, "kl_ref_adapter_path": str(adapter) if adapter else None}

    def track_best(self, step: int, success: float) -> None:
        """Copy checkpoint `step` to best_checkpoint/ when its val success is the best so far (a tie
        goes to the newer checkpoint). Step 0 is the base model itself: nothing to copy."""
        if self.state.best is not None and success < self.state.best.val_success:
            return
        source = art_adapter.model_checkpoint(self.model, step)
        target = self.dir / "best_checkpoint"
        if source.is_dir():
            # A fresh, unpredictable folder (mkdtemp: 0700, created exclusively), not a fixed name
            # someone could have planted a link at.
            work = Path(tempfile.mkdtemp(dir=self.dir, prefix=".best_checkpoint."))
            try:
                shutil.copytree(source, work / "checkpoint")
                shutil.rmtree(target, ignore_errors=True)
                (work / "checkpoint").rename(target)
            finally:
                shutil.rmtree(work, ignore_errors=True)
        path = target if source.is_dir() else Path(self.model.base_model) if step == 0 else source
        self.state.best = BestCheckpoint(step=step, val_success=success, path=path)

    # -- the loop ------------------------------------------------------------------

    async def loop(self, stop: StopFlag, on_step: Callable[[dict[str, Any]], None] | None) -> bool:
        """The GRPO steps; returns whether it was stopped early."""
        from rollouts.jsonl import JsonlAppender
        from rollouts.tracing import record

        if self.config.eval_every and self.state.iteration == 0 and self.state.best is None and not stop.requested:
            # The checkpoint GRPO starts from (the warm start, or the base model) competes for best
            # too: when the steps make things worse, best_checkpoint/ keeps what they started from.
            report = await self.evaluate("val@0", "val", self.config.val_tasks)
            self.track_best(await art_adapter.current_step(self.model), report["success_rate"])
            self.save()
        with JsonlAppender(self.metrics_path) as log:
            while self.state.iteration < self.config.steps:
                if stop.requested:
                    return True
                with self.clock.phase("grpo:other"):
                    row = await self.grpo_step()
                log.write(row)  # the row, then the state: a crash between them re-runs the step's training only
                self.save()
                record("grpo_step", row)
                val0 = self.state.evals.get("val@0", {}).get("success_rate")
                plot_curve(
                    read_rows(self.metrics_path), self.dir / "reward_curve.png", f"GRPO {self.config.name}", val0=val0
                )
                if on_step is not None:
                    on_step(row)
        return stop.requested and self.state.iteration < self.config.steps


# --------------------------------------------------------------------------- setup


def _check_fresh(config: GRPOConfig) -> None:
    """Without --resume, never build on (or overwrite) an earlier run of the same name."""
    if config.resume:
        return
    if (config.run_dir / "state.json").is_file():
        raise UsageError(f"run {config.run_dir} exists: pass --resume to continue it, or choose another --name")
    checkpoints = art_adapter.checkpoints_dir(art_adapter.model_dir(config.art_path, config.project_name, config.name))
    if checkpoints.is_dir() and any(checkpoints.iterdir()):
        raise UsageError(f"model {config.name!r} already has checkpoints in {checkpoints}: --resume or another --name")


def load_rubric(path: Path | None) -> Any:
    """The rules judge's rubric from `--rubric` (None: its defaults); UsageError on a bad file."""
    if path is None:
        return None
    from judges import RubricConfig

    try:
        return RubricConfig.from_file(path)
    except (OSError, ValueError) as exc:
        raise UsageError(f"--rubric: {exc}") from None


def make_judge(config: GRPOConfig, env: Any = None) -> Any:
    """The judge `--judge` names (else `env`'s default judge), with its model, endpoint, key and
    rubric; UsageError on a bad spec."""
    from judges import build_judge, default_judge_of

    try:
        return build_judge(
            config.judge or default_judge_of(env),
            judge_model=config.judge_model,
            judge_base_url=config.judge_base_url,
            rubric=load_rubric(config.rubric),
            api_key_env=config.judge_api_key_env,
        )
    except ValueError as exc:
        raise UsageError(f"--judge: {exc}") from None


def open_backend(config: GRPOConfig) -> Any:
    """The ART backend `--backend` names: the torch backend with this run's LoRA rank and context,
    the local one with as many GPUs as the GPU flags name."""
    return art_adapter.open_backend(
        config.backend,
        art_path=config.art_path,
        lora_rank=config.lora_rank,
        trainer_gpus=config.trainer_gpus,
        inference_gpus=config.inference_gpus,
        max_model_len=config.max_model_len,
    )


def _base_model(config: GRPOConfig) -> str:
    if config.base_model:
        return config.base_model
    if config.backend != "torch":
        return DEFAULT_GPU_MODEL
    from train.models import ensure_base_model

    return str(ensure_base_model())


async def run_grpo(
    config: GRPOConfig,
    *,
    backend: Any = None,
    judge: Any = None,
    stop: StopFlag | None = None,
    on_step: Callable[[dict[str, Any]], None] | None = None,
) -> GRPOSummary:
    """The whole run (see the module docstring). `backend`: an existing ART backend to use (left
    open); `judge`: a judge object instead of `config.judge`."""
    _check_fresh(config)
    import envs
    from envs.replay import attach, replay_from_flag
    from rollouts import setup_tracing
    from rollouts.tracing import wanted_project

    setting = replay_from_flag(config.replay)
    env = envs.load(config.env)  # not started yet: its default judge is known before anything runs
    attach(env, setting)  # every rollout phase (steps, evaluations) uses this env
    if judge is None:
        judge = make_judge(config, env)
    apply_no_progress(config.no_progress)
    setup_tracing(wanted_project(config.weave, disabled=config.no_weave))
    base_model = _base_model(config)
    owns_backend = backend is None
    if backend is None:
        backend = open_backend(config)
    stop = stop or StopFlag()
    started = time.perf_counter()
    try:
        async with env:
            model = art_adapter.make_model(
                config.name,
                config.project_name,
                base_model,
                kind=config.backend,
                max_seq_length=config.max_model_len,
                wandb=wandb_wanted(config.wandb),
                trainer_gpus=config.trainer_gpus,
                inference_gpus=config.inference_gpus,
            )
            _log(f"registering {config.name} on {base_model} ({config.backend} backend; starts vLLM)", started)
            await art_adapter.register(model, backend)
            run = Run(config, env=env, backend=backend, model=model, judge=judge)
            run.started = started
            run.clock.add("start", time.perf_counter() - started)  # the env, vLLM and the model's registration
            run.save()
            stopped = await run.phases(stop, on_step)
            reports = run.summarize()
            step = await art_adapter.current_step(model)
    finally:
        if owns_backend:
            await backend.close()
    wall = time.perf_counter() - started
    _log(f"done: {run.state.iteration} steps, checkpoint step {step}, {wall / 60:.1f} min; {run.dir}", started)
    return GRPOSummary(
        run_dir=run.dir,
        iterations=run.state.iteration,
        step=step,
        reports=[report.model_dump(mode="json") for report in reports],
        wall_s=wall,
        stopped=stopped,
    )
