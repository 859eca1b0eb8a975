"""The leaderboard's `multi_turn_checker`, executing calls with `envs.bfcl_mt.executor` instead of `eval`.

A port of `bfcl_eval.eval_checker.multi_turn_eval.multi_turn_checker.multi_turn_checker` (the
wheel's checker `eval`s the model's call text in mcpgym's process, so it is never called on a
model's calls). Turn by turn, as the leaderboard: the model's steps of the turn run on the
model's instances, the turn's ground truth on the ground truth's; a turn with ground truth but
no model calls fails as `multi_turn:empty_turn_model_response`; a turn without ground truth is
executed (the next turn's state depends on it) and not checked; otherwise every public
attribute of each ground-truth instance must equal the model's
(`multi_turn:instance_state_mismatch`), and every ground-truth result of the turn must be among
the model's results of all turns so far, in any order (`multi_turn:execution_response_mismatch`).
The error types and messages are the leaderboard's; `details` are left out.
tests/test_bfcl_multi_turn.py checks the verdicts against the wheel's checker.
"""

from __future__ import annotations

from typing import Any

from .executor import ApiInstances

# The names the instances would have in the leaderboard (`model_name` + "_eval" for the model,
# + "_ground_truth_eval" for the ground truth): they differ, as there, where a string literal
# holding `function(` is rewritten with them.
MODEL_NAME = "mcpgym_eval"
GROUND_TRUTH_NAME = "mcpgym_ground_truth_eval"


def is_empty_execute_response(steps: list[Any]) -> bool:
    return len(steps) == 0 or (len(steps) == 1 and len(steps[0]) == 0)


Check = dict[str, Any]  # {"valid": True} or {"valid": False, "error_type": ..., "error_message": ...}


def multi_turn_checker(
    model_turns: list[list[list[str]]], ground_truth: list[list[str]], entry: dict[str, Any]
) -> Check:
    """`{"valid": True}` or `{"valid": False, "error_type": ..., "error_message": ...}` for one entry's
    decoded model calls (per user turn, per step: call text); `entry` gives id, scenario and classes."""
    category = entry["id"].rsplit("_", 1)[0]
    long_context = "long_context" in category or "composite" in category

    def instances(model_name: str) -> ApiInstances:
        scenario = entry["initial_config"], entry["involved_classes"]
        return ApiInstances(entry["id"], *scenario, long_context=long_context, model_name=model_name)

    model, truth = instances(MODEL_NAME), instances(GROUND_TRUTH_NAME)
    all_model_results: list[str] = []
    for turn_index, turn_truth in enumerate(ground_truth):
        turn_steps = model_turns[turn_index]
        for step in turn_steps:
            all_model_results.extend(model.execute(step))
        truth_results = truth.execute(turn_truth)
        if turn_truth and (not turn_steps or is_empty_execute_response(turn_steps)):
            return {
                "valid": False,
                "error_message": f"Model response list is empty for turn {turn_index}",
                "error_type": "multi_turn:empty_turn_model_response",
            }
        if not turn_truth:
            continue
        # Here the model made at least one step of this turn, so its instances exist (as the
        # leaderboard's assertion that both sides have the same classes expects).
        state = state_checker(model.instances, truth.instances)
        if not state["valid"]:
            return state
        response = response_checker(all_model_results, truth_results, turn_index)
        if not response["valid"]:
            return response
    return {"valid": True}


def state_checker(model_instances: dict[str, Any], truth_instances: dict[str, Any]) -> Check:
    for class_name, truth_instance in truth_instances.items():
        if not _same_state(model_instances[class_name], truth_instance):
            return {
                "valid": False,
                "error_message": (
                    f"Model instance for {class_name} does not match the state with ground truth instance."
                ),
                "error_type": "multi_turn:instance_state_mismatch",
            }
    return {"valid": True}


def response_checker(model_results: list[str], truth_results: list[str], turn_index: int) -> Check:
    remaining = list(model_results)
    missing = []
    for item in truth_results:
        try:
            remaining.remove(item)  # one occurrence each: duplicates must each be there
        except ValueError:
            missing.append(item)
    if missing:
        return {
            "valid": False,
            "error_message": (
                "Model response execution results so far does not contain all the ground truth response "
                f"execution results for turn {turn_index}."
            ),
            "error_type": "multi_turn:execution_response_mismatch",
        }
    return {"valid": True}


def _same_state(model_instance: Any, truth_instance: Any) -> bool:
    """Every public attribute of the ground truth's instance equals the model's (private ones not checked)."""
    if type(model_instance) is not type(truth_instance):
        raise TypeError("Objects are not of the same type.")
    for attr in vars(truth_instance):
        if attr.startswith("_"):
            continue
        if getattr(model_instance, attr) != getattr(truth_instance, attr):
            return False
    return True
