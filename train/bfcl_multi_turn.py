"""BFCL multi-turn entries for `train.bfcl`: each one an episode of the bfcl-multi-turn env.

An entry runs as `rollouts.rollout` runs any task of an mcpgym env (`envs.bfcl_mt`): the
leaderboard's APIs behind an MCP server, one user turn after another, at most the
leaderboard's 20 steps per turn (`max_turns` 21), and the verdict of the leaderboard's
`multi_turn_checker` (ported: no `eval` of a model's calls) on the model's calls of each turn. What comes back is what a
`train.bfcl` record needs: the verdict, the calls of each turn as the leaderboard's decoded
call text (the record's `reply`), the token counts, or the infrastructure failure.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, Field

from contracts import Policy, Task, ToolCall, Trajectory
from envs.bfcl_mt import LEADERBOARD_MAX_TURNS, data, load_env
from envs.bfcl_mt.calls import scenario_functions
from envs.bfcl_mt.scoring import decoded_turns
from rollouts.retry import RetryConfig
from rollouts.rollout import rollout


class MultiTurnOutcome(BaseModel):
    """One multi-turn entry's result, or its infrastructure failure (`infra`: no verdict)."""

    valid: bool = False
    error_type: str = ""
    reason: str = ""
    reply: list[list[list[str]]] = Field(default_factory=list)  # per user turn, per step: call text
    infra: str | None = None
    latency_s: float = 0.0
    prompt_tokens: int = 0
    completion_tokens: int = 0


def turn_calls(messages: Sequence[dict[str, Any]]) -> list[list[ToolCall]]:
    """The assistant's tool calls of each user turn of a conversation, in order."""
    turns: list[list[ToolCall]] = []
    for message in messages:
        if message.get("role") == "user":
            turns.append([])
        elif message.get("role") == "assistant" and turns:
            for raw in message.get("tool_calls") or []:
                function = raw.get("function") or {}
                turns[-1].append(
                    ToolCall(
                        id=str(raw.get("id") or ""),
                        name=str(function.get("name") or ""),
                        arguments=function.get("arguments") or "{}",
                    )
                )
    return turns


def outcome_of(traj: Trajectory) -> MultiTurnOutcome:
    metrics = traj.metrics
    counts = {
        "latency_s": round(float(metrics.get("policy_latency_s", 0.0)), 4),
        "prompt_tokens": int(metrics.get("prompt_tokens", 0)),
        "completion_tokens": int(metrics.get("completion_tokens", 0)),
    }
    if (traj.error is not None and traj.error.kind == "infra") or traj.verdict is None:
        return MultiTurnOutcome(infra=traj.error.message if traj.error else "no verdict", **counts)
    reason = traj.verdict.reason
    entry = data.entry(str(traj.task.metadata["bfcl_id"]))
    return MultiTurnOutcome(
        valid=traj.verdict.success,
        # The verifier's reason is "<the checker's error_type>: <its message>".
        error_type="" if traj.verdict.success else reason.split(": ", 1)[0],
        reason=reason,
        reply=decoded_turns(turn_calls(traj.messages), scenario_functions(entry["involved_classes"])),
        **counts,
    )


class MultiTurnRunner:
    """The bfcl-multi-turn env for a run (`async with`), answering entries by id."""

    def __init__(self, categories: Sequence[str], retry: RetryConfig) -> None:
        self.env = load_env(categories=list(categories))
        self.retry = retry
        self._tasks: dict[str, Task] = {}

    async def __aenter__(self) -> MultiTurnRunner:
        await self.env.start()
        self._tasks = {task.id: task for task in self.env.tasks("all")}
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.env.aclose()

    async def answer(self, policy: Policy, entry_id: str) -> MultiTurnOutcome:
        task = self._tasks[entry_id]
        traj = await rollout(self.env, policy, task, max_turns=LEADERBOARD_MAX_TURNS, retry=self.retry)
        return outcome_of(traj)
