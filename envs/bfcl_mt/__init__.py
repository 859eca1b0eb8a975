"""The Berkeley Function Calling Leaderboard's multi-turn categories as an mcpgym environment.

    env = envs.load("bfcl-multi-turn")                     # all four categories, in-process server
    env = envs.load("bfcl-multi-turn", categories=["multi_turn_base"], partial_credit=True)

The leaderboard's eight stateful APIs are one MCP server (`envs.bfcl_mt.server`: in-process
here; `python -m envs.bfcl_mt.server --transport stdio|http` out of process, passed as
`servers=`), each MCP session with its own instances (`per_session` isolation: one server
process for any number of concurrent episodes). A task (`envs.bfcl_mt.tasks`) is one entry: its
setup call loads the entry's scenario into the episode's session, its follow-ups are the later
user turns (`miss_func` adding the held-out functions at their turn), and the verdict is the
leaderboard's `multi_turn_checker` on the model's calls of each user turn, ported onto an
executor that never `eval`s a model's text (`envs.bfcl_mt.scoring`; `partial_credit=True`: the
share of turns passed as the score).

As the leaderboard runs it: calls of one step run one after another in call order, arguments
go to the APIs unchecked, results are never cut, no system prompt (its FC mode sends none), and a user turn in which
the model makes calls in more than 20 steps ends the conversation (use `max_turns` >= 21 per
user turn in the rollout to give the model the leaderboard's room). Splits: `train` (600),
`test` (200; entry numbers divisible by 4), `all` (800).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from .data import CATEGORIES, MAXIMUM_STEP_LIMIT

# Policy turns per user turn that give the model the leaderboard's room (20 steps, then a 21st turn).
LEADERBOARD_MAX_TURNS = MAXIMUM_STEP_LIMIT + 1


def load_env(
    categories: Iterable[str] | str | None = None,
    partial_credit: bool = False,
    **options: Any,
) -> Any:
    """An `MCPEnv` over the BFCL multi-turn server (not started). `categories`: names or a
    comma-separated string (default all four; `multi_turn` means all). Other options go to `MCPEnv`
    (`servers=` an HTTP URL or `StdioServer` of `envs.bfcl_mt.server` instead of in-process)."""
    from contracts import EnvConfigError
    from envs.mcp_env import MCPEnv

    from .scoring import make_verifier
    from .server import build_server
    from .tasks import TaskLoader

    if categories is None or categories == "multi_turn":
        chosen = list(CATEGORIES)
    elif isinstance(categories, str):
        chosen = [c.strip() for c in categories.split(",") if c.strip()]
        chosen = list(CATEGORIES) if chosen == ["multi_turn"] else chosen
    else:
        chosen = list(categories)
    if options.get("isolation") == "shared":  # one session for every episode: their states would mix
        raise EnvConfigError("env 'bfcl-multi-turn' keeps each episode's state: isolation per_session or per_process")
    servers = options.pop("servers", build_server)
    options.setdefault("name", "bfcl-multi-turn")
    options.setdefault("tasks", TaskLoader(chosen))
    options.setdefault("verifier", make_verifier(partial=partial_credit))
    options.setdefault("default_judge", "env")  # the leaderboard's checker is the reward; no expected calls
    options.setdefault("isolation", "per_session")
    options.setdefault("check_arguments", False)
    options.setdefault("parallel_calls", False)
    options.setdefault("user_turn_step_limit", MAXIMUM_STEP_LIMIT)
    options.setdefault("max_output_chars", 0)  # the leaderboard never cuts a result (long_context ones are long)
    return MCPEnv(servers, **options)


__all__ = ["CATEGORIES", "LEADERBOARD_MAX_TURNS", "MAXIMUM_STEP_LIMIT", "load_env"]
