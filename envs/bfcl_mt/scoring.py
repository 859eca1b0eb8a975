"""A multi-turn episode scored the leaderboard's way: its `multi_turn_checker`, without its `eval`.

The model's calls of each user turn become the call text the leaderboard decodes from a
function-calling model (`calls.decode`: only calls of the scenario's API functions with their
parameters; anything else becomes a call that names no function), and go with the entry and
its per-turn ground truth to `envs.bfcl_mt.checker`, the leaderboard's checker executing with
`envs.bfcl_mt.executor` (a model's text never reaches `eval`), which executes both on fresh
API instances and checks, turn by turn, the instances' state and that the ground truth's
execution results are among the model's. As the leaderboard's runner
(`_evaluate_single_multi_turn_entry`): fewer turns than the ground truth (the conversation
was cut short: the step limit, a failure) fail as `multi_turn:force_terminated`.

Calls that were not executable as the model wrote them are named at the end of the verdict's
reason (`not executed: unknown tool 'open'`); they are the model's mistakes, never an error
of the env.

`partial=True` scores the share of user turns passed before the first failing one (the
checker checks turn by turn, so a prefix of the turns is checked as the checker would check
a shorter conversation); the verdict's `success` is always the checker's whole verdict.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from contracts import Task, ToolCall, Verdict

from . import data
from .calls import decode, scenario_functions
from .checker import multi_turn_checker


def decoded_turns(turns: list[list[ToolCall]], functions: Mapping[str, Sequence[str]]) -> list[list[list[str]]]:
    """Each user turn's calls as the checker takes them: a list of steps of call text (one
    step per turn here: the checker runs a turn's steps in order, so grouping does not matter).
    `functions`: the scenario's (`calls.scenario_functions` of the entry's involved classes)."""
    out: list[list[list[str]]] = []
    for calls in turns:
        texts = [text for text in (decode(call, functions).text for call in calls) if text is not None]
        out.append([texts] if texts else [])
    return out


def not_executed(turns: list[list[ToolCall]], functions: Mapping[str, Sequence[str]]) -> list[str]:
    """Why each call that is not executable as written was replaced (unknown tool, bad arguments)."""
    return [problem for calls in turns for call in calls if (problem := decode(call, functions).problem)]


def check(entry: dict[str, Any], model_turns: list[list[list[str]]]) -> dict[str, Any]:
    """The leaderboard's verdict on one entry: `{"valid": True}` or the checker's error dict."""
    ground_truth = entry["ground_truth"]
    if len(model_turns) != len(ground_truth):
        return {
            "valid": False,
            "error_type": "multi_turn:force_terminated",
            "error_message": f"the conversation has {len(model_turns)} turns; the ground truth {len(ground_truth)}",
        }
    return multi_turn_checker(model_turns, ground_truth, entry)


def turns_passed(entry: dict[str, Any], model_turns: list[list[list[str]]]) -> int:
    """How many leading user turns pass the checker (all of them when the whole entry does)."""
    total = len(entry["ground_truth"])
    padded = (model_turns + [[] for _ in range(total)])[:total]
    for k in range(1, total + 1):
        prefix = {**entry, "ground_truth": entry["ground_truth"][:k]}
        if not check(prefix, padded[:k])["valid"]:
            return k - 1
    return total


def verify_turns(entry: dict[str, Any], turns: list[list[ToolCall]], *, partial: bool = False) -> Verdict:
    """The checker's verdict on an episode's calls, one list per user turn."""
    functions = scenario_functions(entry["involved_classes"])
    model_turns = decoded_turns(turns, functions)
    result = check(entry, model_turns)
    total = len(entry["ground_truth"])
    rejected = not_executed(turns, functions)
    suffix = f"; not executed: {', '.join(rejected[:5])}{' ...' if len(rejected) > 5 else ''}" if rejected else ""
    if result["valid"]:
        return Verdict(success=True, score=1.0, reason=f"multi_turn checker: all {total} turns pass{suffix}")
    reason = f"{result.get('error_type', 'multi_turn:error')}: {result.get('error_message', '')}"
    score = 0.0
    if partial:
        passed = turns_passed(entry, model_turns)
        score = passed / total
        reason = f"{reason} ({passed}/{total} turns pass)"
    return Verdict(success=False, score=score, reason=reason + suffix)


def make_verifier(*, partial: bool = False) -> Any:
    """The env's verifier: `verify(task, answer, calls, turns=None)` by the task's entry."""

    def verify(task: Task, answer: str, calls: list[ToolCall], turns: list[list[ToolCall]] | None = None) -> Verdict:
        entry = data.entry(str(task.metadata["bfcl_id"]))
        return verify_turns(entry, turns if turns is not None else [calls], partial=partial)

    return verify
