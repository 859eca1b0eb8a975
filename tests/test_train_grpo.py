"""`train.grpo`: the whole loop against the real energy MCP env and a real vLLM serving a tiny model.

The session's one vLLM (`vllm_tiny`) is shared through `TorchBackend(server=...)`; each test uses
its own model name. The tiny model is random, so the env verdict is the same (0) for every
rollout; `DistinctCharsJudge` below is a real judge (a `judges.Judge` subclass scoring the final
text) whose rewards differ between samples, so the groups carry signal and the trainer really runs.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from contracts import Trajectory
from judges import signal_groups
from judges.base import Judge, JudgeFailure
from tests.fixtures.judge_data import PRICE, make_trajectory
from train.curriculum import step_tasks
from train.grpo_config import GRPOConfig
from train.grpo_loop import Run, run_grpo
from train.loop_state import LoopState
from train.warmstart import OraclePolicy, format_answer, should_warm_start, stratified_tasks, task_signature

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]


class DistinctCharsJudge(Judge):
    """Reward = distinct characters in the final assistant text / 40 (capped at 1): varies per sample."""

    name = "distinct_chars"

    async def _score(self, live: list[Trajectory]) -> None:
        for traj in live:
            text = next((m.get("content") or "" for m in reversed(traj.messages) if m.get("role") == "assistant"), "")
            traj.reward = min(1.0, len(set(text)) / 40)


async def test_rubric_file_sets_the_rules_judge_weights(tmp_path: Path) -> None:
    """`--rubric`: an outcome-only rubric makes a failed rollout that called the right tool worth 0,
    where the default rubric pays for the call; a typo in the file is a usage error."""
    from common.cli import UsageError
    from judges import build_judge
    from train.grpo import config_from_args
    from train.grpo_loop import load_rubric

    path = tmp_path / "outcome.yaml"
    weights = "{task_completion: 1, tool_accuracy: 0, efficiency: 0, timing: 0, format_compliance: 0}"
    penalties = "{wrong_tool: 0, redundant_call: 0, format_error: 0, timeout: 0}"
    path.write_text(f"weights: {weights}\npenalties: {penalties}\n")
    config = config_from_args(["--rubric", str(path)])
    assert config.rubric == path
    rubric = load_rubric(config.rubric)
    assert rubric.weights.task_completion == 1 and rubric.weights.tool_accuracy == 0
    assert load_rubric(None) is None
    assert load_rubric(ROOT / "examples" / "outcome_rubric.yaml").model_dump() == rubric.model_dump()  # the shipped one
    (tmp_path / "typo.yaml").write_text("weights: {task_complete: 1}\n")
    with pytest.raises(UsageError, match="--rubric"):
        load_rubric(tmp_path / "typo.yaml")
    wrong_hub = make_trajectory(PRICE, [[("get_price", {"hub": "Waha", "date": "2025-03-04"})]], success=False)
    right = make_trajectory(PRICE, [[("get_price", {"hub": "Henry Hub", "date": "2025-03-04"})]])
    outcome, default = build_judge("rules", rubric=rubric), build_judge("rules")
    assert [t.reward for t in await outcome.score([wrong_hub, right])] == [0.0, 1.0]
    assert (await default.score([wrong_hub]))[0].reward == pytest.approx(0.4 * 0.5)  # the right tool: half credit


def tiny_config(tmp_path: Path, tiny_model_dir: Path, name: str, **overrides: Any) -> GRPOConfig:
    values: dict[str, Any] = {
        "base_model": str(tiny_model_dir),
        "name": name,
        "art_path": tmp_path / ".art",
        "runs_dir": tmp_path / "runs",
        "steps": 2,
        "groups_per_step": 2,
        "group_size": 2,
        "lr": 1e-3,
        "max_turns": 2,
        "max_tokens": 12,
        "concurrency": 4,
        "warm_start": "none",
        "eval_tasks": 3,
        "val_tasks": 2,
        "eval_every": 1,
        "max_model_len": 2048,
        # The tiny model's samples often differ by a few characters only; the mechanics tests need
        # every group with any spread to train, not the default near-tie filter.
        "min_spread": 0.0,
    }
    return GRPOConfig(**(values | overrides))


def backend_for(vllm_tiny: Any, tmp_path: Path) -> Any:
    from train.backends import make_backend

    return make_backend("torch", path=tmp_path / ".art", server=vllm_tiny)


async def test_two_steps_then_stop_then_resume(vllm_tiny, tiny_model_dir: Path, tmp_path: Path) -> None:
    config = tiny_config(tmp_path, tiny_model_dir, "loop")
    backend = backend_for(vllm_tiny, tmp_path)
    try:
        summary = await run_grpo(config, backend=backend, judge=DistinctCharsJudge())
    finally:
        await backend.close()
    run_dir = tmp_path / "runs" / "energy" / "loop"
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [row["iteration"] for row in rows] == [1, 2]
    assert all(row["groups_trained"] >= 1 for row in rows)  # the trainer ran on both steps
    assert [row["step"] for row in rows] == [1, 2]
    assert all(row["rollout_s"] > 0 and row["train_s"] > 0 and row["loss"] is not None for row in rows)
    assert all(row["grad_norm"] > 0 and abs(row["probs_corr"]) <= 1 + 1e-6 for row in rows), rows  # diagnostics kept
    assert rows[0]["served"] == vllm_tiny.served_model_name and rows[1]["served"] == "loop@1"
    assert all("val_success_rate" in row for row in rows)
    # The tiny model never succeeds: groups whose oracle demonstration fits in max_turns are guided.
    for row in rows:
        scored = [
            json.loads(line) for line in (run_dir / "trajectories" / f"step_{row['iteration']:04d}.scored.jsonl").open()
        ]
        demos = [traj for traj in scored if traj["off_policy"]]
        assert row["groups_guided"] == len({traj["task_id"] for traj in demos})
        assert all(traj["verdict"]["success"] and traj["sample"] == config.group_size for traj in demos)
        assert all(v is None for traj in demos for entry in traj["logprobs"] for v in entry["logprobs"])
        assert row["greedy_before"] == 0.0 and row["greedy_after"] == 0.0  # re-rolled greedily, both sides
    assert sum(row["groups_guided"] for row in rows) >= 1
    assert (run_dir / "reward_curve.png").stat().st_size > 0
    assert (tmp_path / ".art" / "energy" / "models" / "loop" / "checkpoints" / "0002" / "adapter_config.json").is_file()
    assert (run_dir / "best_checkpoint" / "adapter_config.json").is_file()
    assert [path.name for path in sorted((run_dir / "eval").glob("val_*.jsonl"))] == [
        "val_0.jsonl",  # the starting point (here the base model) is validated before step 1
        "val_1.jsonl",
        "val_2.jsonl",
    ]
    assert summary.iterations == 2 and summary.step == 2 and not summary.stopped
    labels = [report["label"] for report in summary.reports]
    assert labels == ["base", "grpo"]
    summary_json = json.loads((run_dir / "summary.json").read_text())
    assert summary_json["reports"][1]["model"] == "loop@2"
    phases = summary_json["phases"]  # where the run's time went, each phase's own seconds
    for phase in ("start", "eval:base", "eval:val", "eval:grpo", "grpo:rollouts", "grpo:score", "grpo:train"):
        assert phases[phase]["seconds"] > 0, phase
    own = sum(row["seconds"] for name, row in phases.items() if name not in ("rl", "total"))
    assert phases["total"]["seconds"] == pytest.approx(own)
    assert phases["total"]["seconds"] <= summary.wall_s + 1e-6
    assert 0 < phases["rl"]["share"] < 1
    state = LoopState.load(run_dir / "state.json")
    assert state.finished and state.iteration == 2

    # The same name without --resume is refused (nothing is overwritten).
    from common.cli import UsageError

    with pytest.raises(UsageError, match="--resume"):
        await run_grpo(config.model_copy(update={"steps": 4}), judge=DistinctCharsJudge())

    # Resume to 4 steps; Ctrl-C (a real SIGINT) during step 3 stops cleanly after it.
    def interrupt(row: dict[str, Any]) -> None:
        if row["iteration"] == 3:
            os.kill(os.getpid(), signal.SIGINT)

    more = config.model_copy(update={"steps": 4, "resume": True, "skip_eval": True, "eval_every": 0})
    backend = backend_for(vllm_tiny, tmp_path)
    try:
        stopped = await run_grpo(more, backend=backend, judge=DistinctCharsJudge(), on_step=interrupt)
    finally:
        await backend.close()
    assert stopped.stopped and stopped.iterations == 3 and stopped.step == 3
    assert not LoopState.load(run_dir / "state.json").finished

    backend = backend_for(vllm_tiny, tmp_path)
    try:
        done = await run_grpo(more, backend=backend, judge=DistinctCharsJudge())
    finally:
        await backend.close()
    assert done.iterations == 4 and done.step == 4 and not done.stopped
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [row["iteration"] for row in rows] == [1, 2, 3, 4]
    assert rows[2]["served"] == "loop@2" and rows[3]["served"] == "loop@3"  # each step samples the latest


class DownJudge(Judge):
    """A judge whose endpoint is down: every group fails (JudgeFailure), so all are infra."""

    name = "down"

    async def _score(self, live: list[Trajectory]) -> None:
        raise JudgeFailure("connection refused")


async def test_a_judge_that_stays_down_stops_the_run_resumable(vllm_tiny, tiny_model_dir: Path, tmp_path: Path) -> None:
    """Nothing is trained on a step nobody could score: the run stops with its state saved (the step
    not counted) and a resume with a working judge runs that step."""
    from train.grpo_loop import EndpointDown

    config = tiny_config(tmp_path, tiny_model_dir, "down", steps=1, skip_eval=True, eval_every=0, guidance="none")
    backend = backend_for(vllm_tiny, tmp_path)
    try:
        with pytest.raises(EndpointDown, match="judge down"):
            await run_grpo(config, backend=backend, judge=DownJudge())
    finally:
        await backend.close()
    run_dir = tmp_path / "runs" / "energy" / "down"
    assert LoopState.load(run_dir / "state.json").iteration == 0
    assert not (run_dir / "metrics.jsonl").is_file() or not (run_dir / "metrics.jsonl").read_text().strip()
    backend = backend_for(vllm_tiny, tmp_path)
    try:
        done = await run_grpo(config.model_copy(update={"resume": True}), backend=backend, judge=DistinctCharsJudge())
    finally:
        await backend.close()
    assert done.iterations == 1 and done.step == 1


async def test_warm_start_auto_sfts_a_model_that_fails_the_probe(
    vllm_tiny, tiny_model_dir: Path, tmp_path: Path
) -> None:
    config = tiny_config(
        tmp_path,
        tiny_model_dir,
        "warm",
        steps=0,
        warm_start="auto",
        warm_start_threshold=0.5,
        probe_tasks=2,
        sft_tasks=4,
        teacher_tasks=3,
        max_turns=3,  # a two-step oracle demonstration needs three turns
        sft_epochs=1,
        eval_tasks=2,
        judge="rules",
    )
    backend = backend_for(vllm_tiny, tmp_path)
    try:
        summary = await run_grpo(config, backend=backend)
    finally:
        await backend.close()
    run_dir = tmp_path / "runs" / "energy" / "warm"
    state = LoopState.load(run_dir / "state.json")
    assert state.probe_success == 0.0
    assert state.warm_start is not None and state.warm_start["done"] and state.warm_start["step"] == 1
    assert state.warm_start["teacher"] == "model+oracle" and state.warm_start["n_teacher_tried"] == 3
    # The teacher's stored conversations are the plain prompt (the few-shot examples were request-only).
    teacher = [json.loads(line) for line in (run_dir / "warmstart" / "teacher.jsonl").read_text().splitlines()]
    assert all(t["messages"][1] == {"role": "user", "content": t["task"]["question"]} for t in teacher)
    sft = [json.loads(line) for line in (run_dir / "warmstart" / "sft.jsonl").read_text().splitlines()]
    assert len(sft) == 4 and all(t["verdict"]["success"] for t in sft)  # oracle demonstrations fill the rest
    assert [report["label"] for report in summary.reports] == ["base", "warm_start"]
    assert summary.reports[1]["model"] == "warm@1"


async def test_warm_start_auto_skips_when_the_probe_passes(vllm_tiny, tiny_model_dir: Path, tmp_path: Path) -> None:
    config = tiny_config(
        tmp_path, tiny_model_dir, "skip", steps=0, warm_start="auto", warm_start_threshold=0.0, probe_tasks=2
    )
    backend = backend_for(vllm_tiny, tmp_path)
    try:
        await run_grpo(config.model_copy(update={"skip_eval": True}), backend=backend)
    finally:
        await backend.close()
    state = LoopState.load(tmp_path / "runs" / "energy" / "skip" / "state.json")
    assert state.warm_start == {"done": False, "reason": "probe success 0.000"}
    assert not (tmp_path / ".art" / "energy" / "models" / "skip" / "checkpoints" / "0001").exists()


async def test_oracle_demonstrations_solve_every_kind() -> None:
    import envs
    from rollouts import run_rollouts

    env = envs.load("energy")
    async with env:
        tasks = {task.kind: task for task in env.tasks("train")}
        result = await run_rollouts(env, OraclePolicy(list(tasks.values())), list(tasks.values()), progress=False)
    assert sorted(tasks) == ["multi_step", "no_tool", "parallel", "single"]
    assert all(traj.success for traj in result.trajectories), [t.verdict for t in result.trajectories]
    multi = next(traj for traj in result.trajectories if traj.task.kind == "multi_step")
    assert [m["role"] for m in multi.messages].count("tool") >= 2  # real tool outputs, step by step


def test_stratified_tasks_cover_every_signature_evenly() -> None:
    import envs

    tasks = envs.load("energy").tasks("train")
    signatures = {task_signature(task) for task in tasks}
    chosen = stratified_tasks(tasks, 2 * len(signatures), seed=3)
    counts = {sig: sum(task_signature(task) == sig for task in chosen) for sig in signatures}
    assert len({task.id for task in chosen}) == len(chosen) == 2 * len(signatures)
    # a partial round is not the first signatures in sort order (the 4 multi-step ones)
    kinds = {task.kind for seed in range(5) for task in stratified_tasks(tasks, 4, seed=seed)}
    assert kinds - {"multi_step"}, kinds
    # every signature the pool has at least twice appears exactly twice (a random sample would not)
    assert all(counts[sig] == min(2, sum(task_signature(t) == sig for t in tasks)) for sig in signatures), counts
    assert stratified_tasks(tasks, 10, seed=3) == stratified_tasks(tasks, 10, seed=3)
    assert len(stratified_tasks(tasks, 10_000)) == len(tasks)
    assert task_signature(next(t for t in tasks if t.kind == "no_tool")) == ("no_tool",)


def test_grpo_steps_go_round_every_signature_before_repeating_one() -> None:
    import envs

    tasks = envs.load("energy").tasks("train")
    signatures = {task_signature(task) for task in tasks}
    steps = [step_tasks(tasks, 8, iteration, seed=1) for iteration in range(1, 9)]
    first_round = [task_signature(task) for step in steps for task in step][: len(signatures)]
    assert set(first_round) == signatures  # 19 signatures in the first 19 tasks: none twice
    assert all(len({task_signature(task) for task in step}) == 8 for step in steps)
    seen = [task.id for step in steps for task in step]
    assert len(set(seen)) == len(seen) == 64  # no task twice before the order wraps
    assert step_tasks(tasks, 8, 3, seed=1) == steps[2]  # a resumed run gets the same step
    assert step_tasks(tasks, 8, 3, seed=2) != steps[2]
    few = step_tasks(tasks[:5], 8, 1)
    assert sorted(t.id for t in few) == sorted(t.id for t in tasks[:5])  # a small pool: each task once


def test_kl_penalty_refers_to_the_warm_start_adapter(tmp_path: Path) -> None:
    def run(**values: Any) -> Run:
        return Run(GRPOConfig(runs_dir=tmp_path, **values), env=None, backend=None, model=None, judge=None)

    assert run().kl_options() == {}  # off by default: ART's train() gets no KL options
    penalised = run(kl=0.5)
    assert penalised.kl_options() == {"kl_penalty_coef": 0.5, "kl_ref_adapter_path": None}  # no warm start: the base
    penalised.state.warm_start = {"done": True, "step": 1, "adapter": str(tmp_path / "0001")}
    assert penalised.kl_options() == {"kl_penalty_coef": 0.5, "kl_ref_adapter_path": str(tmp_path / "0001")}


def test_decision_and_signal_groups() -> None:
    assert should_warm_start(0.0, 0.2) and not should_warm_start(0.5, 0.2)
    assert format_answer({"A": 1, "B": 2.5}) == "A: 1; B: 2.5."

    def traj(task: str, sample: int, reward: float | None, infra: bool = False) -> Trajectory:
        error = {"kind": "infra", "message": "x"} if infra else None
        return Trajectory(
            id=f"e:{task}:s{sample}",
            env="e",
            task_id=task,
            task={},
            reward=reward,
            error=error,
            group=f"e:{task}",
            verdict={"success": reward == 1.0},
        )

    scored = [
        traj("a", 0, 1.0),
        traj("a", 1, 0.0),
        traj("a", 2, None, infra=True),
        traj("b", 0, 0.5),
        traj("b", 1, 0.5),
        traj("c", 0, 1.0),
        traj("c", 1, None, infra=True),
    ]
    kept, counts = signal_groups(scored)
    assert [[t.id for t in group] for group in kept] == [["e:a:s0", "e:a:s1"]]
    assert counts == {"groups": 3, "groups_no_signal": 1, "groups_too_small": 1, "n_infra": 2}
    # two failures that differ in process reward: signal for "reward", none for "success"
    failed = [traj("d", 0, 0.6), traj("d", 1, 0.2)]
    assert len(signal_groups(scored + failed)[0]) == 2
    kept, counts = signal_groups(scored + failed, "success")
    assert [[t.id for t in group] for group in kept] == [["e:a:s0", "e:a:s1"]]
    assert counts["groups_no_signal"] == 2


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--steps", "-1"], "--steps"),
        (["--group-size", "1"], "--group-size"),
        (["--judge", "nope"], "--judge"),
        (["--warm-start", "/no/such/file.jsonl"], "--warm-start"),
        (["--teacher", "someone"], "--teacher"),
        (["--backend", "tpu"], "--backend"),
        (["--teacher-base-url", "http://x/v1"], "--teacher-model"),
        (["--rubric", "/no/such/rubric.yaml"], "--rubric"),
        (["--signal", "vibes"], "--signal"),
        (["--kl", "-1"], "--kl"),
        (["--guidance", "psychic"], "--guidance"),
        (["--guidance-gamma", "-0.1"], "--guidance-gamma"),
        (["--min-spread", "-0.5"], "--min-spread"),
        (["--accumulate", "-1"], "--accumulate"),
    ],
)
def test_bad_flags_are_one_line_and_exit_2(flags: list[str], message: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "train.grpo", *flags], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], proc.stderr
