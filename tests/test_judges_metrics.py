"""Expected-call matching and function-calling metrics on hand-built trajectories."""

from __future__ import annotations

import math

import pytest

from contracts import ExpectedCall
from judges.matching import actual_calls, align, call_matches, expected_calls, param_counts, values_equal
from judges.metrics import analyze, compute_metrics
from tests.fixtures.judge_data import MULTI, NO_TOOL, PARALLEL, PRICE, infra_failure, make_trajectory

RIGHT_PRICE = ("get_price", {"hub": "Henry Hub", "date": "2025-03-04"})
LOUISIANA = ("get_consumption", {"state": "Louisiana", "month": "2024-07", "sector": "industrial"})
ILLINOIS = ("get_consumption", {"state": "Illinois", "month": "2024-07", "sector": "industrial"})


# -- matching ---------------------------------------------------------------------------


def test_values_match_with_numeric_tolerance_and_case_free_strings() -> None:
    assert values_equal(120, 120.0000001)
    assert values_equal(120, "120")
    assert not values_equal(120, 121)
    assert values_equal("Henry Hub", " henry hub ")
    assert not values_equal(True, 1)
    assert values_equal([1, "a"], [1.0, "A"])
    assert not values_equal([1, 2], [2, 1])


def test_alternatives_and_optional_parameters() -> None:
    call = PARALLEL.expected_calls[0]
    assert call_matches(call, "get_consumption", {"state": "LA", "month": "2024-07", "sector": "industrial"})
    assert call_matches(call, "get_consumption", {"state": "Louisiana", "month": "2024-07"})  # sector optional
    assert not call_matches(call, "get_consumption", {"state": "Texas", "month": "2024-07"})
    assert not call_matches(call, "get_consumption", {"state": "LA"})  # month is required
    assert not call_matches(call, "get_consumption", {"state": "LA", "month": "2024-07", "extra": 1})
    assert not call_matches(call, "get_price", {"state": "LA", "month": "2024-07"})


def test_param_counts_wrong_value_is_a_miss_and_a_false_positive() -> None:
    call = ExpectedCall(name="get_price", arguments={"hub": "Henry Hub", "date": "2025-03-04"})
    counts = param_counts(call, {"hub": "Waha", "date": "2025-03-04"})
    assert (counts.tp, counts.fp, counts.fn) == (1, 1, 1)
    assert counts.f1 == pytest.approx(0.5)
    assert param_counts(call, None).fn == 2  # unparsable arguments deliver nothing


def test_parallel_calls_match_in_any_order() -> None:
    traj = make_trajectory(PARALLEL, [[ILLINOIS, LOUISIANA]])
    alignment = align(expected_calls(traj), actual_calls(traj))
    assert alignment.exact == {0, 1}
    assert alignment.pairs == [(0, 1), (1, 0)]
    assert alignment.order_ok


def test_multi_step_order_is_checked() -> None:
    book = ("book_capacity", {"pipeline": "Texas Eastern", "volume_mmcfd": 120})
    in_order = analyze(make_trajectory(MULTI, [[book], [("list_bookings", {})]]))
    one_turn = analyze(make_trajectory(MULTI, [[book, ("list_bookings", {})]]))
    reversed_ = analyze(make_trajectory(MULTI, [[("list_bookings", {})], [book]]))
    assert in_order.plan_ok
    assert not one_turn.plan_ok  # step 1 ran in parallel with step 0: it could not see its result
    assert not reversed_.plan_ok
    assert len(reversed_.alignment.exact) == 2  # every call right, only the order wrong


def test_actual_calls_read_outcomes_and_unparsable_arguments() -> None:
    traj = make_trajectory(PRICE, [[("get_price", '{"hub": '), ("nope", {})]])
    first, second = actual_calls(traj)
    assert first.arguments is None and not first.parsed and first.error == "bad_arguments"
    assert second.ok is False and second.error == "unknown_tool"
    # Without recorded outcomes the "Error" replies of the env are used.
    traj.tool_outcomes = []
    assert [call.ok for call in actual_calls(traj)] == [False, False]


# -- metrics ------------------------------------------------------------------------------


def test_metrics_of_a_right_trajectory_are_all_one() -> None:
    metrics = compute_metrics([make_trajectory(PRICE, [[RIGHT_PRICE]])])
    for name in (
        "parse_rate",
        "func_name_accuracy",
        "param_f1",
        "schema_hit_rate",
        "exec_rate",
        "tool_selection_accuracy",
        "plan_success_rate",
        "step_efficiency",
        "timing_precision",
        "end_to_end_success",
    ):
        assert metrics[name] == 1.0, name


def test_wrong_tool() -> None:
    traj = make_trajectory(PRICE, [[("get_storage", {"region": "East"})]], success=False)
    metrics = compute_metrics([traj])
    assert metrics["func_name_accuracy"] == 0.0
    assert metrics["tool_selection_accuracy"] == 0.0
    assert metrics["plan_success_rate"] == 0.0
    assert metrics["param_f1"] == 0.0
    assert metrics["timing_precision"] == 1.0  # it did call a tool when one was needed
    assert metrics["schema_hit_rate"] == 1.0  # valid arguments for the tool it called


def test_wrong_value() -> None:
    traj = make_trajectory(PRICE, [[("get_price", {"hub": "Waha", "date": "2025-03-04"})]], success=False)
    metrics = compute_metrics([traj])
    assert metrics["func_name_accuracy"] == 1.0
    assert metrics["param_f1"] == pytest.approx(0.5)
    assert metrics["plan_success_rate"] == 0.0
    assert metrics["tool_selection_accuracy"] == 1.0


def test_extra_call() -> None:
    traj = make_trajectory(PRICE, [[RIGHT_PRICE], [RIGHT_PRICE]])
    analysis = analyze(traj)
    assert analysis.redundant_calls == 1
    metrics = compute_metrics([traj])
    assert metrics["plan_success_rate"] == 1.0  # every required call made, in order; extras allowed
    assert metrics["step_efficiency"] == pytest.approx(0.5)
    assert metrics["func_name_accuracy"] == pytest.approx(0.5)
    assert metrics["param_f1"] == pytest.approx(2 * 2 / (2 * 2 + 2))


def test_missing_call() -> None:
    traj = make_trajectory(PARALLEL, [[LOUISIANA]], success=False, score=0.5)
    metrics = compute_metrics([traj])
    assert metrics["plan_success_rate"] == 0.0
    assert metrics["func_name_accuracy"] == pytest.approx(0.5)
    assert metrics["tool_selection_accuracy"] == 1.0  # the right tool, just once too few
    assert metrics["step_efficiency"] == 1.0
    assert metrics["param_f1"] == pytest.approx(2 * 3 / (2 * 3 + 2))  # Illinois' state and month missed


def test_reordered_parallel_calls() -> None:
    traj = make_trajectory(PARALLEL, [[ILLINOIS, ("get_consumption", {"state": "LA", "month": "2024-07"})]])
    metrics = compute_metrics([traj])
    assert metrics["plan_success_rate"] == 1.0
    assert metrics["param_f1"] == 1.0


def test_no_call_needed() -> None:
    quiet = make_trajectory(NO_TOOL, [])
    busy = make_trajectory(NO_TOOL, [[RIGHT_PRICE]], success=False, sample=1)
    metrics = compute_metrics([quiet, busy])
    assert metrics["timing_precision"] == pytest.approx(0.5)
    assert metrics["plan_success_rate"] == pytest.approx(0.5)
    assert metrics["step_efficiency"] == pytest.approx(0.5)
    assert metrics["tool_selection_accuracy"] == pytest.approx(0.5)
    assert metrics["end_to_end_success"] == pytest.approx(0.5)
    assert compute_metrics([quiet])["parse_rate"] != compute_metrics([quiet])["parse_rate"]  # NaN: nothing to count


def test_parse_schema_and_exec_rates() -> None:
    traj = make_trajectory(
        PRICE,
        [[("get_price", '{"hub": '), ("get_price", {"hub": "Henry Hub"}), RIGHT_PRICE]],
        timeout_calls=set(),
        parse_errors=1,  # a text call that never became a call
    )
    metrics = compute_metrics([traj])
    assert metrics["parse_rate"] == pytest.approx(2 / 4)
    assert metrics["schema_hit_rate"] == pytest.approx(1 / 3)  # one unparsable, one missing "date"
    assert metrics["exec_rate"] == pytest.approx(1 / 3)  # the env rejected both bad ones


def test_infra_failures_are_excluded_and_counted() -> None:
    good = make_trajectory(PRICE, [[RIGHT_PRICE]])
    metrics = compute_metrics([good, infra_failure(PRICE, sample=1)])
    assert metrics["n"] == 2 and metrics["n_infra"] == 1 and metrics["n_scored"] == 1
    assert metrics["end_to_end_success"] == 1.0
    assert metrics["reward_mean"] == 1.0
    empty = compute_metrics([infra_failure(PRICE)])
    assert math.isnan(empty["plan_success_rate"])
