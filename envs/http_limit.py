"""Streamable HTTP answers read up to `max_output_bytes`, never whole past it.

The MCP SDK reads a server-sent event up to a limit it is given (`max_sse_event_size`: past it the
request fails with an "exceeded the N byte limit" error, which `envs.pool` turns into
`ResultTooLarge`), but reads a plain JSON answer whole. The client mcpgym builds for a server
therefore asks for uncompressed answers (a compressed one could inflate past any limit) and wraps
each JSON answer's body: past the limit it stops reading and the body becomes a JSON-RPC error
with `RESULT_TOO_LARGE` for the request it answers (`envs.limits`). A JSON answer compressed all
the same is not read: its request fails with an error that says why (a tool error, as any error a
server answers a call with).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable

import httpx2
import mcp_types

from .limits import RESULT_TOO_LARGE, too_large_error

# Asked of every server: an answer's size on the wire is then its size in memory.
IDENTITY = {"Accept-Encoding": "identity"}


def _request_id(request: httpx2.Request) -> int | str | None:
    """The JSON-RPC id of the request a POST carried (small: mcpgym wrote it)."""
    try:
        body = json.loads(request.content)
    except (ValueError, httpx2.RequestNotRead):
        return None
    value = body.get("id") if isinstance(body, dict) else None
    return value if isinstance(value, int | str) and not isinstance(value, bool) else None


def _error_body(error: mcp_types.JSONRPCError | None) -> bytes:
    if error is None:
        return b""  # no request waits on it: the SDK drops what it cannot parse
    return error.model_dump_json(by_alias=True, exclude_unset=True).encode()


class CappedJsonBody(httpx2.AsyncByteStream):
    """A JSON answer's body, read to at most `limit` bytes; past it, the stand-in error instead."""

    def __init__(self, raw: httpx2.AsyncByteStream, *, limit: int, request_id: int | str | None) -> None:
        self._raw = raw
        self._limit = limit
        self._request_id = request_id

    async def __aiter__(self) -> AsyncIterator[bytes]:
        body = bytearray()
        async for chunk in self._raw:
            body += chunk
            if len(body) > self._limit:
                body.clear()
                request_id = self._request_id
                yield _error_body(None if request_id is None else too_large_error(request_id, self._limit))
                return  # the rest is never read: closing the response drops the connection
        yield bytes(body)

    async def aclose(self) -> None:
        await self._raw.aclose()


class RefusedBody(httpx2.AsyncByteStream):
    """A compressed answer, which mcpgym asked not to get: not read at all."""

    def __init__(self, raw: httpx2.AsyncByteStream, *, body: bytes) -> None:
        self._raw = raw
        self._body = body

    async def __aiter__(self) -> AsyncIterator[bytes]:
        yield self._body

    async def aclose(self) -> None:
        await self._raw.aclose()


def cap_json_answers(limit: int) -> Callable[[httpx2.Response], Awaitable[None]]:
    """An httpx2 response hook that bounds every JSON answer's body to `limit` bytes."""

    async def hook(response: httpx2.Response) -> None:
        if not response.headers.get("content-type", "").lower().startswith("application/json"):
            return  # event streams: the SDK bounds each event
        request_id = _request_id(response.request)
        encodings = [
            value.strip().lower()
            for value in response.headers.get_list("content-encoding", split_commas=True)
            if value.strip().lower() not in ("", "identity")
        ]
        if encodings:
            error = None
            if request_id is not None:
                message = f"the server compressed its answer ({', '.join(encodings)}) though mcpgym asked it not to"
                data = mcp_types.ErrorData(code=mcp_types.INTERNAL_ERROR, message=message)
                error = mcp_types.JSONRPCError(jsonrpc="2.0", id=request_id, error=data)
            del response.headers["content-encoding"]
            response.stream = RefusedBody(response.stream, body=_error_body(error))
            return
        response.stream = CappedJsonBody(response.stream, limit=limit, request_id=request_id)

    return hook


__all__ = ["IDENTITY", "RESULT_TOO_LARGE", "CappedJsonBody", "cap_json_answers"]
