"""BFCL multi-turn episodes against real vLLM (the tiny random model of the session's one server):
the leaderboard's tools go through vLLM's chat template and tool parser, every user turn of the
entry is asked, the checker gives a verdict, nothing is an infrastructure failure.

TradingBot-only entries: their first prompt (~1.6k tokens) fits the tiny server's 2048 context."""

from __future__ import annotations

import pytest

pytest.importorskip("bfcl_eval")

import envs
from envs.bfcl_mt import LEADERBOARD_MAX_TURNS, data
from rollouts.policy import ChatPolicy
from rollouts.rollout import rollout
from tests.fixtures.vllm_server import tiny_policy_config

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("entry_id", ["multi_turn_base_100", "multi_turn_miss_func_100"])
async def test_several_user_turns_against_real_vllm(vllm_tiny, entry_id: str) -> None:
    config = tiny_policy_config(
        vllm_tiny,
        max_tokens=8,
        temperature=0,
    )
    async with (
        envs.load("bfcl-multi-turn", categories=[data.category_of(entry_id)]) as env,
        ChatPolicy(config) as policy,
    ):
        task = next(t for t in env.tasks("all") if t.id == entry_id)
        traj = await rollout(env, policy, task, max_turns=LEADERBOARD_MAX_TURNS)
    assert traj.error is None or traj.error.kind == "model", traj.error
    assert traj.verdict is not None and isinstance(traj.verdict.success, bool)
    if traj.error is None:  # no overflow: every user turn was asked
        assert traj.metrics["user_turns"] == len(data.entry(entry_id)["question"])
    assert len(traj.tools) >= len(task.tools or [])
