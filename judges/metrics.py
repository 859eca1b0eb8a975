"""Function-calling metrics over trajectories, and `python -m judges.metrics`.

    python -m judges.metrics data/trajectories.jsonl          # table + data/trajectories.metrics.json

Call-level: `parse_rate` (calls whose arguments were a JSON object, of all
attempted, text calls that did not parse included), `func_name_accuracy`
(calls paired with an expected call of that name, of max(expected, made)),
`param_f1` (micro F1 of parameter values), `schema_hit_rate` (parsed calls
valid against the tool's JSON schema, of calls to tools with a known schema),
`exec_rate` (calls that ran without error, of calls run). Agent-level, one
value per trajectory averaged: `tool_selection_accuracy` (called exactly the
expected set of tools), `plan_success_rate` (every expected call made exactly,
steps in order; extra calls allowed), `step_efficiency` (expected calls / calls
made, capped at 1), `timing_precision` (called tools iff the task needs them),
`end_to_end_success` (the env's verifier). Infra failures are left out of all
of them and counted in `n_infra`. A rate with nothing to count is NaN (null in JSON).
"""

from __future__ import annotations

import json
import math
from collections import Counter
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

from common.cli import ArgumentParser, UsageError, run_cli
from common.files import write_private_atomic
from common.flags import add_flag
from contracts import Trajectory

from .matching import ActualCall, Alignment, ParamCounts, actual_calls, align, expected_calls

METRIC_NAMES = (
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
)


@dataclass
class CallAnalysis:
    """What one trajectory's calls look like against its task; rules and metrics read it."""

    n_expected: int
    calls: list[ActualCall]
    alignment: Alignment
    parse_errors: int  # text calls that never became a call
    schema_checked: int = 0
    schema_hits: int = 0
    expected_names: Counter[str] = field(default_factory=Counter)
    success: bool = False

    @property
    def n_calls(self) -> int:
        return len(self.calls)

    @property
    def attempted(self) -> int:
        return len(self.calls) + self.parse_errors

    @property
    def parsed(self) -> int:
        return sum(1 for call in self.calls if call.parsed)

    @property
    def executed(self) -> list[ActualCall]:
        return [call for call in self.calls if call.ok is not None]

    @property
    def tool_f1(self) -> float:
        """F1 of the multiset of called tool names against the expected ones."""
        called = Counter(call.name for call in self.calls)
        if not called and not self.expected_names:
            return 1.0
        overlap = sum((called & self.expected_names).values())
        return 2 * overlap / (sum(called.values()) + sum(self.expected_names.values()))

    @property
    def tool_selection_ok(self) -> bool:
        return {call.name for call in self.calls} == set(self.expected_names)

    @property
    def plan_ok(self) -> bool:
        if self.n_expected == 0:
            return self.n_calls == 0
        return len(self.alignment.exact) == self.n_expected and self.alignment.order_ok

    @property
    def step_efficiency(self) -> float:
        if self.n_calls == 0:
            return 1.0 if self.n_expected == 0 else 0.0
        return min(1.0, self.n_expected / self.n_calls) if self.n_expected else 0.0

    @property
    def timing_ok(self) -> bool:
        return (self.n_expected > 0) == (self.n_calls > 0)

    @property
    def wrong_tool_calls(self) -> int:
        return sum(1 for call in self.calls if call.name not in self.expected_names)

    @property
    def redundant_calls(self) -> int:
        """Calls to an expected tool that no expected call needed (repeats, extras)."""
        return sum(1 for j in self.alignment.unmatched_actual if self.calls[j].name in self.expected_names)

    @property
    def format_errors(self) -> int:
        unparsed = sum(1 for call in self.calls if not call.parsed)
        invalid = sum(1 for call in self.calls if call.parsed and call.error == "bad_arguments")
        return self.parse_errors + unparsed + invalid

    @property
    def tool_timeouts(self) -> int:
        return sum(1 for call in self.calls if call.error == "timeout")


def analyze(traj: Trajectory) -> CallAnalysis:
    expected = expected_calls(traj)
    calls = actual_calls(traj)
    analysis = CallAnalysis(
        n_expected=len(expected),
        calls=calls,
        alignment=align(expected, calls),
        parse_errors=int(traj.metrics.get("parse_errors") or 0),
        expected_names=Counter(call.name for call in expected),
        success=traj.success,
    )
    schemas = _schemas(traj.tools)
    if schemas:
        for call in calls:
            analysis.schema_checked += 1
            analysis.schema_hits += int(call.parsed and _valid(schemas.get(call.name), call.arguments))
    return analysis


def _schemas(tools: list[dict[str, Any]]) -> dict[str, str]:
    """Tool name -> its parameter schema as JSON text (hashable, for the validator cache)."""
    out = {}
    for tool in tools:
        function = tool.get("function", tool)
        if function.get("name"):
            out[function["name"]] = json.dumps(function.get("parameters") or {"type": "object"}, sort_keys=True)
    return out


@lru_cache(maxsize=256)
def _validator(schema_text: str) -> Draft202012Validator | None:
    try:
        schema = json.loads(schema_text)
        Draft202012Validator.check_schema(schema)
    except SchemaError:
        return None
    return Draft202012Validator(schema)


def _valid(schema_text: str | None, arguments: dict[str, Any] | None) -> bool:
    if schema_text is None or arguments is None:
        return False  # unknown tool or unparsable arguments
    validator = _validator(schema_text)
    return validator is not None and validator.is_valid(arguments)


# -- aggregation ------------------------------------------------------------------------


def _rate(hits: float, total: float) -> float:
    return hits / total if total else math.nan


def compute_metrics(trajs: list[Trajectory]) -> dict[str, float]:
    """Every function-calling metric over `trajs` (infra failures excluded), plus counts (ints)."""
    scored = [traj for traj in trajs if not traj.is_infra_failure]
    analyses = [analyze(traj) for traj in scored]
    params = ParamCounts()
    for analysis in analyses:
        params += analysis.alignment.params
    n = len(analyses)

    def mean(values: list[float]) -> float:
        return sum(values) / len(values) if values else math.nan

    rewards = [traj.reward for traj in scored if traj.reward is not None]
    result = {
        "parse_rate": _rate(sum(a.parsed for a in analyses), sum(a.attempted for a in analyses)),
        "func_name_accuracy": _rate(
            sum(len(a.alignment.pairs) for a in analyses), sum(max(a.n_expected, a.n_calls) for a in analyses)
        ),
        "param_f1": params.f1 if params.tp + params.fp + params.fn else math.nan,
        "schema_hit_rate": _rate(sum(a.schema_hits for a in analyses), sum(a.schema_checked for a in analyses)),
        "exec_rate": _rate(
            sum(sum(1 for c in a.executed if c.ok) for a in analyses), sum(len(a.executed) for a in analyses)
        ),
        "tool_selection_accuracy": mean([float(a.tool_selection_ok) for a in analyses]),
        "plan_success_rate": mean([float(a.plan_ok) for a in analyses]),
        "step_efficiency": mean([a.step_efficiency for a in analyses]),
        "timing_precision": mean([float(a.timing_ok) for a in analyses]),
        "end_to_end_success": mean([float(a.success) for a in analyses]),
        "reward_mean": mean(rewards),
        "n": len(trajs),
        "n_scored": n,
        "n_infra": len(trajs) - n,
        "n_calls": sum(a.n_calls for a in analyses),
    }
    return result


# -- output -------------------------------------------------------------------------------


def format_table(values: dict[str, Any], title: str = "metric") -> str:
    rows = [(key, _fmt(value)) for key, value in values.items()]
    width = max([len(title), *(len(key) for key, _ in rows)])
    lines = [f"{title:<{width}}  value", f"{'-' * width}  ------"]
    lines += [f"{key:<{width}}  {text}" for key, text in rows]
    return "\n".join(lines)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return "-" if math.isnan(value) else f"{value:.4f}"
    return str(value)  # counts


def json_safe(values: dict[str, Any]) -> dict[str, Any]:
    """NaN becomes null: strict JSON has no NaN."""
    return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in values.items()}


def load_trajectories(path: str | Path) -> list[Trajectory]:
    """Read a trajectory JSONL file, one trajectory per id (the last record of an id wins: our writers
    compact on resume, but a file from elsewhere may repeat one); one clear error for a line that
    is not a trajectory."""
    from rollouts.jsonl import JsonlFormatError, NotATrajectory, iter_trajectories

    path = Path(path)
    if not path.is_file():
        raise UsageError(f"no such file: {path}")
    latest: dict[str, Trajectory] = {}  # streamed: the raw lines are never all in memory
    try:
        for traj in iter_trajectories(path):
            latest.pop(traj.id, None)
            latest[traj.id] = traj
    except (JsonlFormatError, NotATrajectory) as exc:
        raise UsageError(str(exc)) from None
    return list(latest.values())


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(
        prog="python -m judges.metrics",
        description="Function-calling metrics of a trajectory file: prints a table and writes JSON.",
    )
    parser.add_argument("input", metavar="IN", help="trajectory JSONL (rollouts.generate or judges.score output)")
    add_flag(parser, "--report", default=None, aliases=("--json",), help="metrics JSON (default IN.metrics.json)")
    return parser


def main() -> int:
    args = build_parser().parse_args()
    trajs = load_trajectories(args.input)
    if not trajs:
        raise UsageError(f"{args.input}: no trajectories")
    values = compute_metrics(trajs)
    out = Path(args.report) if args.report else Path(args.input).with_suffix(".metrics.json")
    write_private_atomic(out, json.dumps(json_safe(values), indent=2) + "\n")
    print(format_table(values))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    run_cli(main)
