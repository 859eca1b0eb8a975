"""Open MCP client sessions and keep them ready: connections, servers, pools.

A `Connection` is one MCP client session held open by a background task, so
the transport's task groups and cancel scopes are entered and left in one task
while any task may send requests on it. Sessions are opened once and reused;
nothing here opens a session per call.

Connections use the *handshake-era* protocol (`initialize`), not the 2026-07-28
sessionless era fastmcp's `Client` negotiates by default: there, every request
is its own connection and a server cannot keep state between two calls of one
rollout. On a handshake session `ctx.session_id` and `ctx.get_state` /
`ctx.set_state` last for the whole session, which is what `per_session`
isolation relies on.

A `ServerHandle` knows how to reach one named server (an in-process FastMCP
object or factory, a stdio command, an HTTP URL). A `SharedConnection` is the
one session of `shared` isolation; a `FreshPool` hands each episode its own
new session (or new server), keeping at least `warm_pool` of them started (and
initialized) ahead of need, and as many as episodes ran at once, so the start
overlaps other work. A fresh Python stdio server is forked by the
handle's `ForkServer` (`envs.forkserver`) rather than spawned, unless
`stdio_start="spawn"`; a spawned one is started by `envs.stdio`. Neither outlives
mcpgym, and no answer of any server is read past `max_output_bytes` (`envs.limits`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
from collections import deque
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, Literal

import anyio
import httpx2
import mcp_types
from fastmcp import FastMCP
from fastmcp.client.transports import ClientTransport, FastMCPTransport, SSETransport, StdioTransport
from mcp import ClientSession, MCPError
from mcp.client.streamable_http import streamable_http_client
from pydantic import ValidationError

from contracts import EnvConfigError, EnvInfraError, IsolationMode, StdioStart

from .config import HttpServer, StdioServer, redact
from .episode_dir import EpisodeSpace, bind
from .forkserver import ForkServer, ForkTransport, use_fork
from .http_limit import IDENTITY, cap_json_answers
from .limits import DEFAULT_MAX_OUTPUT_BYTES, RESULT_TOO_LARGE, ResultTooLarge, content_size, too_large_text
from .sandbox import Sandbox
from .stdio import SpawnTransport

log = logging.getLogger(__name__)

ServerKind = Literal["object", "factory", "stdio", "http", "sse"]
CLIENT_INFO = mcp_types.Implementation(name="mcpgym", version="0.1.0")
# How much longer than the per-call timeout a call may block before we give up on
# it from the outside (covers a write that blocks before the request clock starts).
_CALL_GRACE_S = 2.0
# How the MCP SDK fails a request whose server-sent event ran past `max_sse_event_size`.
_SSE_EVENT_LIMIT = re.compile(r"exceeded the \d+ byte limit")


class CallTimeout(Exception):
    """A tool call ran past its timeout: the model is told, the episode goes on."""


def leaf_error(exc: BaseException) -> BaseException:
    """The first real error inside (nested) exception groups."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc


def _os_reason(exc: BaseException) -> str | None:
    """What the OS said, from the chain under an error ("connection refused"): an HTTP client's
    own message ("All connection attempts failed") does not say why."""
    seen: BaseException | None = exc
    for _ in range(10):
        if seen is None:
            return None
        errno = getattr(seen, "errno", None)
        if isinstance(seen, OSError) and isinstance(errno, int):
            return os.strerror(errno).lower()
        seen = seen.__cause__ or seen.__context__
    return None


def describe_error(exc: BaseException) -> str:
    """One line for an exception, looking through exception groups to the cause."""
    exc = leaf_error(exc)
    cause = exc.__cause__
    text = str(exc) or type(exc).__name__
    if isinstance(exc, EnvInfraError):
        return text.splitlines()[0]  # ours: already the whole line, its cause redacted into it
    if isinstance(exc, RuntimeError) and cause is not None and str(cause):
        text = f"{text}: {cause}"
    text = text.splitlines()[0] if text else type(exc).__name__
    reason = _os_reason(exc)
    if reason and reason not in text.lower():
        text = f"{text} ({reason})"
    return text


class Connection:
    """One MCP client session on one server, open until `aclose()`."""

    def __init__(
        self,
        server: str,
        transport: ClientTransport,
        *,
        instance: FastMCP | None = None,
        label: str | None = None,
        redactions: list[tuple[str, str]] | None = None,
        max_output_bytes: int = DEFAULT_MAX_OUTPUT_BYTES,
        on_close: Callable[[], None] | None = None,
    ) -> None:
        self.server = server
        self._on_close = on_close  # after the session (and its server) ended: remove its episode folder
        self.max_output_bytes = max_output_bytes
        # How errors name the server: its name, and for a stdio/HTTP server its command or URL and config file.
        self.label = label or f"server '{server}'"
        # Secrets (a header's token, a URL's key) that a transport's own error text may quote.
        self._redactions = redactions or []
        self.instance = instance  # the in-process server this session talks to, if fresh
        self._transport = transport
        self._session: Any = None
        self._ready = anyio.Event()
        self._stop = anyio.Event()
        self._holder: asyncio.Task[None] | None = None
        self._dead_reason: str | None = None

    async def open(self, timeout_s: float) -> Connection:
        self._holder = asyncio.create_task(self._hold(), name=f"mcp-session:{self.server}")
        try:
            with anyio.fail_after(timeout_s):
                await self._ready.wait()
        except TimeoutError:
            await self.aclose()
            raise EnvInfraError(f"{self.label} did not start within {timeout_s:g} s") from None
        except BaseException:
            await self.aclose()
            raise
        if self._session is None:
            # `_hold` sets ready in its `finally`, a step before the task is done.
            await asyncio.wait({self._holder}, timeout=5)
            exc = self._holder.exception() if self._holder.done() and not self._holder.cancelled() else None
            leaf = leaf_error(exc) if exc is not None else None
            if leaf is None or (isinstance(leaf, MCPError) and leaf.code == mcp_types.CONNECTION_CLOSED):
                reason = "the server closed the connection during start-up (see its stderr)"
            else:
                reason = redact(describe_error(exc), self._redactions)
            await self.aclose()
            error = EnvInfraError(f"{self.label} failed to start: {reason}")
            # The cause's own text may quote a secret (a URL's key): not chained where one is known.
            raise error from (None if self._redactions else exc)
        return self

    async def _hold(self) -> None:
        try:
            async with self._transport.connect_session(client_info=CLIENT_INFO) as session:
                await session.initialize()
                self._session = session
                self._ready.set()
                await self._stop.wait()
        finally:
            self._dead_reason = self._dead_reason or "session closed"
            self._ready.set()

    @property
    def alive(self) -> bool:
        """Whether the session can still serve. Asked before a pooled session is handed out, so a
        warm spare whose server died while it waited is replaced, not given to an episode."""
        if self._session is None or self._dead_reason is not None:
            return False
        # A transport that can tell its server is gone (a forked stdio child) says so at once.
        if not getattr(self._transport, "alive", True):
            return False
        # The SDK's session marks its dispatcher closed when the stream ends (a stdio server that
        # exited, an HTTP stream cut); fastmcp's own stdio transport reads the same flag.
        dispatcher = getattr(self._session, "_dispatcher", None)
        return not getattr(dispatcher, "_closed", False)

    def _infra(self, reason: str) -> EnvInfraError:
        reason = redact(reason, self._redactions)
        self._dead_reason = reason
        return EnvInfraError(f"{self.label}: {reason}")

    async def list_tools(self, timeout_s: float) -> list[mcp_types.Tool]:
        tools: list[mcp_types.Tool] = []
        cursor: str | None = None
        try:
            with anyio.fail_after(timeout_s):
                while True:
                    params = mcp_types.PaginatedRequestParams(cursor=cursor) if cursor else None
                    page = await self._session.list_tools(params=params)
                    tools.extend(page.tools)
                    cursor = page.next_cursor
                    if not cursor:
                        return tools
        except TimeoutError:
            raise self._infra(f"tools/list did not answer within {timeout_s:g} s") from None
        except MCPError as exc:
            raise self._infra(f"tools/list failed: {exc.message}") from None

    async def call(self, name: str, arguments: dict[str, Any], timeout_s: float) -> mcp_types.CallToolResult:
        """Call a tool. Raises CallTimeout, ResultTooLarge (its answer was over `max_output_bytes`),
        EnvInfraError (the connection is gone or spoke nonsense) or MCPError (the server refused
        this one call)."""
        if self._dead_reason is not None:
            raise EnvInfraError(f"{self.label}: {self._dead_reason}")
        request = mcp_types.CallToolRequest(params=mcp_types.CallToolRequestParams(name=name, arguments=arguments))
        try:
            with anyio.move_on_after(timeout_s + _CALL_GRACE_S) as scope:
                result = await self._session.send_request(
                    request, mcp_types.CallToolResult, request_read_timeout_seconds=timeout_s
                )
        except MCPError as exc:
            if exc.code == mcp_types.REQUEST_TIMEOUT:
                raise CallTimeout() from None
            if exc.code == RESULT_TOO_LARGE or (
                exc.code == mcp_types.CONNECTION_CLOSED and _SSE_EVENT_LIMIT.search(exc.message)
            ):
                raise ResultTooLarge(too_large_text(self.max_output_bytes)) from None
            if exc.code == mcp_types.CONNECTION_CLOSED:
                raise self._infra("connection closed (the server exited or dropped the session)") from None
            raise
        except ValidationError as exc:
            raise self._infra(f"protocol error: malformed tools/call result ({describe_error(exc)})") from None
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError) as exc:
            raise self._infra(f"connection lost: {describe_error(exc)}") from None
        if scope.cancelled_caught:
            raise CallTimeout()
        # Read off a wire, it fit the limit already; from a server in this process, it is checked here,
        # before the env copies any of it into the model's text.
        if content_size(result) > self.max_output_bytes:
            raise ResultTooLarge(too_large_text(self.max_output_bytes))
        return result

    async def aclose(self) -> None:
        try:
            await self._close()
        finally:
            on_close, self._on_close = self._on_close, None
            if on_close is not None:
                with anyio.CancelScope(shield=True):
                    await anyio.to_thread.run_sync(on_close)  # a big folder's removal never stalls the loop

    async def _close(self) -> None:
        self._dead_reason = self._dead_reason or "closed"
        self._stop.set()
        holder = self._holder
        if holder is None:
            return
        if not holder.done() and self._session is None:
            holder.cancel()  # still starting (maybe hung in initialize): nothing to stop cleanly
        if not holder.done():
            # A clean stop closes stdin and lets the server exit; the stdio client
            # escalates to SIGTERM/SIGKILL on its own, this bound is a backstop.
            with anyio.CancelScope(shield=True), anyio.move_on_after(10):
                await asyncio.wait({holder})
            if not holder.done():
                holder.cancel()
                with anyio.CancelScope(shield=True), anyio.move_on_after(5):
                    await asyncio.wait({holder})
        if holder.done() and not holder.cancelled():
            exc = holder.exception()
            if exc is not None:
                log.debug("session of %s ended with %s", self.label, redact(describe_error(exc), self._redactions))


class SharedClientHttpTransport(ClientTransport):
    """Streamable-HTTP sessions over one shared HTTP client.

    fastmcp's `StreamableHttpTransport` builds a new HTTP client per session
    (a TLS context and a connection pool: most of a session's cost); with one
    client per server a new MCP session costs only its own requests."""

    def __init__(self, url: str, client: httpx2.AsyncClient, max_output_bytes: int) -> None:
        self.url = url
        self._client = client
        self._max_bytes = max_output_bytes

    @contextlib.asynccontextmanager
    async def connect_session(self, *, transport_options: Any = None, **session_kwargs: Any) -> AsyncIterator[Any]:
        async with (
            # An event over the limit fails its request; a JSON answer is bounded by the client's hook.
            streamable_http_client(self.url, http_client=self._client, max_sse_event_size=self._max_bytes) as (
                read,
                write,
            ),
            ClientSession(read, write, **session_kwargs) as session,
        ):
            yield session


class ServerHandle:
    """How to reach one named server, and what a fresh one means for it."""

    def __init__(
        self,
        name: str,
        target: Any,
        *,
        server_log: Path | None = None,
        stdio_start: StdioStart = "auto",
        startup_timeout_s: float = 30.0,
        max_output_bytes: int = DEFAULT_MAX_OUTPUT_BYTES,
        space: EpisodeSpace | None = None,
        sandbox: Sandbox | None = None,
    ) -> None:
        self.name = name
        self.target = target
        # A private folder per fresh server (`envs.episode_dir`), and bubblewrap around a stdio one (`envs.sandbox`).
        self.space = space
        self.sandbox = sandbox
        self.server_log = server_log
        self.stdio_start = stdio_start
        self.max_output_bytes = max_output_bytes
        self._startup_timeout_s = startup_timeout_s
        self.kind: ServerKind
        if isinstance(target, FastMCP):
            self.kind = "object"
        elif isinstance(target, StdioServer):
            self.kind = "stdio"
        elif isinstance(target, HttpServer):
            self.kind = target.protocol
        elif callable(target):
            self.kind = "factory"
        else:
            raise EnvConfigError(f"server '{name}': unsupported server {type(target).__name__}")
        self._instance: FastMCP | None = target if isinstance(target, FastMCP) else None
        self.call_timeout_s: float | None = getattr(target, "timeout_s", None)  # the config's per-server timeout
        self._http_client: httpx2.AsyncClient | None = None
        # Fresh stdio servers come forked from one preloaded interpreter where that is possible.
        self.forks = isinstance(target, StdioServer) and use_fork(name, target, stdio_start, sandboxed=bool(sandbox))
        self.fork_server: ForkServer | None = None

    @property
    def label(self) -> str:
        """The server as messages name it: never an expanded secret (see `envs.config`)."""
        if isinstance(self.target, StdioServer | HttpServer):
            return f"server '{self.name}' ({self.target.describe()})"
        return f"server '{self.name}'"

    def _build(self) -> FastMCP:
        try:
            server = self.target()
        except Exception as exc:
            raise EnvInfraError(f"server '{self.name}': factory failed: {describe_error(exc)}") from exc
        if not isinstance(server, FastMCP):
            raise EnvConfigError(
                f"server '{self.name}': factory returned {type(server).__name__}, expected a fastmcp.FastMCP"
            )
        return server

    def shared_instance(self) -> FastMCP:
        if self._instance is None:
            self._instance = self._build()
        return self._instance

    def fresh_server(self, isolation: IsolationMode) -> bool:
        """Whether an isolated episode gets a new server, not only a new session.

        A stdio server carries exactly one session per process, so `per_session`
        on stdio means a fresh process, like `per_process`. An HTTP/SSE URL names a
        server we cannot start, so `per_process` there means a fresh session."""
        if isolation == "per_process":
            return self.kind in ("factory", "stdio")
        return isolation == "per_session" and self.kind == "stdio"

    def check_isolation(self, isolation: IsolationMode) -> None:
        if isolation == "per_process" and self.kind == "object":
            raise EnvConfigError(
                f"server '{self.name}': per_process isolation needs a factory (a zero-arg callable returning a "
                "new FastMCP), not a FastMCP instance"
            )
        if isolation == "per_process" and self.kind in ("http", "sse"):
            log.warning("server %r is an HTTP URL: per_process isolation gives each episode a new session", self.name)

    def transport(self, *, fresh: bool, folder: Path | None = None) -> tuple[ClientTransport, FastMCP | None]:
        """How to reach the server; `folder`: the episode folder it gets (`envs.episode_dir`)."""
        if self.kind in ("object", "factory"):
            instance = self._build() if fresh else self.shared_instance()
            return FastMCPTransport(instance), (instance if fresh else None)
        if self.kind == "stdio":
            spec: StdioServer = self.target
            if folder is not None and not (fresh and self.forks):
                bound = bind(spec, folder)
                assert isinstance(bound, StdioServer)
                spec = self.sandbox.wrap(bound, folder) if self.sandbox is not None else bound
            if fresh and self.forks:
                if self.fork_server is None:
                    self.fork_server = ForkServer(
                        self.name, spec, server_log=self.server_log, startup_timeout_s=self._startup_timeout_s
                    )
                transport = ForkTransport(
                    self.fork_server, max_output_bytes=self.max_output_bytes, label=self.label, episode_dir=folder
                )
                return transport, None
            if os.name != "posix":  # no process groups or parent-death signal there: the SDK's own client
                stdio = StdioTransport(
                    spec.command,
                    list(spec.args),
                    env=dict(spec.env) or None,
                    cwd=spec.cwd,
                    keep_alive=False,
                    log_file=self.server_log,
                )
                return stdio, None
            spawned = SpawnTransport(
                spec, server_log=self.server_log, max_output_bytes=self.max_output_bytes, label=self.label
            )
            return spawned, None
        spec_http: HttpServer = self.target
        if folder is not None:
            spec_http = bind(spec_http, folder)  # type: ignore[assignment]
        if self.kind == "sse":
            # SSE is the legacy transport: fastmcp's client opens its own HTTP client per session.
            sse = SSETransport(
                spec_http.url, headers=dict(spec_http.headers), sse_read_timeout=spec_http.sse_read_timeout_s
            )
            return sse, None
        if self._http_client is None:
            self._http_client = httpx2.AsyncClient(
                # Uncompressed answers, so that one's size on the wire is its size here.
                headers={k: v for k, v in spec_http.headers.items() if k.lower() != "accept-encoding"} | IDENTITY,
                event_hooks={"response": [cap_json_answers(self.max_output_bytes)]},
                # Long read timeout: a session holds a server-sent-event stream open.
                timeout=httpx2.Timeout(30.0, read=300.0),
                # Every open session holds one streaming connection; do not cap them.
                limits=httpx2.Limits(max_connections=None, max_keepalive_connections=64),
            )
        return SharedClientHttpTransport(spec_http.url, self._http_client, self.max_output_bytes), None

    async def aclose(self) -> None:
        client, self._http_client = self._http_client, None
        if client is not None:
            await client.aclose()
        fork_server, self.fork_server = self.fork_server, None
        if fork_server is not None:
            await fork_server.aclose()

    def _new_folder(self, space: EpisodeSpace) -> Path:
        folder = space.create()
        if self.sandbox is not None:
            try:
                self.sandbox.seed(folder)
            except BaseException:
                space.remove(folder)
                raise
        return folder

    async def connect(self, *, fresh: bool, timeout_s: float) -> Connection:
        space = self.space if isinstance(self.target, StdioServer | HttpServer) else None
        # Made before the server starts (a warm spare's with the spare), gone once it has stopped.
        folder = await anyio.to_thread.run_sync(self._new_folder, space) if space is not None else None
        try:
            transport, instance = self.transport(fresh=fresh, folder=folder)
            redactions = self.target.redactions() if isinstance(self.target, StdioServer | HttpServer) else []
            conn = Connection(
                self.name,
                transport,
                instance=instance,
                label=self.label,
                redactions=redactions,
                max_output_bytes=self.max_output_bytes,
                on_close=(lambda: space.remove(folder)) if space is not None and folder is not None else None,
            )
        except BaseException:
            if space is not None and folder is not None:
                space.remove(folder)
            raise
        return await conn.open(timeout_s)


class SharedConnection:
    """`shared` isolation: one session for every episode, reopened if it died."""

    def __init__(self, handle: ServerHandle, startup_timeout_s: float) -> None:
        self.handle = handle
        self._timeout = startup_timeout_s
        self._conn: Connection | None = None
        self._lock = anyio.Lock()

    async def acquire(self) -> Connection:
        conn = self._conn
        if conn is not None and conn.alive:
            return conn
        async with self._lock:
            if self._conn is None or not self._conn.alive:
                old, self._conn = self._conn, None
                if old is not None:
                    await old.aclose()
                self._conn = await self.handle.connect(fresh=False, timeout_s=self._timeout)
            return self._conn

    async def release(self, conn: Connection) -> None:
        """Shared: the session stays open for the next episode."""

    def put_back(self, conn: Connection) -> None:
        """Shared: nothing to return."""

    async def aclose(self) -> None:
        if self._conn is not None:
            await self._conn.aclose()
            self._conn = None


# The most spares a pool sizes itself to when many episodes run at once (see FreshPool).
MAX_AUTO_WARM = 64


class FreshPool:
    """Isolated episodes: each gets its own new session (or new server), never reused.

    Keeps connections opened (and MCP-initialized) ahead of need, refilled in the background as
    episodes take them: at least `warm`, and as many as episodes have held connections of this
    pool at once (up to `MAX_AUTO_WARM`), so a run at concurrency 16 finds 16 ready without being
    told; `warm=0` keeps none. An episode that finds none ready opens its own instead of queueing
    behind the refill, so the pool never serialises episodes; a refill that fails is left to the
    next acquire to report, so a broken command does not respawn in a loop."""

    def __init__(self, handle: ServerHandle, *, fresh_server: bool, warm: int, startup_timeout_s: float) -> None:
        self.handle = handle
        self._fresh = fresh_server
        self._warm = max(0, warm)
        self._timeout = startup_timeout_s
        self._ready: deque[Connection] = deque()
        self._filling: set[asyncio.Task[None]] = set()
        self._refill_ok = True
        self._started = False  # no refills before the env has listed tools through the pool
        self._closed = False
        self._in_use = 0  # connections handed out and not yet released
        self._peak = 0  # the most ever in use at once

    @property
    def target(self) -> int:
        """How many spares the pool keeps ready now."""
        if self._warm == 0:
            return 0
        return max(self._warm, min(self._peak, MAX_AUTO_WARM))

    def _taken(self) -> None:
        self._in_use += 1
        self._peak = max(self._peak, self._in_use)

    def _refill(self) -> None:
        if not self._started:
            return
        target = self.target
        while self._refill_ok and not self._closed and len(self._ready) + len(self._filling) < target:
            task = asyncio.create_task(self._make_spare(), name=f"mcp-warm:{self.handle.name}")
            self._filling.add(task)
            task.add_done_callback(self._filling.discard)

    async def _make_spare(self) -> None:
        try:
            conn = await self.handle.connect(fresh=self._fresh, timeout_s=self._timeout)
        except Exception as exc:  # reported by the next acquire, which tries for itself
            self._refill_ok = False
            log.debug("warm start of server %r failed: %s", self.handle.name, describe_error(exc))
            return
        if self._closed:
            await conn.aclose()
        else:
            self._ready.append(conn)

    def start(self) -> None:
        self._started = True
        self._refill()

    async def acquire(self) -> Connection:
        while self._ready:
            conn = self._ready.popleft()
            if conn.alive:
                self._taken()
                self._refill()
                return conn
            await conn.aclose()
        conn = await self.handle.connect(fresh=self._fresh, timeout_s=self._timeout)
        self._taken()
        self._refill_ok = True
        self._refill()
        return conn

    def put_back(self, conn: Connection) -> None:
        """Return a connection whose server state was not touched (only listed)."""
        self._in_use = max(0, self._in_use - 1)
        if self._closed:
            return
        self._ready.appendleft(conn)

    async def release(self, conn: Connection) -> None:
        """An episode is done with its connection: close it (the env runs this off
        the episode's path, so a slow server exit never delays a rollout)."""
        self._in_use = max(0, self._in_use - 1)
        self._refill()  # the burst that took the last spares is over: make them again now
        await conn.aclose()

    async def aclose(self) -> None:
        self._closed = True
        for task in list(self._filling):
            task.cancel()
        if self._filling:
            await asyncio.wait(set(self._filling), timeout=5)
        ready, self._ready = list(self._ready), deque()
        await asyncio.gather(*(conn.aclose() for conn in ready), return_exceptions=True)


Provider = SharedConnection | FreshPool


def make_provider(handle: ServerHandle, isolation: IsolationMode, *, warm: int, startup_timeout_s: float) -> Provider:
    handle.check_isolation(isolation)
    if isolation == "shared":
        return SharedConnection(handle, startup_timeout_s)
    return FreshPool(
        handle, fresh_server=handle.fresh_server(isolation), warm=warm, startup_timeout_s=startup_timeout_s
    )
