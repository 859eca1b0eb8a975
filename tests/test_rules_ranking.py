"""The default (ranked) rule reward orders behaviour as GRPO should prefer it, for every task kind:
every success above every failure, and among failures more of the needed work above less of it —
a chain cut short never above one carried through (the shortcut GRPO learned under the weighted
rubric: one call, then the intermediate value as the answer)."""

from __future__ import annotations

import itertools
import random

import pytest

from contracts import ExpectedCall, Task, TrajectoryError
from judges import RubricConfig, rule_reward
from tests.fixtures.judge_data import MULTI, NO_TOOL, PARALLEL, PRICE, make_trajectory

RIGHT_PRICE = ("get_price", {"hub": "Henry Hub", "date": "2025-03-04"})
WRONG_PRICE = ("get_price", {"hub": "Waha", "date": "2025-03-04"})
BOOK = ("book_capacity", {"pipeline": "Texas Eastern", "volume_mmcfd": 120})
BOOK_WRONG = ("book_capacity", {"pipeline": "Texas Eastern", "volume_mmcfd": 12})
LIST = ("list_bookings", {})
IL = ("get_consumption", {"state": "IL", "month": "2024-07", "sector": "industrial"})
LA = ("get_consumption", {"state": "Louisiana", "month": "2024-07"})
LA_WRONG = ("get_consumption", {"state": "Louisiana", "month": "2023-07"})
STORAGE = ("get_storage", {"region": "East"})


def reward(task: Task, turns: list, **kwargs: object) -> float:
    return rule_reward(make_trajectory(task, turns, **kwargs))[0]


def fail(task: Task, turns: list, **kwargs: object) -> float:
    return reward(task, turns, success=False, **kwargs)


def test_multi_step_an_honest_attempt_outranks_the_shortcut() -> None:
    success = reward(MULTI, [[BOOK], [LIST]])
    both_calls_wrong_answer = fail(MULTI, [[BOOK], [LIST]])
    first_step_done_badly = fail(MULTI, [[BOOK_WRONG], [LIST]])
    shortcut = fail(MULTI, [[BOOK]])  # one call, then the intermediate value as the answer
    shortcut_badly = fail(MULTI, [[BOOK_WRONG]])
    guessed_together = fail(MULTI, [[BOOK, LIST]])  # the second step cannot have used the first's result
    nothing = fail(MULTI, [])
    assert success == pytest.approx(1.0)
    assert success > both_calls_wrong_answer > first_step_done_badly > shortcut > shortcut_badly > nothing
    assert both_calls_wrong_answer > guessed_together > shortcut
    assert nothing == 0.0
    # Running out of turns costs nothing beyond the work left undone: no penalty pays for stopping early.
    ran_out = fail(MULTI, [[BOOK]], error=TrajectoryError(kind="model", message="max_turns: no final answer"))
    assert ran_out == pytest.approx(shortcut)


def test_single_call_ranking() -> None:
    success = reward(PRICE, [[RIGHT_PRICE]])
    right_call_wrong_answer = fail(PRICE, [[RIGHT_PRICE]])
    wrong_arguments = fail(PRICE, [[WRONG_PRICE]])
    assert success > right_call_wrong_answer > wrong_arguments > fail(PRICE, [])
    assert fail(PRICE, [[STORAGE]]) == 0.0  # a wrong tool earns nothing
    assert fail(PRICE, [[WRONG_PRICE], [STORAGE]]) < wrong_arguments  # a stray call costs


def test_parallel_ranking_uses_the_partial_answer() -> None:
    success = reward(PARALLEL, [[IL, LA]])
    both_calls_half_answer = fail(PARALLEL, [[IL, LA]], score=0.5)
    both_calls_no_answer = fail(PARALLEL, [[IL, LA]], score=0.0)
    one_call_half_answer = fail(PARALLEL, [[LA]], score=0.5)
    one_call_no_answer = fail(PARALLEL, [[LA]], score=0.0)
    assert success > both_calls_half_answer > both_calls_no_answer > one_call_no_answer
    assert both_calls_half_answer > one_call_half_answer > one_call_no_answer
    assert reward(PARALLEL, [[LA], [IL]]) == pytest.approx(success)  # one step: order does not matter
    assert fail(PARALLEL, [[IL, LA_WRONG]]) < both_calls_no_answer


def test_no_tool_ranking() -> None:
    success = reward(NO_TOOL, [])
    wrong_answer_no_call = fail(NO_TOOL, [])
    called_a_tool = fail(NO_TOOL, [[RIGHT_PRICE]])
    assert success == pytest.approx(1.0)
    assert success > wrong_answer_no_call > called_a_tool == 0.0


def test_every_success_outranks_every_failure_of_every_kind() -> None:
    """Random call sequences over each task's tools: the least success stays above the best failure."""
    pool = {
        "single": (PRICE, [RIGHT_PRICE, WRONG_PRICE, STORAGE, ("get_price", '{"hub": ')]),
        "multi_step": (MULTI, [BOOK, BOOK_WRONG, LIST, STORAGE]),
        "parallel": (PARALLEL, [IL, LA, LA_WRONG, STORAGE]),
        "no_tool": (NO_TOOL, [RIGHT_PRICE, STORAGE]),
    }
    rng = random.Random(0)
    for kind, (task, calls) in pool.items():
        successes, failures = [], []
        for _ in range(300):
            turns = [rng.sample(calls, rng.randint(1, 2)) for _ in range(rng.randint(0, 4))]
            score = rng.choice([0.0, 0.5])
            failures.append(fail(task, turns, score=score, parse_errors=rng.randint(0, 2)))
            successes.append(reward(task, turns, parse_errors=rng.randint(0, 2)))
        assert min(successes) > max(failures), kind
        assert min(successes) >= 0.9 and max(failures) < 0.6 and min(failures) >= 0.0, kind


def test_failure_rewards_spread_enough_for_a_group_to_train() -> None:
    """GRPO drops a group whose rewards differ by less than 0.05 (train.grpo --min-spread): one
    needed call more is worth more than that."""
    for worse, better in itertools.pairwise([fail(MULTI, []), fail(MULTI, [[BOOK]]), fail(MULTI, [[BOOK], [LIST]])]):
        assert better - worse >= 0.1


def test_tasks_without_expected_calls_are_rewarded_by_their_verdict() -> None:
    """An env that checks only the outcome (no expected calls, e.g. BFCL multi-turn): the reward
    is the verdict's, never a blend with call metrics the task cannot have."""
    outcome_only = Task(id="mt", question="q", answer=None, kind="multi_turn")
    assert reward(outcome_only, [[STORAGE]]) == pytest.approx(1.0)
    assert fail(outcome_only, [[STORAGE]], score=0.5) == pytest.approx(0.2 * 0.5)
    assert fail(outcome_only, []) == 0.0


def test_outcome_mode_and_the_scale_guard(tmp_path) -> None:
    outcome = RubricConfig(mode="outcome")
    assert rule_reward(make_trajectory(MULTI, [[BOOK]], success=False), outcome)[0] == 0.0
    assert rule_reward(make_trajectory(PARALLEL, [[LA]], success=False, score=0.5), outcome)[0] == 0.5
    path = tmp_path / "outcome.yaml"
    path.write_text("mode: outcome\n")
    assert RubricConfig.from_file(path).mode == "outcome"
    bad = tmp_path / "bad.yaml"
    bad.write_text("ranked:\n  success_floor: 0.5\n")
    with pytest.raises(ValueError, match="success_floor"):
        RubricConfig.from_file(bad)


def test_an_expected_call_out_of_step_order_earns_half() -> None:
    two_steps = Task(
        id="two",
        question="q",
        answer=1,
        kind="multi_step",
        expected_calls=[
            ExpectedCall(name="get_price", arguments=RIGHT_PRICE[1], step=0),
            ExpectedCall(name="list_bookings", arguments={}, step=1),
        ],
    )
    in_order = rule_reward(make_trajectory(two_steps, [[RIGHT_PRICE], [LIST]], success=False))[1]
    reversed_ = rule_reward(make_trajectory(two_steps, [[LIST], [RIGHT_PRICE]], success=False))[1]
    assert in_order["components"]["progress"] == pytest.approx(1.0)
    assert reversed_["components"]["progress"] == pytest.approx(0.75)  # the first step's call is in order
