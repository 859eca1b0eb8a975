"""The built-in energy environment: natural gas markets behind a real FastMCP server.

    env = envs.load("energy")             # or envs.energy.load_env(isolation="per_process")

Tools read deterministic bundled data (data/energy.json, made by gen_data.py);
`book_capacity` keeps per-session state, so the default isolation is
`per_session`. Tasks: data/tasks.jsonl with splits train/val/test.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

TASKS_FILE = Path(__file__).parent / "data" / "tasks.jsonl"
SYSTEM_PROMPT = (
    "You are a natural gas market analyst. Use the tools to look up data and to convert units; "
    "call several tools at once when they do not depend on each other. "
    "If no tool is needed, answer directly. Give the final answer with its number and unit."
)


def load_env(**options: Any) -> Any:
    """An `MCPEnv` over in-process energy servers (not started). Options go to `MCPEnv`."""
    from envs.mcp_env import MCPEnv
    from envs.verify import verify_answer

    from .server import build_server

    options.setdefault("name", "energy")
    options.setdefault("tasks", TASKS_FILE)
    options.setdefault("system_prompt", SYSTEM_PROMPT)
    options.setdefault("verifier", verify_answer)
    # Its tasks list the calls a right solution makes, so the ranked rules reward can tell a
    # failure that did most of the work from one that did none.
    options.setdefault("default_judge", "rules")
    return MCPEnv(build_server, **options)


__all__ = ["SYSTEM_PROMPT", "TASKS_FILE", "load_env"]
