"""The weighted rule rubric: a reward from what the trajectory did, no LLM needed.

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
or no final answer within the turn/token budget).

Configured by `RubricConfig`, from Python or a YAML/JSON file:

    weights: {task_completion: 0.5, tool_accuracy: 0.2, param_accuracy: 0.1, efficiency: 0.1, timing: 0.1}
    penalties: {wrong_tool: -0.3}
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

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


class RubricConfig(BaseModel):
    """The rule rubric. Unknown keys are an error, so a typo in a file cannot silently do nothing."""

    model_config = ConfigDict(extra="forbid")

    weights: RubricWeights = Field(default_factory=RubricWeights)
    penalties: RubricPenalties = Field(default_factory=RubricPenalties)
    clip_min: float = -1.0
    clip_max: float = 1.0

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


def rule_reward(traj: Trajectory, config: RubricConfig | None = None) -> tuple[float, dict[str, Any]]:
    """(reward, breakdown) for one trajectory. The breakdown has every component,
    every penalty count and the weighted sum before clipping, so a reward can be explained."""
    config = config or RubricConfig()
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
