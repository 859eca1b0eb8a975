"""Rollouts: a policy behind an OpenAI-compatible API against an env, many at once.

    policy = ChatPolicy(PolicyConfig(base_url="http://localhost:8000/v1", model="Qwen3-8B"))
    result = await run_rollouts(env, policy, env.tasks("train"), samples=4, out="data/trajectories.jsonl")

CLIs: `python -m rollouts.generate`, `python -m rollouts.questions`, `python -m rollouts.export`.
"""

from contracts import PolicyTurn, TokenLogprobs, Trajectory, TrajectoryError, TurnStats, trajectory_id

from .endpoints import EndpointPool, EndpointStats, parse_base_urls
from .errors import is_transient
from .parse import ParsedReply, history_for_request, parse_reply, split_think
from .policy import ChatPolicy, PolicyConfig
from .rollout import Policy, RetryConfig, rollout
from .runner import RunResult, run_rollouts
from .stats import RunStats, compute_stats
from .tracing import setup_tracing, traced

# The CLI modules load on first use, so `python -m rollouts.export` does not
# import itself twice (runpy warns when the package already imported it).
_LAZY = {
    "ExportResult": "export",
    "export_file": "export",
    "llamafactory_to_messages": "export",
    "to_llamafactory": "export",
    "to_openai": "export",
    "to_swift": "export",
    "to_trl": "export",
    "generate_questions": "questions",
    "load_questions": "questions",
}


def __getattr__(name: str) -> object:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "ChatPolicy",
    "EndpointPool",
    "EndpointStats",
    "ExportResult",
    "ParsedReply",
    "Policy",
    "PolicyConfig",
    "PolicyTurn",
    "RetryConfig",
    "RunResult",
    "RunStats",
    "TokenLogprobs",
    "Trajectory",
    "TrajectoryError",
    "TurnStats",
    "compute_stats",
    "export_file",
    "generate_questions",
    "history_for_request",
    "is_transient",
    "llamafactory_to_messages",
    "load_questions",
    "parse_base_urls",
    "parse_reply",
    "rollout",
    "run_rollouts",
    "setup_tracing",
    "split_think",
    "to_llamafactory",
    "to_openai",
    "to_swift",
    "to_trl",
    "traced",
    "trajectory_id",
]
