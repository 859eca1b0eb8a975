"""The rule rubric: a reward from what the trajectory did, no LLM needed. Three modes:

`ranked` (the default) orders behaviour the way GRPO should prefer it:

    success:  max(success_floor, 1 - extra_call * stray calls)            in [0.9, 1]
    failure:  max(0, progress_weight * progress + partial_answer * verdict score
                     - stray_call * stray calls)                          in [0, 0.6)

so every success outranks every failure, and among failures more of the needed work ranks higher.
`progress` is the share of the task's expected calls carried out: 1 for a call made exactly and in
step order (a later step's exact arguments usually hold an earlier step's result, so matching them
means the result was used), 0.5 for the right tool with other arguments or out of order, 0 for a
call never made. A chain cut short therefore earns less than one carried through, and nothing pays
for stopping early: there is no efficiency credit and no penalty for running out of turns. A
`no_tool` task's progress is 1 when no tool was called; a task without expected calls (its env
checks only the outcome) has none, and its reward is the verdict's. Stray calls are calls no
expected call needed (a wrong tool, a repeat) and text calls that did not parse.

`outcome`: the env verifier's score, nothing else.

`weighted`: the configurable weighted sum

    reward = sum(weight_c * component_c) + sum(penalty_p * count_p), clipped to [clip_min, clip_max]

Components (each 0..1): `task_completion` (the env verifier's score),
`tool_accuracy` (F1 of the called tool names against the expected ones),
`param_accuracy` (F1 of parameter values, judges.matching), `efficiency`
(expected calls / calls made, capped at 1), `timing` (called tools iff the task
needs them), `format_compliance` (calls valid against their tool's schema, of
all attempted). Penalties count occurrences: `wrong_tool` (a call to a tool the
task does not use), `redundant_call` (a call to a right tool that no expected
call needed), `format_error` (arguments that are not JSON, text calls that did
not parse, arguments the tool rejected), `timeout` (a tool call that timed out,
or no final answer within the turn/token budget). Its efficiency and timeout terms pay a chain
cut short more than an honest attempt that fails at its last step, which is why it is no longer
the default.

Configured by `RubricConfig`, from Python or a YAML/JSON file; a file that gives `weights` or
`penalties` and no `mode` is a weighted rubric:

    weights: {task_completion: 0.5, tool_accuracy: 0.2, param_accuracy: 0.1, efficiency: 0.1, timing: 0.1}
    penalties: {wrong_tool: -0.3}
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from contracts import Trajectory

from .base import Judge
from .metrics import CallAnalysis, analyze


class RubricWeights(BaseModel):
    model_config = ConfigDict(extra="forbid")

    task_completion: float = 0.4
    tool_accuracy: float = 0.25
    param_accuracy: float = 0.0
    efficiency: float = 0.15
    timing: float = 0.10
    format_compliance: float = 0.10


class RubricPenalties(BaseModel):
    model_config = ConfigDict(extra="forbid")

    wrong_tool: float = -0.3
    redundant_call: float = -0.2
    format_error: float = -0.1
    timeout: float = -0.5


class RankedScale(BaseModel):
    """The ranked reward's numbers (module docstring). A success's least reward stays above a
    failure's most, or the ranking the mode exists for would not hold."""

    model_config = ConfigDict(extra="forbid")

    success_floor: float = Field(0.9, gt=0, le=1)
    extra_call: float = Field(0.02, ge=0)
    progress: float = Field(0.4, ge=0)
    partial_answer: float = Field(0.2, ge=0)
    stray_call: float = Field(0.05, ge=0)

    @model_validator(mode="after")
    def _success_above_failure(self) -> RankedScale:
        if self.progress + self.partial_answer >= self.success_floor:
            raise ValueError(
                f"progress + partial_answer ({self.progress + self.partial_answer:g}) must stay below "
                f"success_floor ({self.success_floor:g}), so that every success outranks every failure"
            )
        return self


RubricMode = Literal["ranked", "outcome", "weighted"]


class RubricConfig(BaseModel):
    """The rule rubric. Unknown keys are an error, so a typo in a file cannot silently do nothing."""

    model_config = ConfigDict(extra="forbid")

    mode: RubricMode = "ranked"
    ranked: RankedScale = Field(default_factory=RankedScale)
    weights: RubricWeights = Field(default_factory=RubricWeights)
    penalties: RubricPenalties = Field(default_factory=RubricPenalties)
    clip_min: float = -1.0
    clip_max: float = 1.0

    @model_validator(mode="before")
    @classmethod
    def _weights_mean_weighted(cls, data: Any) -> Any:
        """Weights or penalties given without a mode: the user means the weighted sum."""
        if isinstance(data, dict) and "mode" not in data and ("weights" in data or "penalties" in data):
            return {**data, "mode": "weighted"}
        return data

    @classmethod
    def from_file(cls, path: str | Path) -> RubricConfig:
        """Load from YAML (.yaml/.yml) or JSON; ValueError with one line on bad content."""
        path = Path(path)
        text = path.read_text()
        try:
            data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
        except (json.JSONDecodeError, yaml.YAMLError) as exc:
            raise ValueError(f"{path}: not valid {'JSON' if path.suffix == '.json' else 'YAML'}: {exc}") from None
        try:
            return cls.model_validate(data or {})
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(part) for part in first["loc"])
            raise ValueError(f"{path}: {where}: {first['msg']}") from None


def components(analysis: CallAnalysis, traj: Trajectory) -> dict[str, float]:
    attempted = analysis.attempted
    if not attempted:
        well_formed = 1.0
    elif analysis.schema_checked:  # the tools' schemas were recorded: valid against them
        well_formed = analysis.schema_hits / attempted
    else:  # no schemas in the record: at least a JSON object
        well_formed = analysis.parsed / attempted
    return {
        "task_completion": traj.verdict.score if traj.verdict else 0.0,
        "tool_accuracy": analysis.tool_f1,
        "param_accuracy": analysis.alignment.params.f1,
        "efficiency": analysis.step_efficiency,
        "timing": float(analysis.timing_ok),
        "format_compliance": well_formed,
    }


def penalty_counts(analysis: CallAnalysis, traj: Trajectory) -> dict[str, int]:
    ran_out = traj.stop_reason in ("max_turns", "token_budget")
    return {
        "wrong_tool": analysis.wrong_tool_calls,
        "redundant_call": analysis.redundant_calls,
        "format_error": analysis.format_errors,
        "timeout": analysis.tool_timeouts + int(ran_out),
    }


def progress(analysis: CallAnalysis, traj: Trajectory) -> float:
    """The share of the task's expected calls carried out (module docstring), 0..1."""
    if not analysis.n_expected:
        return float(not analysis.calls) if traj.task.kind == "no_tool" else 0.0
    expected = traj.task.expected_calls
    turn_of = {i: analysis.calls[j].turn for i, j in analysis.alignment.pairs}
    credit = 0.0
    for i, turn in turn_of.items():
        # In order: every call of an earlier step was made, in an earlier turn.
        in_order = all(
            k in turn_of and turn_of[k] < turn for k, call in enumerate(expected) if call.step < expected[i].step
        )
        credit += 1.0 if i in analysis.alignment.exact and in_order else 0.5
    return credit / analysis.n_expected


def stray_calls(analysis: CallAnalysis, traj: Trajectory) -> int:
    """Calls no expected call needed (a wrong tool, a repeat) and text calls that did not parse;
    none for a task that lists no expected calls and may need tools (nothing to hold calls against)."""
    if not analysis.n_expected and traj.task.kind != "no_tool":
        return 0
    return analysis.wrong_tool_calls + analysis.redundant_calls + analysis.parse_errors


def ranked_reward(traj: Trajectory, scale: RankedScale) -> tuple[float, dict[str, Any]]:
    analysis = analyze(traj)
    verdict = traj.verdict
    parts = {
        "success": float(bool(verdict and verdict.success)),
        "progress": progress(analysis, traj),
        "partial_answer": verdict.score if verdict and not verdict.success else 0.0,
    }
    counts = {"stray_call": stray_calls(analysis, traj)}
    if parts["success"]:
        raw = 1.0 - scale.extra_call * counts["stray_call"]
        reward = max(scale.success_floor, raw)
    else:
        raw = scale.progress * parts["progress"] + scale.partial_answer * parts["partial_answer"]
        raw -= scale.stray_call * counts["stray_call"]
        reward = max(0.0, raw)
    return reward, {"components": parts, "penalties": counts, "raw": raw, "reward": reward}


def outcome_reward(traj: Trajectory) -> tuple[float, dict[str, Any]]:
    score = traj.verdict.score if traj.verdict else 0.0
    return score, {"components": {"task_completion": score}, "penalties": {}, "raw": score, "reward": score}


def rule_reward(traj: Trajectory, config: RubricConfig | None = None) -> tuple[float, dict[str, Any]]:
    """(reward, breakdown) for one trajectory. The breakdown has every component,
    every penalty count and the sum before clipping, so a reward can be explained."""
    config = config or RubricConfig()
    if config.mode == "ranked":
        return ranked_reward(traj, config.ranked)
    if config.mode == "outcome":
        return outcome_reward(traj)
    analysis = analyze(traj)
    parts = components(analysis, traj)
    counts = penalty_counts(analysis, traj)
    weights = config.weights.model_dump()
    penalties = config.penalties.model_dump()
    raw = sum(weights[name] * value for name, value in parts.items())
    raw += sum(penalties[name] * count for name, count in counts.items())
    reward = min(config.clip_max, max(config.clip_min, raw))
    breakdown: dict[str, Any] = {
        "components": parts,
        "penalties": counts,
        "raw": raw,
        "reward": reward,
    }
    return reward, breakdown


def flat_breakdown(breakdown: dict[str, Any]) -> dict[str, float]:
    """The breakdown as flat numeric metrics, the shape ART averages and logs."""
    out = {f"rules/{name}": value for name, value in breakdown["components"].items()}
    out |= {f"rules/penalty/{name}": float(count) for name, count in breakdown["penalties"].items()}
    out["rules/raw"] = breakdown["raw"]
    out["rules_reward"] = breakdown["reward"]
    return out


class RulesJudge(Judge):
    """The rule rubric as a judge: absolute, instant, no LLM."""

    name = "rules"

    def __init__(self, config: RubricConfig | None = None, *, concurrency: int = 8) -> None:
        super().__init__(concurrency=concurrency)
        self.config = config or RubricConfig()

    async def _score(self, live: list[Trajectory]) -> None:
        for traj in live:
            reward, breakdown = rule_reward(traj, self.config)
            traj.reward = reward
            traj.metrics.update(flat_breakdown(breakdown))
