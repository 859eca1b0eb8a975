"""Matching the calls a model made against the calls a task expects.

The convention is the possible-answer one of the Berkeley Function Calling
Leaderboard: each parameter has a list of acceptable values (`alternatives`,
else the canonical `arguments` value), an empty string "" among them means the
parameter may be omitted, and a parameter the task does not name is a mistake.
Numbers match within a relative tolerance, strings ignoring case and
surrounding space. `ExpectedCall.step` orders calls; calls of one step are
order-free, so parallel calls match in any order (and across turns, as long as
every call of an earlier step ran in an earlier turn).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from contracts import ExpectedCall, ModelJsonError, Trajectory, loads_model_json

NUMERIC_RTOL = 1e-6
EXHAUSTIVE_LIMIT = 8  # up to this many same-name calls are assigned exactly; beyond, greedily


@dataclass
class ActualCall:
    """One call as the trajectory recorded it."""

    turn: int  # index of the assistant turn that made it (calls of one turn ran in parallel)
    call_id: str
    name: str
    raw_arguments: Any
    arguments: dict[str, Any] | None  # None when the arguments were not a JSON object
    ok: bool | None = None  # ran without error; None when the trajectory recorded no outcome
    error: str | None = None  # the outcome's error kind ("unknown_tool", "bad_arguments", "tool_error", "timeout")

    @property
    def parsed(self) -> bool:
        return self.arguments is not None


@dataclass
class ParamCounts:
    tp: int = 0
    fp: int = 0
    fn: int = 0

    def __iadd__(self, other: ParamCounts) -> ParamCounts:
        self.tp += other.tp
        self.fp += other.fp
        self.fn += other.fn
        return self

    @property
    def f1(self) -> float:
        denominator = 2 * self.tp + self.fp + self.fn
        return 1.0 if denominator == 0 else 2 * self.tp / denominator


@dataclass
class Alignment:
    """Which actual call answers which expected call (same name only)."""

    pairs: list[tuple[int, int]] = field(default_factory=list)  # (expected index, actual index)
    exact: set[int] = field(default_factory=set)  # expected indices whose paired call matches fully
    params: ParamCounts = field(default_factory=ParamCounts)
    unmatched_expected: list[int] = field(default_factory=list)
    unmatched_actual: list[int] = field(default_factory=list)
    order_ok: bool = True  # the exactly matched calls respect the step order


# -- values -----------------------------------------------------------------------


def values_equal(expected: Any, actual: Any, rtol: float = NUMERIC_RTOL) -> bool:
    """One expected value against one actual value (numbers with tolerance, strings case-free)."""
    if isinstance(expected, bool) or isinstance(actual, bool):
        return isinstance(expected, bool) and isinstance(actual, bool) and expected == actual
    if isinstance(expected, int | float) and isinstance(actual, int | float):
        return math.isclose(float(expected), float(actual), rel_tol=rtol, abs_tol=rtol)
    if isinstance(expected, int | float) and isinstance(actual, str):  # "120" for 120: models do this
        try:
            return values_equal(expected, float(actual.strip()), rtol)
        except ValueError:
            return False
    if isinstance(expected, str) and isinstance(actual, str):
        return expected.strip().casefold() == actual.strip().casefold()
    if isinstance(expected, list) and isinstance(actual, list):
        if len(expected) != len(actual):
            return False
        return all(values_equal(e, a, rtol) for e, a in zip(expected, actual, strict=True))
    if isinstance(expected, dict) and isinstance(actual, dict):
        return expected.keys() == actual.keys() and all(values_equal(v, actual[k], rtol) for k, v in expected.items())
    return expected == actual


def acceptable_values(call: ExpectedCall, param: str) -> list[Any]:
    if param in call.alternatives:
        return [value for value in call.alternatives[param] if value != ""]
    return [call.arguments[param]] if param in call.arguments else []


def optional(call: ExpectedCall, param: str) -> bool:
    return "" in call.alternatives.get(param, [])


def expected_params(call: ExpectedCall) -> set[str]:
    return set(call.arguments) | set(call.alternatives)


def param_match(call: ExpectedCall, param: str, value: Any, rtol: float = NUMERIC_RTOL) -> bool:
    return any(values_equal(candidate, value, rtol) for candidate in acceptable_values(call, param))


def param_counts(call: ExpectedCall, arguments: dict[str, Any] | None, rtol: float = NUMERIC_RTOL) -> ParamCounts:
    """Parameter-level true/false positives and misses of one call against one expected call.

    Gold parameters are the required ones plus the optional ones the model gave;
    an unknown parameter or a wrong value is a false positive, a missing or
    wrong required one a miss."""
    counts = ParamCounts()
    names = expected_params(call)
    given = arguments or {}
    for param, value in given.items():
        if param in names and param_match(call, param, value, rtol):
            counts.tp += 1
        else:
            counts.fp += 1
            if param in names:
                counts.fn += 1  # the right parameter with a wrong value is both a miss and a false positive
    counts.fn += sum(1 for param in names if param not in given and not optional(call, param))
    if arguments is None:  # unparsable arguments: nothing of the expected call was delivered
        counts.fn = sum(1 for param in names if not optional(call, param))
    return counts


def call_matches(call: ExpectedCall, name: str, arguments: dict[str, Any] | None, rtol: float = NUMERIC_RTOL) -> bool:
    """The whole call is right: same tool, every value acceptable, nothing missing, nothing extra."""
    if name != call.name or arguments is None:
        return False
    counts = param_counts(call, arguments, rtol)
    return counts.fp == 0 and counts.fn == 0


# -- trajectories -----------------------------------------------------------------


def expected_calls(traj: Trajectory) -> list[ExpectedCall]:
    return list(traj.task.expected_calls)


def actual_calls(traj: Trajectory) -> list[ActualCall]:
    """Every call the model made, in order, with its outcome when the rollout recorded one.

    Outcomes come from `traj.tool_outcomes` (written by rollouts.rollout);
    for records without them, a tool reply starting with "Error" (how envs.MCPEnv
    phrases failures) counts as a failed call."""
    outcomes = {o.call_id: o for o in traj.tool_outcomes}
    replies = {m.get("tool_call_id"): m for m in traj.messages if m.get("role") == "tool"}
    calls: list[ActualCall] = []
    turn = -1
    for message in traj.messages:
        if message.get("role") != "assistant":
            continue
        turn += 1
        for raw in message.get("tool_calls") or []:
            function = raw.get("function") or {}
            call_id = raw.get("id") or ""
            call = ActualCall(
                turn=turn,
                call_id=call_id,
                name=function.get("name") or "",
                raw_arguments=function.get("arguments"),
                arguments=_parse_arguments(function.get("arguments")),
            )
            if call_id in outcomes:
                call.ok = outcomes[call_id].ok
                call.error = outcomes[call_id].error
            elif call_id in replies:
                content = replies[call_id].get("content")
                call.ok = not (isinstance(content, str) and content.lstrip().startswith("Error"))
            calls.append(call)
    return calls


def _parse_arguments(raw: Any) -> dict[str, Any] | None:
    if isinstance(raw, dict):
        return raw
    if raw is None:
        return {}
    if not isinstance(raw, str):
        return None
    try:
        value = loads_model_json(raw.strip() or "{}")
    except ModelJsonError:  # any garbage (too deep, huge numbers) is the model's bad arguments
        return None
    return value if isinstance(value, dict) else None


# -- alignment ----------------------------------------------------------------------


def align(expected: list[ExpectedCall], actual: list[ActualCall], rtol: float = NUMERIC_RTOL) -> Alignment:
    """Pair expected and actual calls of the same name so that the most calls match
    exactly, then the most parameters match; the order of calls within a name does
    not matter (parallel calls), the step order is checked afterwards."""
    result = Alignment()
    for name in sorted({call.name for call in expected}):
        e_idx = [i for i, call in enumerate(expected) if call.name == name]
        a_idx = [j for j, call in enumerate(actual) if call.name == name]
        weights = {
            (i, j): _weight(expected[i], actual[j], rtol) for i in e_idx for j in a_idx
        }  # weight > 0 for any same-name pair
        for i, j in _assign(e_idx, a_idx, weights):
            result.pairs.append((i, j))
    result.pairs.sort()
    paired_e = {i for i, _ in result.pairs}
    paired_a = {j for _, j in result.pairs}
    for i, j in result.pairs:
        counts = param_counts(expected[i], actual[j].arguments, rtol)
        result.params += counts
        if call_matches(expected[i], actual[j].name, actual[j].arguments, rtol):
            result.exact.add(i)
    result.unmatched_expected = [i for i in range(len(expected)) if i not in paired_e]
    result.unmatched_actual = [j for j in range(len(actual)) if j not in paired_a]
    for i in result.unmatched_expected:  # a call never made: every required parameter missed
        result.params.fn += sum(1 for p in expected_params(expected[i]) if not optional(expected[i], p))
    for j in result.unmatched_actual:  # a call nobody asked for: every parameter it gave is extra
        result.params.fp += len(actual[j].arguments or {})
    turn_of = {i: actual[j].turn for i, j in result.pairs if i in result.exact}
    result.order_ok = all(
        turn_of[a] < turn_of[b] for a in turn_of for b in turn_of if expected[a].step < expected[b].step
    )
    return result


def _weight(call: ExpectedCall, actual: ActualCall, rtol: float) -> float:
    exact = call_matches(call, actual.name, actual.arguments, rtol)
    # Exact matches dominate; among partial ones, more right parameters win; ties go to earlier calls.
    return 1.0 + (10.0 if exact else 0.0) + param_counts(call, actual.arguments, rtol).f1


def _assign(rows: list[int], cols: list[int], weights: dict[tuple[int, int], float]) -> list[tuple[int, int]]:
    """Max-weight one-to-one assignment of rows to cols (exhaustive when small, greedy otherwise)."""
    if not rows or not cols:
        return []
    if max(len(rows), len(cols)) > EXHAUSTIVE_LIMIT:
        pairs: list[tuple[int, int]] = []
        used_r: set[int] = set()
        used_c: set[int] = set()
        for (r, c), _ in sorted(weights.items(), key=lambda item: (-item[1], item[0])):
            if r not in used_r and c not in used_c:
                pairs.append((r, c))
                used_r.add(r)
                used_c.add(c)
        return pairs
    transpose = len(rows) > len(cols)  # recurse over the shorter side
    short, long_ = (cols, rows) if transpose else (rows, cols)

    def w(s: int, lg: int) -> float:
        return weights[(lg, s)] if transpose else weights[(s, lg)]

    memo: dict[tuple[int, frozenset[int]], tuple[float, list[tuple[int, int]]]] = {}

    def best(k: int, used: frozenset[int]) -> tuple[float, list[tuple[int, int]]]:
        if k == len(short):
            return 0.0, []
        key = (k, used)
        if key not in memo:
            options = []
            for lg in long_:
                if lg in used:
                    continue
                score, rest = best(k + 1, used | {lg})
                options.append((score + w(short[k], lg), [(short[k], lg), *rest]))
            memo[key] = max(options, key=lambda option: option[0]) if options else (0.0, [])
        return memo[key]

    _, chosen = best(0, frozenset())
    return [(lg, s) for s, lg in chosen] if transpose else chosen
