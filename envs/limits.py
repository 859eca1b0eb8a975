"""How large one message from a server may be, and what a message over that limit becomes.

A tool's result is untrusted: a model can ask a file reader for a 100 MB file, a server can answer
with an endless line. So every transport stops reading a message at `max_output_bytes` (the env's
setting, next to `max_output_chars`, which only cuts what the model is shown): the stdio and fork
line reader (`envs.lines`), the streamable HTTP response body (`envs.http_limit`), and for a
server in this process, the result's content before anything copies it (`content_size`).

What was over the limit is dropped and the request it answered gets a JSON-RPC error with
`RESULT_TOO_LARGE` instead, so only that one call fails. A tool call that fails this way is the
model's (a `tool_error` whose text says the result was too large: it can ask for less); a
`tools/list` or `initialize` that fails this way is the server's (an infrastructure error).
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection

import mcp_types

# JSON-RPC leaves -32000..-32099 to implementations; MCP uses a few of them, not this one.
RESULT_TOO_LARGE = -32070
DEFAULT_MAX_OUTPUT_BYTES = 8 * 1024 * 1024
# How much of a dropped message's start and end is kept to find the id of the request it answered.
EDGE_BYTES = 512

_ID = rb'(-?\d+|"(?:[^"\\]|\\.)*")'
# The id as the first member (the Python SDK writes jsonrpc, id, result) or the last (the TypeScript
# SDK writes result, jsonrpc, id); anchored to the message's edges, so a nested "id" never matches.
_HEAD_ID = re.compile(rb'\A\s*\{\s*(?:"jsonrpc"\s*:\s*"2\.0"\s*,\s*)?"id"\s*:\s*' + _ID)
_TAIL_ID = re.compile(rb'"id"\s*:\s*' + _ID + rb'\s*(?:,\s*"jsonrpc"\s*:\s*"2\.0"\s*)?\}\s*\Z')


class ResultTooLarge(Exception):
    """A tool's result was over `max_output_bytes`: dropped unread, the model is told why."""


def too_large_text(limit: int) -> str:
    return f"the server's answer is larger than {limit} bytes (max_output_bytes), so it was dropped"


def too_large_error(request_id: int | str, limit: int) -> mcp_types.JSONRPCError:
    """The error that stands in for an answer over the limit."""
    error = mcp_types.ErrorData(code=RESULT_TOO_LARGE, message=too_large_text(limit))
    return mcp_types.JSONRPCError(jsonrpc="2.0", id=request_id, error=error)


def answered_id(head: bytes, tail: bytes, pending: Collection[int | str]) -> int | str | None:
    """Which pending request a dropped message answered, from its first and last bytes: the id
    found at either edge when it is pending, else the only pending request, else None."""
    for pattern, edge in ((_HEAD_ID, head), (_TAIL_ID, tail)):
        found = pattern.search(edge)
        if found is not None:
            try:
                value = json.loads(found.group(1))
            except ValueError:
                continue
            if value in pending:
                return value
    if len(pending) == 1:
        return next(iter(pending))
    return None


def content_size(result: mcp_types.CallToolResult) -> int:
    """The size of a result's content as characters of its text and data, without copying any of it
    (for a server in this process, where nothing was read from a wire)."""
    size = 0
    for block in result.content:
        for attribute in ("text", "data"):
            value = getattr(block, attribute, None)
            if isinstance(value, str):
                size += len(value)
        resource = getattr(block, "resource", None)
        for attribute in ("text", "blob"):
            value = getattr(resource, attribute, None)
            if isinstance(value, str):
                size += len(value)
    return size
