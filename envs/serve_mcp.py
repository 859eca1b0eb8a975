"""`python -m` for a bundled FastMCP server: stdio (default) or HTTP with a `/health` route."""

from __future__ import annotations

from collections.abc import Callable

from fastmcp import FastMCP

from common.cli import ArgumentParser


def add_health(mcp: FastMCP) -> None:
    """GET /health and /mcp/health answer {"status": "ok"} (what start-up checks poll)."""
    from starlette.requests import Request
    from starlette.responses import JSONResponse

    async def health(request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok", "server": mcp.name})

    mcp.custom_route("/health", methods=["GET"])(health)
    mcp.custom_route("/mcp/health", methods=["GET"])(health)


def serve_main(
    build: Callable[[], FastMCP], *, prog: str, description: str, port: int, argv: list[str] | None = None
) -> None:
    """Parse `--transport/--host/--port` and run the server `build()` makes."""
    parser = ArgumentParser(prog=prog, description=description)
    parser.add_argument("--transport", choices=["stdio", "http"], default="stdio", help="MCP transport")
    parser.add_argument("--host", default="127.0.0.1", help="HTTP bind address")
    parser.add_argument("--port", type=int, default=port, help="HTTP port")
    args = parser.parse_args(argv)
    mcp = build()
    if args.transport == "stdio":
        mcp.run(transport="stdio", show_banner=False, log_level="WARNING")
        return
    add_health(mcp)
    mcp.run(transport="http", host=args.host, port=args.port, show_banner=False, log_level="WARNING")
