"""How an environment reaches its MCP servers: transport models and the `mcpServers` JSON.

`StdioServer` and `HttpServer` are the out-of-process transports (HTTP is streamable HTTP
or SSE); an in-process server is a `fastmcp.FastMCP` object or a zero-arg factory that
builds one. A config file maps names to either, in any host's dialect:

- Claude Desktop / Claude Code / Cursor / fastmcp: `{"mcpServers": {name: entry}}`;
- VS Code (`.vscode/mcp.json`): `{"servers": {name: entry}, "inputs": [...]}`.

An entry is validated on fastmcp's own models (`envs.config_entries`): `command`/`args`/
`env`/`envFile`/`cwd` for stdio, `url`/`headers`/`auth` for HTTP, `type`/`transport`
(`stdio`, `http`, `streamable-http`, `sse`), `timeout` (ms per tool call), `disabled: true`
(skipped). An optional top-level `"mcpgym"` key carries what the hosts' JSON cannot say
(tasks file, system prompt, isolation, stdio start, a verifier of one's own: `envs.verifiers`,
the default judge, replay of tool results, and state on disk: `workspace`, `keep_episode_dirs`, `sandbox`, see
`envs.episode_dir` and `envs.sandbox`).

Secrets come only from the environment: variables (`${VAR}`, `${env:VAR}`, `${input:ID}`,
... see `envs.config_vars`) are expanded from `os.environ` when the config is read, before
it is validated. The resolved `env` and `headers` are excluded from reprs, and a server is
named in messages by how the file wrote it (`origin`: variables unexpanded), through
`common.redact` (a URL's userinfo, query and secret-looking path segments, a command's
`--token X` and key-like words masked), so an error, a log line or a trajectory's error record
never shows a secret.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from fastmcp.mcp_config import infer_transport_type_from_url
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError

from common.redact import MASK, redact_argv, redact_command, redact_url, url_secrets
from contracts import EnvConfigError, IsolationMode, StdioStart

from .config_entries import (
    RemoteEntry,
    RemoteType,
    StdioEntry,
    first_error,
    remote_headers,
    remote_protocol,
    sse_read_timeout_s,
    stdio_env,
    timeout_s,
    validate_entry,
)
from .config_vars import EPISODE_DIR, Expander, expand_vars
from .replay import ReplaySetting

TOP_LEVEL_KEYS = ("mcpServers", "servers", "inputs", "mcpgym", "$schema")
# Editor-only keys: never expanded (a `${...}` in a description is not a variable to set).
_SECRET_MIN = 4  # shorter values ("1", "dev") are not worth hiding, and would mangle messages
_NOT_EXPANDED = {"description", "icon", "autoApprove", "alwaysAllow", "dev", "gallery", "version", "authentication"}


class StdioServer(BaseModel):
    """An MCP server started as a subprocess and spoken to over stdin/stdout.

    `command` "python"/"python3" runs the current interpreter, so a config
    written as `python server.py` works from a venv that is not activated.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    command: str = Field(min_length=1)
    args: list[str] = Field(default_factory=list)
    env: dict[str, str] = Field(default_factory=dict, repr=False)
    cwd: str | None = None
    type: Literal["stdio"] | None = None  # accepted for compatibility with hosts that write it
    timeout_s: float | None = Field(default=None, gt=0)  # per tool call; else the env's call_timeout_s
    origin: str | None = None  # how messages name it (the config's own text, variables unexpanded)

    # Values the config's variables expanded to: hidden wherever this server is described.
    _expanded: tuple[str, ...] = PrivateAttr(default=())

    def describe(self) -> str:
        return self.origin or redact(f"command: {redact_command([self.command, *self.args])}", self.redactions())

    def redactions(self) -> list[tuple[str, str]]:
        """(secret, stand-in) pairs to cut out of any text about this server (see `redact`): its
        `env` values, what its variables expanded to, and the words of its command that
        `common.redact` masks (`--api-key X`), which an error may quote."""
        pairs = [(value, MASK) for value in [*self.env.values(), *self._expanded]]
        argv = [self.command, *self.args]
        pairs += [(word, shown) for word, shown in zip(argv, redact_argv(argv), strict=True) if word != shown]
        return [(secret, stand_in) for secret, stand_in in pairs if len(secret) >= _SECRET_MIN]

    def __repr_args__(self) -> Any:
        for key, value in super().__repr_args__():
            yield key, _redacted(redact_argv(value) if key == "args" else value, self.redactions())


class HttpServer(BaseModel):
    """An MCP server reached at `url` over streamable HTTP, or SSE (`type="sse"`, or a URL
    whose path ends in `/sse` when no type is given, as fastmcp infers it)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    url: str = Field(pattern=r"^https?://")
    headers: dict[str, str] = Field(default_factory=dict, repr=False)
    type: RemoteType | None = None
    timeout_s: float | None = Field(default=None, gt=0)  # per tool call; else the env's call_timeout_s
    sse_read_timeout_s: float | None = Field(default=None, gt=0)
    origin: str | None = None  # how messages name it (the config's own text, variables unexpanded)

    _expanded: tuple[str, ...] = PrivateAttr(default=())

    @property
    def protocol(self) -> Literal["http", "sse"]:
        if self.type is None:
            return infer_transport_type_from_url(self.url)
        return "sse" if self.type == "sse" else "http"

    def describe(self) -> str:
        return self.origin or f"{'sse ' if self.protocol == 'sse' else ''}url: {redact_url(self.url)}"

    def redactions(self) -> list[tuple[str, str]]:
        """(secret, stand-in) pairs to cut out of any text about this server: an HTTP client's own
        error may quote the URL whole ("404 Not Found for url ...?key=...") or in pieces."""
        pairs = [(self.url, redact_url(self.url))] if redact_url(self.url) != self.url else []
        pairs += [(piece, MASK) for piece in url_secrets(self.url)]
        for value in self.headers.values():
            pairs += [(part, "***") for part in {value, value.split()[-1] if value.split() else ""}]
        # The host and port are named on purpose (a refused connection must say where it went).
        parts = urlsplit(self.url)
        shown = {parts.hostname or "", str(parts.port or "")}
        pairs += [(value, "***") for value in self._expanded if value not in shown]
        return [(secret, stand_in) for secret, stand_in in pairs if len(secret) >= _SECRET_MIN]

    def __repr_args__(self) -> Any:
        for key, value in super().__repr_args__():
            yield key, _redacted(value, self.redactions())


ServerConfig = StdioServer | HttpServer


def _redacted(value: Any, redactions: list[tuple[str, str]]) -> Any:
    if isinstance(value, str):
        return redact(value, redactions)
    if isinstance(value, list):
        return [_redacted(item, redactions) for item in value]
    return value


def redact(text: str, redactions: list[tuple[str, str]]) -> str:
    """`text` with every secret of `redactions` replaced, longest first."""
    for secret, stand_in in sorted(redactions, key=lambda pair: -len(pair[0])):
        text = text.replace(secret, stand_in)
    return text


class SandboxSection(BaseModel):
    """`"sandbox"` of the `mcpgym` key: each episode's stdio server runs under bubblewrap with its own
    writable copy of `private_paths` (relative to the JSON's folder), the rest read-only (`envs.sandbox`)."""

    model_config = ConfigDict(extra="forbid")

    private_paths: list[str] = Field(default_factory=list)
    network: bool = True


class McpGymSection(BaseModel):
    """The optional `"mcpgym"` key of a config file."""

    model_config = ConfigDict(extra="forbid")

    tasks: str | None = None  # a tasks JSONL, relative to the JSON's folder
    system_prompt: str | None = None
    isolation: IsolationMode | None = None
    stdio_start: StdioStart | None = None
    name: str | None = None
    verifier: str | None = None  # "file.py:function" or "module:function" (envs.verifiers)
    default_judge: str | None = None  # the judge spec `--judge` means when not given (judges.registry)
    # Disk state per episode (`envs.episode_dir`, `envs.sandbox`): a template folder copied into each
    # episode's `${MCPGYM_EPISODE_DIR}` (relative to the JSON's folder), and whether those folders stay.
    workspace: str | None = None
    keep_episode_dirs: bool = False
    sandbox: SandboxSection | None = None
    replay: ReplaySetting | None = None  # record/replay of tool results (envs.replay)


class VsCodeInput(BaseModel):
    """One of VS Code's `inputs`: its value comes from the environment (`envs.config_vars`)."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(min_length=1)
    type: Literal["promptString", "pickString"] = "promptString"
    description: str | None = None
    password: bool = False
    default: str | None = None
    options: list[Any] | None = None


class McpConfig(BaseModel):
    """A parsed config file: servers by name, plus where it came from."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    servers: dict[str, ServerConfig]
    mcpgym: McpGymSection = Field(default_factory=McpGymSection)
    source: Path | None = None  # the JSON file, when read from one
    disabled: list[str] = Field(default_factory=list)  # servers the file marks `disabled: true`

    @property
    def base_dir(self) -> Path:
        return self.source.parent if self.source is not None else Path.cwd()

    def tasks_path(self) -> Path | None:
        if self.mcpgym.tasks is None:
            return None
        return (self.base_dir / self.mcpgym.tasks).resolve()


def is_disabled(raw: Any) -> bool:
    """Whether an entry is switched off (`"disabled": true`): it is not read any further, so
    its variables need not be set."""
    return isinstance(raw, dict) and raw.get("disabled") is True


def _written(raw: dict[str, Any], entry: StdioEntry | RemoteEntry, source: Path | None) -> str:
    """How the file wrote the entry, for messages: its own text (variables unexpanded), plus the
    host a URL variable expanded to, which is what a refused connection needs to name."""
    if isinstance(entry, StdioEntry):
        args = raw.get("args") if isinstance(raw.get("args"), list) else []
        text = f"command: {redact_command([str(part) for part in [raw['command'], *args]])}"
    else:
        sse = "sse " if remote_protocol(entry) == "sse" else ""
        text = f"{sse}url: {redact_url(str(raw['url']))}"
        if redact_url(str(raw["url"])) != redact_url(entry.url):  # a variable in the host, port or path
            parts = urlsplit(entry.url)
            text += f" ({parts.scheme}://{parts.netloc.rpartition('@')[2]})"
    return f"{text}; config: {source}" if source is not None else text


def parse_server(
    name: str,
    raw: Any,
    *,
    where: str,
    base_dir: Path | None = None,
    source: Path | None = None,
    expander: Expander | None = None,
) -> ServerConfig:
    """One server entry -> StdioServer | HttpServer: variables expanded, then validated, and,
    when the entry came from a file, `cwd` and `envFile` resolved against the file's folder."""
    label = f"{where}: server '{name}'"
    if isinstance(raw, StdioServer | HttpServer):
        return raw
    if not isinstance(raw, dict):
        raise EnvConfigError(f"{label} must be an object with 'command' (stdio) or 'url' (http, sse)")
    raw = dict(raw)
    if "serverUrl" in raw:  # Windsurf's name for it
        if "url" in raw:
            raise EnvConfigError(f"{label} has both 'url' and 'serverUrl'; give one")
        raw["url"] = raw.pop("serverUrl")
    expander = expander or Expander(config_file=source)
    mark = len(expander.substituted)
    expanded = {
        key: value if key in _NOT_EXPANDED else expander.expand_tree(value, where=f"{label} {key}")
        for key, value in raw.items()
    }
    entry = validate_entry(expanded, label=label)
    origin = _written(raw, entry, source)
    server = _build(entry, raw, label=label, base_dir=base_dir, origin=origin)
    server._expanded = tuple(expander.substituted[mark:])
    return server


def _build(
    entry: StdioEntry | RemoteEntry, raw: dict[str, Any], *, label: str, base_dir: Path | None, origin: str
) -> ServerConfig:
    if isinstance(entry, RemoteEntry):
        try:
            return HttpServer(
                url=entry.url,
                headers=remote_headers(entry, label=label),
                type="sse" if remote_protocol(entry) == "sse" else (entry.type or entry.transport),
                timeout_s=timeout_s(entry),
                sse_read_timeout_s=sse_read_timeout_s(entry),
                origin=origin,
            )
        except ValidationError as exc:
            raise EnvConfigError(f"{label}: {first_error(exc)}") from None
    return _stdio_server(entry, raw, label=label, base_dir=base_dir, origin=origin)


def _shown(written: Any, resolved: str) -> str:
    """A path for a message: as the file wrote it where a variable went into it, else resolved."""
    return str(written) if "${" in str(written) else resolved


def _stdio_server(
    entry: StdioEntry, raw: dict[str, Any], *, label: str, base_dir: Path | None, origin: str
) -> StdioServer:
    command = sys.executable if entry.command in ("python", "python3") else entry.command
    cwd = entry.cwd
    if cwd is not None and EPISODE_DIR in cwd:
        # Made only when an episode starts (`envs.episode_dir`): nothing to check yet.
        if base_dir is not None and not cwd.startswith(EPISODE_DIR):
            cwd = str(base_dir / cwd)
    elif base_dir is not None:
        # A config file's relative paths mean "next to this file", wherever it is run from.
        cwd = str((base_dir / cwd).resolve()) if cwd is not None else str(base_dir)
    if cwd is not None and EPISODE_DIR not in cwd and not Path(cwd).is_dir():
        raise EnvConfigError(f"{label}: cwd '{_shown(raw.get('cwd', cwd), cwd)}' is not a directory")
    return StdioServer(
        command=command,
        args=list(entry.args),
        env=stdio_env(entry, base_dir=base_dir, label=label, written=_shown(raw.get("envFile"), "")),
        cwd=cwd,
        type=entry.type,
        timeout_s=timeout_s(entry),
        origin=origin,
    )


def _inputs(raw: Any, *, where: str) -> dict[str, str | None]:
    if raw is None:
        return {}
    if not isinstance(raw, list):
        raise EnvConfigError(f"{where}: 'inputs' must be a list of {{\"id\": ...}} objects")
    found: dict[str, str | None] = {}
    for i, item in enumerate(raw):
        try:
            spec = VsCodeInput.model_validate(item)
        except ValidationError as exc:
            raise EnvConfigError(f"{where}: inputs.{i}: {first_error(exc)}") from None
        if spec.id in found:
            raise EnvConfigError(f"{where}: input '{spec.id}' is declared twice")
        found[spec.id] = spec.default
    return found


def parse_mcp_config(data: Any, *, source: Path | None = None) -> McpConfig:
    """Validate a config document (already decoded from JSON), in any host's layout."""
    where = str(source) if source is not None else "mcp config"
    if not isinstance(data, dict):
        raise EnvConfigError(f"{where}: expected a JSON object with an 'mcpServers' key")
    unknown = sorted(set(data) - set(TOP_LEVEL_KEYS))
    if unknown:
        expected = ", ".join(f"'{k}'" for k in TOP_LEVEL_KEYS)
        raise EnvConfigError(f"{where}: unknown top-level key '{unknown[0]}' (expected {expected})")
    if "mcpServers" in data and "servers" in data:
        raise EnvConfigError(f"{where}: both 'mcpServers' and 'servers' (VS Code's name); give one")
    key = "servers" if "servers" in data else "mcpServers"
    servers_raw = data.get(key)
    if not isinstance(servers_raw, dict) or not servers_raw:
        raise EnvConfigError(f"{where}: '{key}' must be a non-empty object of name -> server")
    try:
        section = McpGymSection.model_validate(data.get("mcpgym") or {})
    except ValidationError as exc:
        raise EnvConfigError(f"{where}: mcpgym: {first_error(exc)}") from None
    expander = Expander(config_file=source, inputs=_inputs(data.get("inputs"), where=where))
    base_dir = source.parent.resolve() if source is not None else None
    resolved = source.resolve() if source is not None else None
    disabled = [str(name) for name, raw in servers_raw.items() if is_disabled(raw)]
    servers = {
        str(name): parse_server(str(name), raw, where=where, base_dir=base_dir, source=resolved, expander=expander)
        for name, raw in servers_raw.items()
        if not is_disabled(raw)
    }
    if not servers:
        raise EnvConfigError(f"{where}: every server is disabled ({', '.join(disabled)})")
    return McpConfig(servers=servers, mcpgym=section, source=resolved, disabled=disabled)


def load_mcp_config(path: str | Path) -> McpConfig:
    """Read and validate a config file; every problem is one EnvConfigError line."""
    path = Path(path)
    if not path.is_file():
        raise EnvConfigError(f"no such mcpServers file: {path}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise EnvConfigError(f"{path}: not valid JSON: {exc.msg} at line {exc.lineno}") from None
    except UnicodeDecodeError:
        raise EnvConfigError(f"{path}: not UTF-8 text") from None
    return parse_mcp_config(data, source=path)


__all__ = [
    "HttpServer",
    "McpConfig",
    "McpGymSection",
    "ServerConfig",
    "StdioServer",
    "expand_vars",
    "load_mcp_config",
    "parse_mcp_config",
    "parse_server",
    "redact",
]
