"""The ground truth replayed through the env: the checks that the env is the leaderboard's.

For each entry, the ground-truth calls of each user turn go through an episode of the env (its
MCP server, as a model's calls would), turn after turn with `next_user` between; then

- the calls of each turn are scored by the env's verifier (the leaderboard's checker): the
  ground truth must pass (check 1);
- the results the MCP server gave, and those of the checker's executor (`envs.bfcl_mt.executor`),
  are compared with what the leaderboard's own `execute_multi_turn_func_call` gives for the
  same calls on the same scenario (check 2).

The leaderboard's executor `eval`s call text; here it only ever gets the entry's ground truth,
the data the wheel ships (never a model's text): it is the reference the checks compare with.
"""

from __future__ import annotations

import asyncio
import importlib
import uuid
from typing import Any

from pydantic import BaseModel, Field

from contracts import Task, ToolCall

from . import data
from .calls import to_tool_call
from .executor import ApiInstances

_UTILS = "bfcl_eval.eval_checker.multi_turn_eval.multi_turn_utils"


class Replay(BaseModel):
    """One entry's replay: the checker's verdict, and where the results differ (if anywhere)."""

    id: str
    category: str
    passed: bool
    reason: str = ""
    results_equal: bool
    differences: list[dict[str, Any]] = Field(default_factory=list)
    error: str | None = None


def executor_results(entry: dict[str, Any]) -> list[list[str]]:
    """The checker's execution results of the ground truth, turn by turn, on one scenario."""
    instances = ApiInstances(
        entry["id"], entry["initial_config"], entry["involved_classes"], long_context=data.is_long_context(entry["id"])
    )
    return [instances.execute(calls) for calls in entry["ground_truth"]]


def leaderboard_results(entry: dict[str, Any]) -> list[list[str]]:
    """The leaderboard's own execution results of the ground truth, turn by turn, on one scenario
    (the entry's ground truth only: the wheel's executor `eval`s what it is given)."""
    utils = importlib.import_module(_UTILS)
    model_name = f"mcpgym_replay_{uuid.uuid4().hex}"
    try:
        out = []
        for calls in entry["ground_truth"]:
            results, _ = utils.execute_multi_turn_func_call(
                calls,
                entry["initial_config"],
                entry["involved_classes"],
                model_name,
                entry["id"],
                long_context=data.is_long_context(entry["id"]),
            )
            out.append(results)
        return out
    finally:
        for key in [k for k in vars(utils) if k.startswith(model_name)]:
            del vars(utils)[key]


async def _run_episode(env: Any, task: Task, entry: dict[str, Any]) -> tuple[list[list[ToolCall]], list[list[str]]]:
    turns: list[list[ToolCall]] = []
    results: list[list[str]] = []
    async with env.episode() as episode:
        await episode.reset(task)
        for index, texts in enumerate(entry["ground_truth"]):
            if index > 0 and await episode.next_user("") is None:
                raise RuntimeError(f"the env ended the conversation before turn {index}")
            calls = [to_tool_call(text, f"gt-{index}-{j}") for j, text in enumerate(texts)]
            step = await episode.step(calls) if calls else None
            results.append([str(m["content"]) for m in step.messages] if step else [])
            turns.append(calls)
        if await episode.next_user("") is not None:
            raise RuntimeError("the env has more user turns than the ground truth")
    return turns, results


async def replay_task(env: Any, task: Task) -> Replay:
    entry = data.entry(str(task.metadata["bfcl_id"]))
    category = data.category_of(entry["id"])
    try:
        turns, mcp_results = await _run_episode(env, task, entry)
    except Exception as exc:  # reported per entry: one broken entry must not hide the others
        return Replay(id=entry["id"], category=category, passed=False, results_equal=False, error=repr(exc))
    verdict = env.verify(task, "", [c for turn in turns for c in turn], turns=turns)
    expected = leaderboard_results(entry)
    differences = [
        {"turn": t, "call": entry["ground_truth"][t][i], source: got, "leaderboard": want}
        for source, results in (("mcp", mcp_results), ("executor", executor_results(entry)))
        for t, (got_turn, want_turn) in enumerate(zip(results, expected, strict=False))
        for i, (got, want) in enumerate(zip(got_turn, want_turn, strict=False))
        if got != want
    ]
    equal = not differences and [len(r) for r in mcp_results] == [len(r) for r in expected]
    return Replay(
        id=entry["id"],
        category=category,
        passed=verdict.success,
        reason=verdict.reason,
        results_equal=equal,
        differences=differences[:5],
    )


async def replay_all(env: Any, tasks: list[Task], concurrency: int = 8) -> list[Replay]:
    """Replay every task's ground truth, `concurrency` episodes at once, in task order."""
    gate = asyncio.Semaphore(concurrency)

    async def one(task: Task) -> Replay:
        async with gate:
            return await replay_task(env, task)

    return list(await asyncio.gather(*(one(task) for task in tasks)))


def summarize(replays: list[Replay]) -> dict[str, Any]:
    """Counts per category: entries, passing the checker, results equal to the leaderboard's."""
    by: dict[str, dict[str, int]] = {}
    for r in replays:
        row = by.setdefault(r.category, {"entries": 0, "passed": 0, "results_equal": 0, "errors": 0})
        row["entries"] += 1
        row["passed"] += int(r.passed)
        row["results_equal"] += int(r.results_equal)
        row["errors"] += int(r.error is not None)
    total = {key: sum(row[key] for row in by.values()) for key in ("entries", "passed", "results_equal", "errors")}
    return {"categories": by, "total": total}
