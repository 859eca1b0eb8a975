"""mcpgym's contracts: the types every package speaks, and nothing else.

Every package imports these; this package imports none of theirs (only `common`, the shared
utilities below everything). `docs/architecture.md` shows the layers.

- `task`: a task, the calls a right solution makes, the model's calls, their outcomes, the verdict.
- `env`: what the rollout loop needs from an environment (`Environment`, `Episode`).
- `policy`: what it needs from a policy (`Policy`, `PolicyTurn`).
- `record`: the trajectory record, the one JSONL line every stage reads and writes.
- `model_output`: reading what a model wrote (JSON, text) so that garbage is a model error.
"""

from __future__ import annotations

from .env import (
    EnvConfigError,
    EnvInfraError,
    Environment,
    Episode,
    IsolationMode,
    Observation,
    StdioStart,
    StepResult,
    UserTurn,
)
from .model_output import ModelJsonError, loads_model_json, valid_text
from .policy import Policy, PolicyTurn, TokenLogprobs
from .record import StopReason, Trajectory, TrajectoryError, TurnLogprobs, TurnStats, group_id, trajectory_id, utc_now
from .task import ExpectedCall, FollowUp, SetupCall, Task, TaskKind, ToolCall, ToolOutcome, Verdict

__all__ = [
    "EnvConfigError",
    "EnvInfraError",
    "Environment",
    "Episode",
    "ExpectedCall",
    "FollowUp",
    "IsolationMode",
    "ModelJsonError",
    "Observation",
    "Policy",
    "PolicyTurn",
    "SetupCall",
    "StdioStart",
    "StepResult",
    "StopReason",
    "Task",
    "TaskKind",
    "TokenLogprobs",
    "ToolCall",
    "ToolOutcome",
    "Trajectory",
    "TrajectoryError",
    "TurnLogprobs",
    "TurnStats",
    "UserTurn",
    "Verdict",
    "group_id",
    "loads_model_json",
    "trajectory_id",
    "utc_now",
    "valid_text",
]
