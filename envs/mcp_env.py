"""`MCPEnv`: any MCP server (or several) as an async, gym-like environment.

The env is long-lived: it owns the server connections (pooled, never one
session per call), the tool list, the tasks and the verifier. Rollouts each
take an `MCPEpisode` (`env.episode()`), which holds the connections its isolation
mode gives it:

- `shared`: every episode uses one pooled session per server (read-only servers).
- `per_session`: each episode gets its own MCP session on the shared server
  (in-process object or HTTP URL); servers that keep state per session keep it
  per episode, so isolation costs one session, not one process. A stdio server
  carries one session per process, so there it means a fresh process.
- `per_process`: each episode gets a fresh server (a new instance from an
  in-process factory, or a new stdio process), started and initialized ahead
  of need from a warm pool of at least `warm_pool` (and as many as episodes
  ran at once: the pool sizes itself to the concurrency, refilled in the
  background; `warm_pool=0`: none).

A fresh stdio process for a Python server (`python server.py`, `python -m
pkg.server`) is forked from a zygote that imported the interpreter's heavy
modules once (`envs.forkserver`, `stdio_start="auto"`): the script still runs
from its first line in each child, so module-level state is the child's own,
at the cost of a fork and the script's own start instead of a new interpreter.
`stdio_start="spawn"` starts a new process per episode instead.

Fresh episodes of the isolated modes all start from the server's initial
state, so the members of a GRPO group start equal.

What the model gets wrong (unknown tool, arguments that are not JSON or do not
fit the schema, a tool that raises, a timeout, a result over `max_output_bytes`)
comes back as the tool message and the episode goes on; what the environment gets wrong (a server that died,
refused the connection, spoke nonsense or never started, a tool that requires MCP task
augmentation, which the MCP client here cannot make, a replay miss) raises `EnvInfraError`.

Stateful and conversational tasks (see `contracts.Task`): a task's `setup` calls run
on the episode's own sessions in `reset`, before the first turn, usually on tools the
server hides from the model (a tool whose MCP `_meta` has `HIDDEN_META: true`, or one
named in `hidden_tools`); `tools` narrows the tools offered at first; `follow_ups` are
the later user turns that `next_user` hands out in order, each adding its tools.
Setup state is an episode's own only where its isolation gives it its own session
(`per_session`, `per_process`); under `shared` every episode sees the last setup.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import re
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import anyio
import mcp_types
from fastmcp import FastMCP
from mcp import MCPError

from contracts import (
    EnvConfigError,
    EnvInfraError,
    FollowUp,
    IsolationMode,
    Observation,
    SetupCall,
    StdioStart,
    StepResult,
    Task,
    ToolCall,
    ToolOutcome,
    UserTurn,
    Verdict,
)

from .config import HttpServer, McpConfig, StdioServer, is_disabled, load_mcp_config, parse_mcp_config, parse_server
from .limits import DEFAULT_MAX_OUTPUT_BYTES, ResultTooLarge
from .pool import CallTimeout, Connection, Provider, ServerHandle, SharedConnection, make_provider
from .replay import EMPTY_HISTORY, Recorded, ReplaySetting, ReplayStore, open_store
from .sandbox import disk_isolation
from .schemas import ToolEntry, cap_text, result_text
from .tasks import TasksArg, TaskSource
from .verifiers import Verifier, as_verdict, awaited_verdict, load_verifier

log = logging.getLogger(__name__)

# A tool's MCP `_meta` key that hides it from the model (setup hooks: `Task.setup` calls it).
HIDDEN_META = "mcpgym/hidden"
ISOLATION_MODES: tuple[IsolationMode, ...] = ("shared", "per_session", "per_process")
STDIO_STARTS: tuple[StdioStart, ...] = ("auto", "fork", "spawn")
_NAME_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")


def _server_target(name: str, value: Any, *, where: str) -> Any:
    """One server value -> FastMCP | factory | StdioServer | HttpServer."""
    if isinstance(value, FastMCP | StdioServer | HttpServer):
        return value
    if isinstance(value, dict):
        return parse_server(name, value, where=where)
    if isinstance(value, str) and re.match(r"^https?://", value):
        return HttpServer(url=value)
    if callable(value):
        return value
    raise EnvConfigError(
        f"{where}: server '{name}' is a {type(value).__name__}; expected a FastMCP server, a factory, "
        "StdioServer, HttpServer, or an mcpServers entry"
    )


def resolve_servers(servers: Any, *, name: str) -> tuple[dict[str, Any], McpConfig | None]:
    """Every accepted `servers` form -> ({server name: target}, the mcpServers config if any)."""
    if isinstance(servers, McpConfig):
        return dict(servers.servers), servers
    if isinstance(servers, Path) or (isinstance(servers, str) and servers.endswith(".json")):
        config = load_mcp_config(servers)
        return dict(config.servers), config
    if isinstance(servers, Mapping):
        if "mcpServers" in servers or _vscode_layout(servers):
            config = parse_mcp_config(dict(servers))
            return dict(config.servers), config
        if not servers:
            raise EnvConfigError(f"env '{name}': no servers given")
        targets = {
            str(k): _server_target(str(k), v, where=f"env '{name}'") for k, v in servers.items() if not is_disabled(v)
        }
        if not targets:
            raise EnvConfigError(f"env '{name}': every server is disabled")
        return targets, None
    return {name: _server_target(name, servers, where=f"env '{name}'")}, None


def _vscode_layout(servers: Mapping[str, Any]) -> bool:
    """VS Code's `{"servers": {...}, "inputs": [...]}`, not one server named "servers"."""
    inner = servers.get("servers")
    return isinstance(inner, Mapping) and not ({"command", "url", "serverUrl"} & set(inner))


def _as_call(value: ToolCall | Mapping[str, Any]) -> ToolCall:
    """Accept our ToolCall or an OpenAI `tool_calls` entry."""
    if isinstance(value, ToolCall):
        return value
    function = value.get("function")
    if isinstance(function, Mapping):
        return ToolCall(
            id=str(value.get("id") or ""),
            name=str(function.get("name") or ""),
            arguments=function.get("arguments") or "{}",
        )
    return ToolCall.model_validate(value)


class MCPEnv:
    """MCP servers + tasks + a verifier, handing out isolated episodes.

    `servers`: a `fastmcp.FastMCP` object; a zero-arg callable returning a new
    one (an in-process factory); `StdioServer(command, args, env, cwd)`;
    `HttpServer(url, headers, type)` (or an `http(s)://` string: streamable
    HTTP, or SSE where the path ends in `/sse`); a config dict in any host's
    layout (`mcpServers`, VS Code's `servers` + `inputs`) or a path to its
    JSON; or a dict of name -> any of these. Tools of
    several servers are namespaced `server__tool` only where names collide.

    `isolation` defaults to the JSON's `mcpgym.isolation`, else `per_session`.
    `tasks` / `system_prompt` default to the JSON's `mcpgym` section.
    `verifier`: (task, answer, calls[, turns=]) -> bool | number in [0, 1] | Verdict
    (`envs.verifiers`); default the JSON's `mcpgym.verifier`, else `envs.verify.verify_answer`.
    `default_judge`: the judge spec a CLI's `--judge` means when not given; default the JSON's
    `mcpgym.default_judge`, else `env` (the verdict's score) when no task lists expected calls
    and `rules` otherwise.
    `call_timeout_s`: each tool call's limit, unless the server's config entry sets
    its own `timeout` (ms, fastmcp's key), which wins for that server's tools.
    `max_output_chars`: a tool result the model reads is cut to this many characters (0: never).
    `max_output_bytes`: no answer of a server is read past this many bytes; a tool result over it
    is dropped and the model told so (a `tool_error`): memory stays bounded whatever a tool returns.
    `server_log`: a file that stdio servers' stderr is appended to (default: ours).
    `stdio_start`: how isolated episodes' fresh stdio servers start: "auto" (forked from a
    preloaded interpreter where the command is Python running a script or `-m module` on
    POSIX, else spawned), "fork" (insist; a config error where impossible) or "spawn".
    Defaults to the JSON's `mcpgym.stdio_start`, else "auto".
    `hidden_tools`: tools of the servers the model never sees or calls (besides those
    their server marks hidden with `HIDDEN_META`); a task's `setup` calls them.
    `check_arguments=False`: send the model's arguments as they are, for servers that
    answer ill-typed arguments themselves (as a benchmark's own execution would).
    `parallel_calls=False`: run the calls of one step one after another, in call order,
    for servers whose calls depend on their order.
    `user_turn_step_limit`: a conversation ends (no next user turn) after a user turn
    in which the model made tool calls in more steps than this.
    `replay`: record and replay of tool results (`envs.replay`); defaults to the JSON's
    `mcpgym.replay`, else off. `set_replay` applies a `--replay` flag before the env starts.
    """

    def __init__(
        self,
        servers: Any,
        *,
        name: str = "mcp",
        tasks: TasksArg | None = None,
        verifier: Verifier | None = None,
        isolation: IsolationMode | None = None,
        system_prompt: str | None = None,
        call_timeout_s: float = 30.0,
        max_output_chars: int = 16_000,
        max_output_bytes: int = DEFAULT_MAX_OUTPUT_BYTES,
        warm_pool: int = 2,
        startup_timeout_s: float = 30.0,
        server_log: str | Path | None = None,
        stdio_start: StdioStart | None = None,
        hidden_tools: Iterable[str] = (),
        check_arguments: bool = True,
        parallel_calls: bool = True,
        user_turn_step_limit: int | None = None,
        default_judge: str | None = None,
        replay: ReplaySetting | None = None,
    ) -> None:
        """Resolve and store the options (long only for their number: no logic beyond checks)."""
        targets, config = resolve_servers(servers, name=name)
        section = config.mcpgym if config is not None else None
        if section is not None and section.name and name == "mcp":
            name = section.name
        isolation = isolation or (section.isolation if section else None) or "per_session"
        _check_one_of(name, "isolation", isolation, ISOLATION_MODES)
        if tasks is None and config is not None:
            tasks = config.tasks_path()
        self.name = name
        self.isolation: IsolationMode = isolation
        if system_prompt is None and section is not None:
            system_prompt = section.system_prompt
        self.system_prompt = system_prompt
        self.call_timeout_s = call_timeout_s
        self.max_output_chars = max_output_chars
        if max_output_bytes <= 0:
            raise EnvConfigError(f"env '{name}': max_output_bytes must be positive, got {max_output_bytes}")
        self.max_output_bytes = max_output_bytes
        self.warm_pool = warm_pool
        self.startup_timeout_s = startup_timeout_s
        self.config = config
        log_path = Path(server_log) if server_log is not None else None
        stdio_start = stdio_start or (section.stdio_start if section else None) or "auto"
        _check_one_of(name, "stdio_start", stdio_start, STDIO_STARTS)
        self.stdio_start: StdioStart = stdio_start
        self.disk = disk_isolation(config, targets, env=name)
        self.handles = {
            n: ServerHandle(
                n,
                t,
                server_log=log_path,
                stdio_start=stdio_start,
                startup_timeout_s=startup_timeout_s,
                max_output_bytes=max_output_bytes,
                space=self.disk.for_server(n)[0],
                sandbox=self.disk.for_server(n)[1],
            )
            for n, t in targets.items()
        }
        for handle in self.handles.values():
            handle.check_isolation(isolation)
        self.hidden_tools = frozenset(hidden_tools)
        self.check_arguments = check_arguments
        self.parallel_calls = parallel_calls
        self.user_turn_step_limit = user_turn_step_limit
        self._server_tools: dict[str, set[str]] = {}
        self._tasks = TaskSource(tasks, env_name=name)
        if verifier is None and section is not None and section.verifier and config is not None:
            verifier = load_verifier(section.verifier, base_dir=config.base_dir)
            self.verifier_ref = section.verifier  # what `python -m envs inspect` shows
        else:
            self.verifier_ref = _ref_of(verifier) if verifier is not None else "envs.verify:verify_answer"
        self._verifier = verifier
        self._default_judge = default_judge or (section.default_judge if section is not None else None)
        self._providers: dict[str, Provider] = {}
        self._tools: dict[str, ToolEntry] = {}
        self._openai_tools: list[dict[str, Any]] = []
        self._tool_names = ""
        self._started = False
        self._closed = False
        self._start_lock = anyio.Lock()
        self._background: set[asyncio.Task[Any]] = set()
        self._default: MCPEpisode | None = None
        self.replay_setting: ReplaySetting | None = replay or (section.replay if section else None)
        self.replay: ReplayStore | None = None  # opened in start()

    def __repr__(self) -> str:
        servers = ", ".join(f"{n}:{h.kind}" for n, h in self.handles.items())
        return f"MCPEnv(name={self.name!r}, isolation={self.isolation!r}, servers=[{servers}])"

    # -- lifecycle ---------------------------------------------------------------------------

    async def __aenter__(self) -> MCPEnv:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def start(self) -> None:
        """Connect to every server, list the tools and warm the pools. Idempotent."""
        if self._started:
            return
        async with self._start_lock:
            if self._started:
                return
            if self._closed:
                raise RuntimeError(f"env '{self.name}' is closed")
            if self.replay is None:  # first: a store that cannot open leaves no server behind
                base_dir = self.config.base_dir if self.config is not None else Path.cwd()
                self.replay = open_store(self.replay_setting, base_dir)
            providers = {
                n: make_provider(h, self.isolation, warm=self.warm_pool, startup_timeout_s=self.startup_timeout_s)
                for n, h in self.handles.items()
            }
            self._providers = providers
            try:
                listed = await asyncio.gather(*(self._list_tools(p) for p in providers.values()))
            except BaseException:
                await self._close_providers()
                raise
            self._route(dict(zip(providers, listed, strict=True)))
            for provider in providers.values():
                start = getattr(provider, "start", None)
                if start is not None:
                    start()
            self._started = True

    async def _list_tools(self, provider: Provider) -> list[mcp_types.Tool]:
        conn = await provider.acquire()
        try:
            tools = await conn.list_tools(self.startup_timeout_s)
        except BaseException:
            await conn.aclose()
            raise
        provider.put_back(conn)  # listing changes no state: the session can still serve an episode
        return tools

    def _route(self, listed: dict[str, list[mcp_types.Tool]]) -> None:
        self._server_tools = {server: {tool.name for tool in tools} for server, tools in listed.items()}
        listed = {server: [t for t in tools if not self._is_hidden(t)] for server, tools in listed.items()}
        counts: dict[str, int] = {}
        for tools in listed.values():
            for tool in tools:
                counts[tool.name] = counts.get(tool.name, 0) + 1
        entries: dict[str, ToolEntry] = {}
        for server, tools in listed.items():
            for tool in tools:
                exposed = tool.name
                if counts[tool.name] > 1:  # namespaced only where names collide
                    exposed = f"{_NAME_UNSAFE.sub('_', server)}__{tool.name}"
                entries[exposed] = ToolEntry.build(exposed, server, tool)
        self._tools = entries
        self._openai_tools = [entry.schema for entry in entries.values()]
        self._tool_names = ", ".join(entries)

    def _is_hidden(self, tool: mcp_types.Tool) -> bool:
        return tool.name in self.hidden_tools or bool((tool.meta or {}).get(HIDDEN_META))

    def setup_server(self, tool: str) -> str:
        """The server a setup call without `server` goes to: the only one, or the one with that tool."""
        if len(self.handles) == 1:
            return next(iter(self.handles))
        having = [server for server, names in self._server_tools.items() if tool in names]
        if len(having) != 1:
            raise EnvConfigError(f"env '{self.name}': setup tool '{tool}' is on {len(having)} servers; name its server")
        return having[0]

    def offered_tools(self, names: Iterable[str] | None) -> list[dict[str, Any]]:
        """The OpenAI schemas of the tools named (all the env's tools when None), in the env's order."""
        if names is None:
            return list(self._openai_tools)
        wanted = set(names)
        unknown = wanted - set(self._tools)
        if unknown:
            raise EnvConfigError(f"env '{self.name}': a task offers unknown tools {', '.join(sorted(unknown))}")
        return [entry.schema for name, entry in self._tools.items() if name in wanted]

    async def aclose(self) -> None:
        """Close every episode's and pool's connections and stop owned servers."""
        if self._closed:
            return
        self._closed = True
        if self._default is not None:
            await self._default.aclose()
            self._default = None
        await self._close_providers()
        if self.replay is not None:
            self.replay.close()
        if self._background:
            await asyncio.wait(set(self._background), timeout=15)
        await asyncio.gather(*(h.aclose() for h in self.handles.values()), return_exceptions=True)

    async def _close_providers(self) -> None:
        providers, self._providers = list(self._providers.values()), {}
        await asyncio.gather(*(p.aclose() for p in providers), return_exceptions=True)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # -- the public face ---------------------------------------------------------------------

    async def tools(self) -> list[dict[str, Any]]:
        """OpenAI tool schemas (`{"type": "function", "function": {...}}`)."""
        await self.start()
        return list(self._openai_tools)

    def set_replay(self, setting: ReplaySetting) -> None:
        """A `--replay` flag: its mode over the config's; its path where it gave one (else the config's)."""
        if self._started:
            raise RuntimeError("set_replay must come before the env starts")
        current = self.replay_setting or ReplaySetting()
        path = setting.path if "path" in setting.model_fields_set else current.path
        self.replay_setting = current.model_copy(update={"mode": setting.mode, "path": path})

    def tool_servers(self) -> dict[str, str]:
        """Model-facing tool name -> the server that serves it (after `start()`)."""
        return {name: entry.server for name, entry in self._tools.items()}

    def splits(self) -> list[str]:
        return self._tasks.splits()

    def tasks(self, split: str = "train") -> list[Task]:
        """Tasks of one split; EnvConfigError when the env has no such split."""
        return self._tasks.tasks(split)

    @property
    def default_judge(self) -> str:
        """The judge spec `--judge` means when not given (see the class docstring)."""
        if self._default_judge:
            return self._default_judge
        try:
            tasks = [task for split in self._tasks.splits() for task in self._tasks.tasks(split)]
        except EnvConfigError:
            tasks = []
        # Without expected calls the rules judge has nothing but the verdict to go on.
        return "env" if tasks and not any(task.expected_calls for task in tasks) else "rules"

    def verify(
        self, task: Task, answer: str, calls: list[ToolCall], turns: list[list[ToolCall]] | None = None
    ) -> Verdict | Any:
        """The env's judgement of a finished episode (default: `envs.verify.verify_answer`), as a
        Verdict (or an awaitable of one, from an async verifier). `turns`: the calls of each user
        turn, for a conversation of several (given to a verifier that takes `turns=`)."""
        verifier = self._verifier or _default_verifier()
        if turns is not None and _takes_turns(verifier):
            result = verifier(task, answer, calls, turns=turns)
        else:
            result = verifier(task, answer, calls)
        return awaited_verdict(result) if inspect.isawaitable(result) else as_verdict(result)

    def initial_messages(self, task: Task) -> list[dict[str, Any]]:
        messages: list[dict[str, Any]] = []
        if self.system_prompt:
            messages.append({"role": "system", "content": self.system_prompt})
        messages.append({"role": "user", "content": task.question})
        return messages

    def episode(self, group: str | None = None) -> MCPEpisode:
        """A new episode (async context manager). Its connections come from the
        env's isolation mode; every isolated episode starts from the initial state."""
        return MCPEpisode(self, group)

    async def reset(self, task: Task | str) -> Observation:
        """Gym-style convenience: start a new default episode."""
        if self._default is not None:
            await self._default.aclose()
        self._default = self.episode()
        return await self._default.reset(task)

    async def step(self, tool_calls: Iterable[ToolCall | Mapping[str, Any]]) -> StepResult:
        if self._default is None:
            raise RuntimeError("call reset(task) before step()")
        return await self._default.step(tool_calls)


class MCPEpisode:
    """One rollout's view of the env: `reset(task)`, `step(calls)`, `next_user(answer)`, `aclose()`.

    Implements `contracts.Episode`. Parallel calls in one step run at once;
    the tool messages come back in call order."""

    def __init__(self, env: MCPEnv, group: str | None) -> None:
        self.env = env
        self.group = group
        self.task: Task | None = None
        self._conns: dict[str, Connection] = {}
        self._closed = False
        self._offered: list[dict[str, Any]] = []
        self._follow_ups: list[FollowUp] = []
        self._steps = 0  # steps with calls in the current user turn
        self._history: dict[str, str] = {}  # server -> the hash chain of its calls so far (envs.replay)

    async def __aenter__(self) -> MCPEpisode:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def reset(self, task: Task | str) -> Observation:
        if self._closed:
            raise RuntimeError("episode is closed")
        if isinstance(task, str):
            task = Task(id="adhoc", question=task, kind="open")
        env = self.env
        await env.start()
        self._release()  # a second reset starts over from a fresh state
        providers = env._providers
        names = list(providers)
        if len(names) == 1:
            conns = [await providers[names[0]].acquire()]
        else:
            conns = await _gather_first_error([providers[n].acquire() for n in names])
        self._conns = dict(zip(names, conns, strict=True))
        self.task = task
        self._offered = env.offered_tools(task.tools)
        self._follow_ups = list(task.follow_ups)
        self._steps = 0
        self._history = {}
        for call in task.setup:
            await self._setup(call)
        return Observation.model_construct(messages=env.initial_messages(task), tools=list(self._offered))

    async def _setup(self, call: SetupCall) -> None:
        """One `Task.setup` call on this episode's session; a failure is the env's (EnvInfraError)."""
        server = call.server or self.env.setup_server(call.tool)
        conn = self._conns.get(server)
        if conn is None:
            raise EnvConfigError(f"env '{self.env.name}': setup call '{call.tool}' names unknown server '{server}'")
        try:
            result = await conn.call(call.tool, call.arguments, self.env.startup_timeout_s)
        except (CallTimeout, MCPError) as exc:
            raise EnvInfraError(f"setup call '{call.tool}' failed: {exc}") from None
        if result.is_error:
            raise EnvInfraError(f"setup call '{call.tool}' failed: {result_text(result)}")
        if self.env.replay is not None:  # setup changes the state later calls are keyed by
            self._history[server] = self.env.replay.after(call.tool, call.arguments, self._history_of(server))

    def _history_of(self, server: str) -> str:
        return self._history.get(server, EMPTY_HISTORY)

    async def step(self, tool_calls: Iterable[ToolCall | Mapping[str, Any]]) -> StepResult:
        if not self._conns:
            raise RuntimeError("call reset(task) before step()")
        calls = [_as_call(c) for c in tool_calls]
        info = {"group": self.group} if self.group is not None else {}
        if not calls:  # an answer without calls ends the episode
            return StepResult.model_construct(messages=[], outcomes=[], done=True, info=info)
        self._steps += 1
        if len(calls) == 1 or not self.env.parallel_calls:
            results = [await self._run(call) for call in calls]
        else:  # calls running at once all see the history as it was before the step
            before = dict(self._history)
            results = await _gather_first_error([self._run(c, before) for c in calls])
        return StepResult.model_construct(
            messages=[m for m, _ in results], outcomes=[o for _, o in results], done=False, info=info
        )

    async def next_user(self, answer: str) -> UserTurn | None:
        """The task's next follow-up turn (with the tools offered from then on when it adds
        some); None when there is none left (a single question: at once), or when the turn
        just ended ran past the env's `user_turn_step_limit`."""
        limit = self.env.user_turn_step_limit
        steps, self._steps = self._steps, 0
        if not self._follow_ups or (limit is not None and steps > limit):
            return None
        follow = self._follow_ups.pop(0)
        tools = None
        if follow.add_tools:
            offered = {tool["function"]["name"] for tool in self._offered}
            added = [t for t in self.env.offered_tools(follow.add_tools) if t["function"]["name"] not in offered]
            self._offered = [*self._offered, *added]
            tools = list(self._offered)
        return UserTurn.model_construct(messages=list(follow.messages), tools=tools)

    async def _run(self, call: ToolCall, before: dict[str, str] | None = None) -> tuple[dict[str, Any], ToolOutcome]:
        env = self.env
        start = time.perf_counter()
        entry = env._tools.get(call.name)
        if entry is None:
            return self._reply(
                call, start, "unknown_tool", f"Error: unknown tool '{call.name}'. Available tools: {env._tool_names}."
            )
        try:
            arguments = call.parsed_arguments()
        except ValueError as exc:
            return self._reply(
                call, start, "bad_arguments", f"Error: {exc}. Call '{call.name}' again with a JSON object of arguments."
            )
        problem = entry.check_arguments(arguments) if env.check_arguments else None
        if problem is not None:
            return self._reply(call, start, "bad_arguments", f"Error: invalid arguments for '{call.name}': {problem}")
        store = env.replay
        if store is None:
            result, _ = await self._live(call, entry, arguments)
            return self._reply(call, start, result.error, result.text, truncated=result.truncated)
        server = entry.server
        history = (before if before is not None else self._history).get(server, EMPTY_HISTORY)
        # Before the first await, so calls of one step started at once advance the history in call order.
        self._history[server] = store.after(entry.mcp_name, arguments, self._history_of(server))
        result, how = await store.call(
            server, entry.mcp_name, arguments, history, lambda: self._live(call, entry, arguments)
        )
        message, outcome = self._reply(call, start, result.error, result.text, truncated=result.truncated)
        outcome.replay = how
        return message, outcome

    async def _live(self, call: ToolCall, entry: ToolEntry, arguments: dict[str, Any]) -> tuple[Recorded, bool]:
        """One call on the episode's server: what the model reads, and whether it may be recorded
        (a timeout is not: it says nothing about the call)."""
        if entry.task_required:
            raise EnvInfraError(
                f"tool '{call.name}' of server '{entry.server}' requires MCP task augmentation "
                "(execution.taskSupport: required), which mcpgym's MCP client does not support"
            )
        env = self.env
        timeout_s = env.handles[entry.server].call_timeout_s or env.call_timeout_s
        try:
            result = await self._conns[entry.server].call(entry.mcp_name, arguments, timeout_s)
        except CallTimeout:
            return Recorded(error="timeout", text=f"Error: tool '{call.name}' timed out after {timeout_s:g} s."), False
        except ResultTooLarge as exc:  # what it asked for was too much: the model's to fix
            text = f"Error: tool '{call.name}' failed: {exc}. Ask for less."
            return Recorded(error="tool_error", text=text, truncated=True), True
        except MCPError as exc:
            kind = {mcp_types.INVALID_PARAMS: "bad_arguments", mcp_types.METHOD_NOT_FOUND: "unknown_tool"}
            text = f"Error: tool '{call.name}' failed: {exc.message}"
            return Recorded(error=kind.get(exc.code, "tool_error"), text=text), True
        text = result_text(result)
        if result.is_error:
            return Recorded(error="tool_error", text=text if text.startswith("Error") else f"Error: {text}"), True
        return Recorded(error=None, text=text), True

    def _reply(
        self, call: ToolCall, start: float, error: str | None, text: str, *, truncated: bool = False
    ) -> tuple[dict[str, Any], ToolOutcome]:
        content, cut = cap_text(text, self.env.max_output_chars)
        truncated = truncated or cut
        message = {"role": "tool", "tool_call_id": call.id, "name": call.name, "content": content}
        outcome = ToolOutcome.model_construct(
            call_id=call.id,
            name=call.name,
            ok=error is None,
            error=error,
            latency_s=time.perf_counter() - start,
            truncated=truncated,
        )
        return message, outcome

    def _release(self) -> None:
        conns, self._conns = self._conns, {}
        providers = self.env._providers
        for server, conn in conns.items():
            provider = providers.get(server)
            if isinstance(provider, SharedConnection):
                continue  # the shared session stays open for the next episode
            if provider is not None:
                self.env._spawn(provider.release(conn))
            else:  # the env closed under us: nothing to return it to
                self.env._spawn(conn.aclose())

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._release()


async def _gather_first_error(coros: list[Any]) -> list[Any]:
    """Run coroutines at once; the first one to raise cancels the rest and its
    error (not an exception group) propagates."""
    tasks = [asyncio.create_task(c) for c in coros]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        for task in tasks:
            if task.done() and not task.cancelled() and task.exception() is not None:
                raise task.exception()  # type: ignore[misc]
        return [task.result() for task in tasks]
    finally:
        pending = [t for t in tasks if not t.done()]
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending)


def _check_one_of(env: str, option: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise EnvConfigError(f"env '{env}': {option} must be one of {', '.join(choices)}, got {value!r}")


def _takes_turns(verifier: Verifier) -> bool:
    try:
        parameters = inspect.signature(verifier).parameters
    except (TypeError, ValueError):
        return False
    return "turns" in parameters or any(p.kind is p.VAR_KEYWORD for p in parameters.values())


def _ref_of(func: Any) -> str:
    module = getattr(func, "__module__", None) or "?"
    return f"{module}:{getattr(func, '__qualname__', type(func).__name__)}"


def _default_verifier() -> Verifier:
    try:
        from .verify import verify_answer
    except ImportError:  # the shared verifier has not landed: compare answers plainly
        return _plain_verify
    return verify_answer


def _plain_verify(task: Task, answer: str, calls: list[ToolCall]) -> Verdict:
    if task.answer is None:
        return Verdict(success=False, score=0.0, reason="open task: no checkable answer")
    expected = str(task.answer).strip().lower()
    ok = expected in answer.strip().lower()
    return Verdict(success=ok, score=1.0 if ok else 0.0, reason="answer matches" if ok else "answer differs")


__all__ = ["HIDDEN_META", "EnvInfraError", "MCPEnv", "MCPEpisode", "resolve_servers"]
