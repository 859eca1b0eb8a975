"""Rollouts end to end: the energy env in-process, a real openai client, the scripted server over HTTP."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from contracts import Task, Trajectory
from rollouts import ChatPolicy, PolicyConfig, RetryConfig, rollout, run_rollouts
from rollouts.jsonl import read_jsonl
from rollouts.runner import load_done
from tests.fixtures.policy_server import ScriptedServer
from train.art_adapter import to_art_trajectory

FAST_RETRY = RetryConfig(retries=2, initial_s=0.01, max_s=0.02, jitter_s=0.01)


def pick(env: Any, n_per_kind: int = 2) -> list[Task]:
    """A few train tasks of every kind the env has."""
    by_kind: dict[str, list[Task]] = {}
    for task in env.tasks("train"):
        by_kind.setdefault(task.kind, []).append(task)
    return [task for tasks in by_kind.values() for task in tasks[:n_per_kind]]


def policy_for(server: ScriptedServer, **overrides: Any) -> ChatPolicy:
    return ChatPolicy(PolicyConfig(base_url=server.base_url, model="scripted", **overrides))


def assert_well_formed(traj: Trajectory) -> None:
    """Every call is answered by one tool message, in order, before the next assistant turn."""
    pending: list[str] = []
    for message in traj.messages:
        if message["role"] == "assistant":
            assert not pending, f"unanswered calls {pending} in {traj.id}"
            pending = [call["id"] for call in message.get("tool_calls") or []]
        elif message["role"] == "tool":
            assert message["tool_call_id"] == pending.pop(0)
    assert not pending


async def test_end_to_end_every_kind_succeeds(energy_env: Any, scripted_server: ScriptedServer, tmp_path: Path) -> None:
    tasks = pick(energy_env)
    kinds = {task.kind for task in tasks}
    assert {"single", "multi_step", "parallel", "no_tool"} <= kinds
    out = tmp_path / "traj.jsonl"
    async with policy_for(scripted_server) as policy:
        result = await run_rollouts(energy_env, policy, tasks, samples=2, concurrency=4, out=out, progress=False)
    trajs = result.trajectories
    assert len(trajs) == 2 * len(tasks)
    assert [t.id for t in trajs] == [f"energy:{task.id}:s{s}" for task in tasks for s in range(2)]
    for traj in trajs:
        assert traj.error is None, traj.error
        assert traj.success and traj.reward == 1.0, (traj.id, traj.verdict, traj.messages[-1])
        assert traj.group == f"energy:{traj.task_id}" and traj.model == "scripted"
        assert traj.tools and traj.messages[0]["role"] in ("system", "user")
        assert_well_formed(traj)
        outcomes = traj.tool_outcomes
        expected = traj.task.expected_calls
        assert len(outcomes) == traj.metrics["tool_calls"] == len(expected)
        assert all(o.ok for o in outcomes) and traj.metrics["parse_errors"] == 0
        assert len(traj.turns) == traj.metrics["turns"] == len({c.step for c in expected}) + 1
        assert traj.stop_reason == "answer" and traj.answer == traj.messages[-1]["content"]
    on_disk = read_jsonl(out)
    assert sorted(r["id"] for r in on_disk) == sorted(t.id for t in trajs)  # on disk: in order of finishing
    stats = result.stats
    assert stats.count == len(trajs) and stats.success_rate == 1.0 and stats.mean_reward == 1.0
    assert stats.errors == {} and sum(stats.tool_usage.values()) == stats.tool_calls_total
    assert stats.rollout_latency_s.n == len(trajs) and stats.turn_latency_s.p50 > 0


async def test_text_tool_calls_and_thinking_in_a_real_episode(energy_env: Any, scripted_server: ScriptedServer) -> None:
    scripted_server.set_script(tool_call_form="text", think="inline")
    tasks = [t for t in pick(energy_env) if t.kind in ("parallel", "multi_step")]
    async with policy_for(scripted_server) as policy:
        result = await run_rollouts(energy_env, policy, tasks, concurrency=2, progress=False)
    for traj in result.trajectories:
        assert traj.success, traj.messages
        assert traj.metrics["text_tool_call_turns"] >= 1 and traj.metrics["parse_errors"] == 0
        assistant = [m for m in traj.messages if m["role"] == "assistant"]
        assert all(m["reasoning_content"].startswith("I ") for m in assistant)
        assert all("<think>" not in (m["content"] or "") for m in assistant)
        assert_well_formed(traj)


@pytest.mark.parametrize(
    ("script", "error_kind"),
    [({"malformed_arguments": True}, "bad_arguments"), ({"unknown_tool": True}, "unknown_tool")],
)
async def test_model_mistakes_become_tool_outcomes(
    energy_env: Any, scripted_server: ScriptedServer, script: dict[str, Any], error_kind: str
) -> None:
    scripted_server.set_script(**script)
    task = next(t for t in energy_env.tasks("train") if t.kind == "single")
    async with policy_for(scripted_server) as policy:
        traj = await rollout(energy_env, policy, task, retry=FAST_RETRY)
    outcomes = traj.tool_outcomes
    assert outcomes[0].ok is False and outcomes[0].error == error_kind
    assert traj.metrics["tool_errors"] == 1 and traj.error is None
    assert traj.success  # the scripted model recovers on the next turn; judges may still penalise the miss


async def test_broken_text_call_is_counted_as_parse_error(energy_env: Any, scripted_server: ScriptedServer) -> None:
    scripted_server.set_script(broken_text_call=True)
    task = next(t for t in energy_env.tasks("train") if t.kind == "single")
    async with policy_for(scripted_server) as policy:
        traj = await rollout(energy_env, policy, task, retry=FAST_RETRY, max_turns=4)
    assert traj.metrics["parse_errors"] == 1
    # Nothing could be executed from the broken turn, so it read as a (wrong) final answer.
    assert traj.metrics["turns"] == 1 and not traj.success and traj.error is None


async def test_infra_failures_survive_retries_and_are_written(
    energy_env: Any, scripted_server: ScriptedServer, tmp_path: Path
) -> None:
    scripted_server.set_script(fail_status=500, fail_times=-1)
    tasks = pick(energy_env, 1)
    out = tmp_path / "t.jsonl"
    async with policy_for(scripted_server) as policy:
        result = await run_rollouts(energy_env, policy, tasks, concurrency=3, out=out, retry=FAST_RETRY, progress=False)
    assert len(scripted_server.requests) == len(tasks) * (FAST_RETRY.retries + 1)
    written = [Trajectory.model_validate(r) for r in read_jsonl(out)]
    assert {t.id for t in written} == {t.id for t in result.trajectories} and len(written) == len(tasks)
    for traj in written:
        assert traj.is_infra_failure and traj.reward is None and traj.verdict is None
        assert "HTTP 500" in traj.error.message and traj.metrics["policy_retries"] == FAST_RETRY.retries
    assert result.stats.errors == {"infra": len(tasks)} and result.stats.scored == 0


async def test_transient_429_then_success(energy_env: Any, scripted_server: ScriptedServer) -> None:
    scripted_server.set_script(fail_status=429, fail_times=2)
    task = next(t for t in energy_env.tasks("train") if t.kind == "single")
    async with policy_for(scripted_server) as policy:
        traj = await rollout(energy_env, policy, task, retry=FAST_RETRY)
    assert traj.success and traj.metrics["policy_retries"] == 2


async def test_model_failures_keep_verdict_and_reward(energy_env: Any, scripted_server: ScriptedServer) -> None:
    scripted_server.set_script(never_answer=True)
    task = next(t for t in energy_env.tasks("train") if t.kind == "single")
    async with policy_for(scripted_server) as policy:
        traj = await rollout(energy_env, policy, task, max_turns=3, retry=FAST_RETRY)
        assert traj.error is not None and traj.error.kind == "model" and traj.error.message.startswith("max_turns")
        assert traj.metrics["turns"] == 3 and traj.stop_reason == "max_turns"
        assert traj.verdict is not None and traj.reward is not None and not traj.success
        assert_well_formed(traj)
        budget = await rollout(energy_env, policy, task, max_turns=8, max_total_tokens=1, retry=FAST_RETRY)
    assert budget.error.kind == "model" and budget.error.message.startswith("token_budget")
    assert budget.metrics["turns"] == 1


async def test_rollout_timeout_is_infra(energy_env: Any, scripted_server: ScriptedServer) -> None:
    scripted_server.set_script(delay_s=0.5)
    task = next(t for t in energy_env.tasks("train") if t.kind == "single")
    async with policy_for(scripted_server) as policy:
        traj = await rollout(energy_env, policy, task, timeout_s=0.2, retry=FAST_RETRY)
    assert traj.is_infra_failure and traj.error.message.startswith("timeout")
    assert traj.messages and traj.messages[-1]["role"] == "user"  # what happened before is kept


async def test_in_memory_with_logprobs_gives_art_trajectories(energy_env: Any, scripted_server: ScriptedServer) -> None:
    tasks = [t for t in pick(energy_env, 1) if t.kind == "multi_step"]
    async with policy_for(scripted_server, logprobs=True) as policy:
        result = await run_rollouts(energy_env, policy, tasks, samples=2, concurrency=2, progress=False)
    assert result.out is None and len(result.trajectories) == 2 * len(tasks)
    traj = result.trajectories[0]
    assistant = [i for i, m in enumerate(traj.messages) if m["role"] == "assistant"]
    assert [entry.message_index for entry in traj.logprobs] == assistant
    art_traj = to_art_trajectory(traj)
    choices = [m for m in art_traj.messages_and_choices if not isinstance(m, dict)]
    assert len(choices) == len(assistant) and all(c.logprobs.content for c in choices)
    assert art_traj.reward == traj.reward and art_traj.metadata["group"] == traj.group


async def test_resume_skips_written_ids(energy_env: Any, scripted_server: ScriptedServer, tmp_path: Path) -> None:
    tasks = pick(energy_env, 1)
    out = tmp_path / "r.jsonl"
    async with policy_for(scripted_server) as policy:
        first = await run_rollouts(energy_env, policy, tasks[:2], out=out, progress=False)
        scripted_server.set_script()
        second = await run_rollouts(energy_env, policy, tasks, out=out, progress=False)
        assert second.skipped == 2 and len(second.trajectories) == len(tasks) - 2
        assert len(scripted_server.requests) > 0
        ids = [r["id"] for r in read_jsonl(out)]
        assert sorted(ids) == sorted({t.id for t in [*first.trajectories, *second.trajectories]})
        assert second.stats.count == len(tasks) and second.stats.resumed == 2
        fresh = await run_rollouts(energy_env, policy, tasks[:1], out=out, resume=False, progress=False)
    assert fresh.moved_aside is not None and len(read_jsonl(fresh.moved_aside)) == len(tasks)
    assert len(load_done(out)) == 1
    counts = Counter(json.loads(line)["id"] for line in out.read_text().splitlines())
    assert set(counts.values()) == {1}


async def test_a_seed_gives_each_sample_its_own_reproducible_seed(
    energy_env: Any, scripted_server: ScriptedServer
) -> None:
    """One seed on every request would make a task's samples the same completion (vLLM samples
    the same tokens for the same prompt and seed): each (task, sample) gets a seed of its own, the
    same on every turn of that rollout and from run to run."""
    tasks = [task for task in energy_env.tasks("train") if task.kind == "multi_step"][:2]

    async def seeds_by_question(seed: int | None) -> dict[str, list[Any]]:
        scripted_server.set_script()
        await run_rollouts(energy_env, policy_for(scripted_server, seed=seed), tasks, samples=3, progress=False)
        seen: dict[str, list[Any]] = {}
        for body in scripted_server.requests:
            question = next(m["content"] for m in body["messages"] if m["role"] == "user")
            seen.setdefault(question, []).append(body.get("seed"))
        return seen

    first = await seeds_by_question(7)
    assert len(first) == 2
    for seeds in first.values():
        assert len(seeds) >= 6  # three samples of a multi-step task: two turns or more each
        assert len(set(seeds)) == 3 and all(isinstance(seed, int) for seed in seeds)
        assert all(seeds.count(seed) == len(seeds) // 3 for seed in seeds)  # every turn of a rollout alike
    assert len({seed for seeds in first.values() for seed in seeds}) == 6
    again = await seeds_by_question(7)
    assert {q: sorted(s) for q, s in again.items()} == {q: sorted(s) for q, s in first.items()}
    other = await seeds_by_question(8)
    assert {s for seeds in other.values() for s in seeds}.isdisjoint({s for seeds in first.values() for s in seeds})
    unseeded = await seeds_by_question(None)
    assert {s for seeds in unseeded.values() for s in seeds} == {None}  # no seed sent unless asked for
