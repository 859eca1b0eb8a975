"""A multi-turn episode scored the leaderboard's way: its own `multi_turn_checker`, from the wheel.

The model's calls of each user turn become the call text the leaderboard decodes from a
function-calling model (`calls.call_text`), and go with the entry and its per-turn ground
truth to `bfcl_eval.eval_checker.multi_turn_eval.multi_turn_checker.multi_turn_checker`,
which executes both on fresh API instances and checks, turn by turn, the instances' state and
that the ground truth's execution results are among the model's. As the leaderboard's runner
(`_evaluate_single_multi_turn_entry`): fewer turns than the ground truth (the conversation
was cut short: the step limit, a failure) fail as `multi_turn:force_terminated`.

The checker keeps the instances it makes in its module's globals, named after the model and
the entry; each check here uses a name of its own and removes its instances afterwards, so
checks of one entry never see each other's state (the leaderboard checks each entry once).

`partial=True` scores the share of user turns passed before the first failing one (the
checker checks turn by turn, so a prefix of the turns is checked as the checker would check
a shorter conversation); the verdict's `success` is always the checker's whole verdict.
"""

from __future__ import annotations

import importlib
import uuid
from typing import Any

from contracts import Task, ToolCall, Verdict

from . import data
from .calls import call_text

_CHECKER = "bfcl_eval.eval_checker.multi_turn_eval.multi_turn_checker"
_UTILS = "bfcl_eval.eval_checker.multi_turn_eval.multi_turn_utils"


def decoded_turns(turns: list[list[ToolCall]]) -> list[list[list[str]]]:
    """Each user turn's calls as the checker takes them: a list of steps of call text (one
    step per turn here: the checker runs a turn's steps in order, so grouping does not matter)."""
    out: list[list[list[str]]] = []
    for calls in turns:
        texts = [text for text in (call_text(call) for call in calls) if text is not None]
        out.append([texts] if texts else [])
    return out


def check(entry: dict[str, Any], model_turns: list[list[list[str]]]) -> dict[str, Any]:
    """The leaderboard's verdict on one entry: `{"valid": True}` or the checker's error dict."""
    ground_truth = entry["ground_truth"]
    if len(model_turns) != len(ground_truth):
        return {
            "valid": False,
            "error_type": "multi_turn:force_terminated",
            "error_message": f"the conversation has {len(model_turns)} turns; the ground truth {len(ground_truth)}",
        }
    checker = importlib.import_module(_CHECKER).multi_turn_checker
    utils = importlib.import_module(_UTILS)
    model_name = f"mcpgym_{uuid.uuid4().hex}"
    test_entry = {key: entry[key] for key in ("id", "initial_config", "involved_classes")}
    try:
        return checker(model_turns, ground_truth, test_entry, data.category_of(entry["id"]), model_name)
    finally:
        for key in [k for k in vars(utils) if k.startswith(model_name)]:
            del vars(utils)[key]


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
    model_turns = decoded_turns(turns)
    result = check(entry, model_turns)
    total = len(entry["ground_truth"])
    if result["valid"]:
        return Verdict(success=True, score=1.0, reason=f"multi_turn checker: all {total} turns pass")
    reason = f"{result.get('error_type', 'multi_turn:error')}: {result.get('error_message', '')}"
    score = 0.0
    if partial:
        passed = turns_passed(entry, model_turns)
        score = passed / total
        reason = f"{reason} ({passed}/{total} turns pass)"
    return Verdict(success=False, score=score, reason=reason)


def make_verifier(*, partial: bool = False) -> Any:
    """The env's verifier: `verify(task, answer, calls, turns=None)` by the task's entry."""

    def verify(task: Task, answer: str, calls: list[ToolCall], turns: list[list[ToolCall]] | None = None) -> Verdict:
        entry = data.entry(str(task.metadata["bfcl_id"]))
        return verify_turns(entry, turns if turns is not None else [calls], partial=partial)

    return verify
