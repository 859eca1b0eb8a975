"""The BFCL multi-turn APIs as one MCP server: every API's functions as tools, state per session.

    python -m envs.bfcl_mt.server --transport stdio
    python -m envs.bfcl_mt.server --transport http --port 8004   # MCP at /mcp, health at /health

The tools are the functions of the leaderboard's eight simulated APIs (GorillaFileSystem,
MathAPI, MessageAPI, TwitterAPI, TicketAPI, TradingBot, TravelAPI, VehicleControlAPI; no two
share a function name), with the schemas of the leaderboard's function docs. Each MCP session
holds its own API instances, which the hidden tool `bfcl_load_scenario` creates from an entry's
`initial_config` (by entry id, or given whole) exactly as the leaderboard's execution does, so
one server process serves any number of concurrent episodes without sharing state (the env's
`per_session` isolation); the instances live as long as the session's connection.

A call runs the API method with the model's arguments as they are (no schema check: the
leaderboard executes whatever the model wrote) and answers what the leaderboard's
`execute_multi_turn_func_call` would: a string as is, a dict as JSON, anything else as `str()`,
and an exception as `Error during execution: <message>` (an MCP error result). A function of
an API the session's scenario does not involve answers as the leaderboard's `eval` would, with
the NameError of an undefined name.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import mcp_types
from fastmcp import Context, FastMCP
from fastmcp.server.dependencies import get_context
from fastmcp.tools import Tool
from fastmcp.tools.base import ToolResult
from pydantic import PrivateAttr

from . import data
from .executor import ERROR_PREFIX, format_result
from .schemas import tool_schema

SETUP_TOOL = "bfcl_load_scenario"
# envs.mcp_env.HIDDEN_META: the env never shows this tool to the model (not imported: a server
# process need not load the env's client stack).
HIDDEN = {"mcpgym/hidden": True}
INSTRUCTIONS = "The Berkeley Function Calling Leaderboard's multi-turn APIs; each session holds its own state."
_SLOT = "bfcl_instances"


class SessionState:
    """Each MCP session's API instances. Kept on the session's connection (freed with it);
    transports without one fall back to a bounded table by session id."""

    def __init__(self, max_fallback: int = 1024) -> None:
        self._fallback: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._max = max_fallback

    def _slot(self, ctx: Context) -> dict[str, Any]:
        connection = getattr(ctx.session, "_connection", None)
        state = getattr(connection, "state", None)
        if isinstance(state, dict):
            return state
        slot = self._fallback.setdefault(ctx.session_id, {})
        self._fallback.move_to_end(ctx.session_id)
        while len(self._fallback) > self._max:
            self._fallback.popitem(last=False)
        return slot

    def get(self, ctx: Context) -> dict[str, Any] | None:
        return self._slot(ctx).get(_SLOT)

    def put(self, ctx: Context, instances: dict[str, Any]) -> None:
        self._slot(ctx)[_SLOT] = instances


def execute(instance: Any, method: str, arguments: dict[str, Any]) -> tuple[str, bool]:
    """(the tool message, whether it is an execution error) for one call."""
    try:
        result = getattr(instance, method)(**arguments)
    except Exception as exc:
        return f"{ERROR_PREFIX}{exc}", True
    return format_result(result), False


class ApiTool(Tool):
    """One API function as an MCP tool, run on the calling session's instance of its class."""

    api_class: str
    _state: SessionState = PrivateAttr()

    def bind(self, state: SessionState) -> ApiTool:
        self._state = state
        return self

    async def run(self, arguments: dict[str, Any]) -> ToolResult:
        instances = self._state.get(get_context())
        if instances is None:
            text, error = f"{ERROR_PREFIX}no scenario is loaded in this session (call {SETUP_TOOL})", True
        elif self.api_class not in instances:
            text, error = f"{ERROR_PREFIX}name '{self.name}' is not defined", True
        else:
            text, error = execute(instances[self.api_class], self.name, dict(arguments or {}))
        return ToolResult(content=[mcp_types.TextContent(type="text", text=text)], is_error=error)


def load_instances(
    entry_id: str | None, initial_config: dict[str, Any] | None, involved_classes: list[str] | None, long_context: bool
) -> dict[str, Any]:
    """The instances of a scenario: an entry's (by id), or one given whole."""
    if entry_id is not None:
        found = data.entry(entry_id)
        initial_config, involved_classes = found["initial_config"], found["involved_classes"]
        long_context = data.is_long_context(entry_id)
    if involved_classes is None:
        raise ValueError("give entry_id, or involved_classes (and initial_config)")
    unknown = [name for name in involved_classes if name not in data.API_CLASSES]
    if unknown:
        raise ValueError(f"unknown API classes {unknown} (known: {', '.join(data.API_CLASSES)})")
    config = initial_config or {}
    return {name: data.new_instance(name, config, long_context=long_context) for name in involved_classes}


def build_server(name: str = "bfcl-multi-turn") -> FastMCP:
    """A new server with every API's tools (the in-process factory of the env)."""
    mcp = FastMCP(name, instructions=INSTRUCTIONS)
    state = SessionState()
    for class_name in data.API_CLASSES:
        for doc in data.func_docs(class_name):
            description, parameters = tool_schema(doc)
            tool = ApiTool(name=doc["name"], description=description, parameters=parameters, api_class=class_name)
            mcp.add_tool(tool.bind(state))

    @mcp.tool(name=SETUP_TOOL, meta=HIDDEN)
    async def load_scenario(
        ctx: Context,
        entry_id: str | None = None,
        initial_config: dict[str, Any] | None = None,
        involved_classes: list[str] | None = None,
        long_context: bool = False,
    ) -> dict[str, Any]:
        """Start this session over from a scenario: a BFCL entry's (`entry_id`), or one given
        whole. Replaces whatever state the session had."""
        instances = load_instances(entry_id, initial_config, involved_classes, long_context)
        state.put(ctx, instances)
        return {"loaded": list(instances)}

    return mcp


def main(argv: list[str] | None = None) -> None:
    from envs.serve_mcp import serve_main

    description = __doc__.split("\n\n")[0]
    serve_main(build_server, prog="python -m envs.bfcl_mt.server", description=description, port=8004, argv=argv)


if __name__ == "__main__":
    main()
