"""An MCP client session over newline-delimited JSON-RPC, with no line read whole past a limit.

Both ways of running a stdio server on this machine, a spawned process (`envs.stdio`) and a forked
one (`envs.forkserver`), speak MCP as one JSON-RPC message per line. The MCP SDK's own stdio reader
keeps appending to a line until its newline comes, so a server that writes a 100 MB result (or a
line without end) costs 100 MB or more here. `LineReader` never holds more than the limit: past
it, the rest of the line is counted and dropped, keeping only its first and last bytes to tell
which request it answered, and that request gets a `RESULT_TOO_LARGE` error instead (`envs.limits`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import anyio
import mcp_types
from mcp import ClientSession
from mcp.shared.message import SessionMessage

from .limits import EDGE_BYTES, answered_id, too_large_error

log = logging.getLogger(__name__)

_CHUNK = 64 * 1024
# What reading or writing a session's pipe or socket raises once either side has gone.
_GONE = (ConnectionError, OSError, anyio.BrokenResourceError, anyio.ClosedResourceError)


@dataclass
class Dropped:
    """A line over the limit, read and thrown away: its size and its edges."""

    size: int
    head: bytes
    tail: bytes


class LineReader:
    """Lines of at most `limit` bytes from an asyncio stream; a longer one comes back as `Dropped`."""

    def __init__(self, reader: asyncio.StreamReader, limit: int) -> None:
        self._reader = reader
        self._limit = limit
        self._buffer = bytearray()
        self._eof = False

    async def _fill(self) -> bool:
        if self._eof:
            return False
        chunk = await self._reader.read(_CHUNK)
        if not chunk:
            self._eof = True
            return False
        self._buffer += chunk
        return True

    async def next(self) -> bytes | Dropped | None:
        """The next line (without its newline), a `Dropped` one, or None at the end of the stream."""
        searched = 0
        while True:
            end = self._buffer.find(b"\n", searched)
            if end > self._limit:  # a whole line came in the last chunk, but too long
                with memoryview(self._buffer) as view:
                    dropped = Dropped(end, bytes(view[:EDGE_BYTES]), bytes(view[max(0, end - EDGE_BYTES) : end]))
                del self._buffer[: end + 1]
                return dropped
            if end >= 0:
                with memoryview(self._buffer) as view:
                    line = bytes(view[:end])  # one copy, not a slice's and then bytes'
                del self._buffer[: end + 1]
                return line
            searched = len(self._buffer)
            if len(self._buffer) > self._limit:
                return await self._drop()
            if not await self._fill():
                if self._buffer:  # a last line without its newline
                    line = bytes(self._buffer)
                    self._buffer.clear()
                    return line
                return None

    async def _drop(self) -> Dropped:
        """Read on to the end of the line, keeping only its first and last `EDGE_BYTES`."""
        head = bytes(self._buffer[:EDGE_BYTES])
        size = len(self._buffer)
        tail = bytes(self._buffer[-EDGE_BYTES:])
        self._buffer.clear()
        while True:
            if not await self._fill():
                return Dropped(size, head, tail)
            end = self._buffer.find(b"\n")
            if end >= 0:
                size += end
                tail = (tail + bytes(self._buffer[:end]))[-EDGE_BYTES:]
                del self._buffer[: end + 1]
                return Dropped(size, head, tail)
            size += len(self._buffer)
            tail = (tail + bytes(self._buffer[-EDGE_BYTES:]))[-EDGE_BYTES:]
            self._buffer.clear()


def _parse_line(line: bytes) -> SessionMessage | Exception:
    try:
        return SessionMessage(mcp_types.jsonrpc_message_adapter.validate_json(line, by_name=False))
    except ValueError as exc:  # the session reports it, as the SDK's stdio client does
        return exc


@contextlib.asynccontextmanager
async def line_session(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, limit: int, label: str, **session_kwargs: Any
) -> AsyncIterator[ClientSession]:
    """A `ClientSession` over a server's stdout (`reader`) and stdin (`writer`), each line of its
    answers at most `limit` bytes. The caller closes the streams and stops the server afterwards."""
    lines = LineReader(reader, limit)
    pending: set[int | str] = set()  # ids of our requests not answered yet
    read_in, read_out = anyio.create_memory_object_stream[SessionMessage | Exception](0)
    write_in, write_out = anyio.create_memory_object_stream[SessionMessage](0)

    async def pump_in() -> None:
        async with read_in:  # closing it tells the session the server is gone
            with contextlib.suppress(*_GONE):
                while (line := await lines.next()) is not None:
                    if isinstance(line, Dropped):
                        request_id = answered_id(line.head, line.tail, pending)
                        log.warning("%s sent a message of %d bytes, over the limit of %d", label, line.size, limit)
                        if request_id is None:
                            continue  # nothing waits on it (a notification); an unknown waiter times out
                        pending.discard(request_id)
                        await read_in.send(SessionMessage(too_large_error(request_id, limit)))
                        continue
                    if not line.strip():
                        continue
                    message = _parse_line(line)
                    if isinstance(message, SessionMessage):
                        inner = message.message
                        if isinstance(inner, mcp_types.JSONRPCResponse | mcp_types.JSONRPCError):
                            pending.discard(inner.id)  # type: ignore[arg-type]
                    await read_in.send(message)

    async def pump_out() -> None:
        async with write_out:
            with contextlib.suppress(*_GONE):
                async for message in write_out:
                    if isinstance(message.message, mcp_types.JSONRPCRequest):
                        pending.add(message.message.id)
                    data = message.message.model_dump_json(by_alias=True, exclude_unset=True)
                    writer.write(data.encode() + b"\n")
                    await writer.drain()

    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(pump_in)
            tg.start_soon(pump_out)
            try:
                async with ClientSession(read_out, write_in, **session_kwargs) as session:
                    yield session
            finally:
                tg.cancel_scope.cancel()
    finally:
        read_out.close()
        write_in.close()


async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, grace_s: float) -> None:
    """EOF on the server's stdin (a stdio server exits on it), then read what it still writes until
    it closes its end (at most `grace_s`), so its last words never hit a closed pipe."""
    with anyio.CancelScope(shield=True):
        with contextlib.suppress(OSError, RuntimeError):
            if writer.can_write_eof():
                writer.write_eof()
        with anyio.move_on_after(grace_s), contextlib.suppress(OSError, ConnectionError):
            while await reader.read(_CHUNK):
                pass
        writer.close()
