"""The MCP server the env benchmark talks to: `add`, and `book` (state per session).

`build_server()` returns a new instance each call (an in-process factory).
As a process: `python scripts/_bench_mcp_server.py --transport stdio|http --port N`
(HTTP serves GET /health). It imports nothing but fastmcp so any cwd works.
"""

from __future__ import annotations

import argparse

from fastmcp import Context, FastMCP


def build_server() -> FastMCP:
    mcp = FastMCP("bench")

    @mcp.tool
    def add(a: int, b: int) -> int:
        """Add two integers."""
        return a + b

    @mcp.tool
    async def book(amount: int, ctx: Context) -> int:
        """Book capacity; returns this session's total."""
        total = (await ctx.get_state("booked") or 0) + amount
        await ctx.set_state("booked", total)
        return total

    return mcp


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--transport", choices=["stdio", "http"], default="stdio")
    parser.add_argument("--port", type=int, default=8012)
    args = parser.parse_args()
    mcp = build_server()
    if args.transport == "stdio":
        mcp.run(transport="stdio", show_banner=False, log_level="WARNING")
        return
    from starlette.requests import Request
    from starlette.responses import JSONResponse

    @mcp.custom_route("/health", methods=["GET"])
    async def health(request: Request) -> JSONResponse:
        return JSONResponse({"ok": True})

    mcp.run(transport="http", host="127.0.0.1", port=args.port, show_banner=False, log_level="WARNING")


if __name__ == "__main__":
    main()
