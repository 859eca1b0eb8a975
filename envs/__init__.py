"""mcpgym environments: any MCP server as an async, gym-like environment.

    import envs
    env = envs.load("energy")                 # or "pkg.module:factory", "path/to/mcp.json"
    async with env:
        async with env.episode() as ep:
            obs = await ep.reset(env.tasks("train")[0])
            result = await ep.step(tool_calls)

The contracts (`Task`, `ToolCall`, `Observation`, `StepResult`, ...) load at
once; `MCPEnv`, `load` and the config models load on first use, so importing a
contract does not pay for the MCP client stack.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from contracts import (
    EnvConfigError,
    EnvInfraError,
    Environment,
    Episode,
    ExpectedCall,
    IsolationMode,
    Observation,
    StepResult,
    Task,
    TaskKind,
    ToolCall,
    ToolOutcome,
    UserTurn,
    Verdict,
)

if TYPE_CHECKING:
    from .config import HttpServer, McpConfig, StdioServer, load_mcp_config
    from .mcp_env import MCPEnv, MCPEpisode
    from .registry import available, load
    from .tasks import read_tasks_file

_LAZY = {
    "MCPEnv": ".mcp_env",
    "MCPEpisode": ".mcp_env",
    "load": ".registry",
    "available": ".registry",
    "StdioServer": ".config",
    "HttpServer": ".config",
    "McpConfig": ".config",
    "load_mcp_config": ".config",
    "read_tasks_file": ".tasks",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'envs' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


__all__ = [
    "EnvConfigError",
    "EnvInfraError",
    "Environment",
    "Episode",
    "ExpectedCall",
    "HttpServer",
    "IsolationMode",
    "MCPEnv",
    "MCPEpisode",
    "McpConfig",
    "Observation",
    "StdioServer",
    "StepResult",
    "Task",
    "TaskKind",
    "ToolCall",
    "ToolOutcome",
    "UserTurn",
    "Verdict",
    "available",
    "load",
    "load_mcp_config",
    "read_tasks_file",
]
