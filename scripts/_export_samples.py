"""Real trajectories for `scripts/check_exports.sh`: the energy env's oracle, run against the env.

Three runs over a few train tasks of every kind (single, parallel, multi-step, no-tool):
  - the oracle as it is (empty content beside its calls, no thinking);
  - the oracle thinking and talking (`reasoning_content` on every turn, a sentence beside its calls),
    the shape Qwen3 behind a reasoning parser leaves in a trajectory;
  - the oracle on the multi-step tasks with one turn allowed, so the rollout ends on tool results.
Every tool result is the env's own. Writes one JSONL with unique ids.

    python scripts/_export_samples.py OUT.jsonl [--per-kind 2]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
from pathlib import Path
from typing import Any

import envs
from contracts import Trajectory
from rollouts import run_rollouts
from rollouts.policy import PolicyTurn
from train.warmstart import OraclePolicy


class TalkingOracle(OraclePolicy):
    """The oracle with thinking on every turn and a sentence beside its calls."""

    async def act(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]]) -> PolicyTurn:
        turn = await super().act(messages, tools)
        names = [call.name for call in turn.tool_calls]
        reasoning = f"I should call {', '.join(names)}." if names else "The results answer the question."
        message = dict(turn.message) | {"reasoning_content": reasoning}
        if names:
            message["content"] = f"Let me check with {' and '.join(names)}."
        return turn.model_copy(update={"message": message, "reasoning": reasoning, "content": message["content"]})


async def generate(out: Path, per_kind: int) -> list[Trajectory]:
    env = envs.load("energy")
    trajectories: list[Trajectory] = []
    async with env:
        by_kind: dict[str, list[Any]] = {}
        for task in env.tasks("train"):
            if len(by_kind.setdefault(task.kind, [])) < per_kind:
                by_kind[task.kind].append(task)
        tasks = [task for kind in sorted(by_kind) for task in by_kind[kind]]
        runs = [
            ("oracle", OraclePolicy(tasks), tasks, 8),
            ("talking", TalkingOracle(tasks), tasks, 8),
            ("cut", OraclePolicy(tasks), by_kind.get("multi_step", []), 1),
        ]
        with tempfile.TemporaryDirectory() as tmp:
            for name, policy, run_tasks, max_turns in runs:
                result = await run_rollouts(
                    env,
                    policy,
                    run_tasks,
                    out=Path(tmp) / f"{name}.jsonl",
                    max_turns=max_turns,
                    concurrency=4,
                    progress=False,
                )
                for traj in result.all:
                    trajectories.append(traj.model_copy(update={"id": f"{traj.id}:{name}"}))
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", encoding="utf-8") as fh:
        for traj in trajectories:
            fh.write(traj.model_dump_json() + "\n")
    return trajectories


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--per-kind", type=int, default=2)
    args = parser.parse_args()
    trajectories = asyncio.run(generate(args.out, args.per_kind))
    kinds = sorted({t.task.kind for t in trajectories})
    summary = {
        "trajectories": len(trajectories),
        "kinds": kinds,
        "parallel_call_turns": sum(len(m.get("tool_calls") or []) > 1 for t in trajectories for m in t.messages),
        "thinking_turns": sum(bool(m.get("reasoning_content")) for t in trajectories for m in t.messages),
        "ending_on_tool_results": sum(bool(t.messages) and t.messages[-1].get("role") == "tool" for t in trajectories),
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
