"""How an environment reaches its MCP servers: transport models and the `mcpServers` JSON.

`StdioServer` and `HttpServer` are the two out-of-process transports; an
in-process server is a `fastmcp.FastMCP` object or a zero-arg factory that
builds one. The standard `mcpServers` JSON (the format Claude Desktop, Cursor
and most MCP hosts use) maps names to either transport; an optional top-level
`"mcpgym"` key carries what the JSON cannot say otherwise (tasks file, system
prompt, isolation).

Secrets come only from the environment: `${VAR}` (or `${VAR:-default}`) in
`env`, `headers`, `args`, `url` or `cwd` is expanded from `os.environ` when the
config is read. The resolved `env` and `headers` are excluded from reprs so an
error message or log line never shows them.
"""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .base import EnvConfigError, IsolationMode, StdioStart


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


class HttpServer(BaseModel):
    """An MCP server reached over streamable HTTP at `url`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    url: str = Field(pattern=r"^https?://")
    headers: dict[str, str] = Field(default_factory=dict, repr=False)
    type: Literal["http", "streamable-http", "streamableHttp"] | None = None


ServerConfig = StdioServer | HttpServer


class McpGymSection(BaseModel):
    """The optional `"mcpgym"` key of an `mcpServers` JSON."""

    model_config = ConfigDict(extra="forbid")

    tasks: str | None = None  # a tasks JSONL, relative to the JSON's folder
    system_prompt: str | None = None
    isolation: IsolationMode | None = None
    stdio_start: StdioStart | None = None
    name: str | None = None


class McpConfig(BaseModel):
    """A parsed `mcpServers` file: servers by name, plus where it came from."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    servers: dict[str, ServerConfig]
    mcpgym: McpGymSection = Field(default_factory=McpGymSection)
    source: Path | None = None  # the JSON file, when read from one

    @property
    def base_dir(self) -> Path:
        return self.source.parent if self.source is not None else Path.cwd()

    def tasks_path(self) -> Path | None:
        if self.mcpgym.tasks is None:
            return None
        return (self.base_dir / self.mcpgym.tasks).resolve()


_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def expand_vars(text: str, *, where: str) -> str:
    """Expand `${VAR}` / `${VAR:-default}` from the environment. A variable that is
    not set (and has no default) is a config error naming the variable, never a value."""

    def sub(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        value = os.environ.get(name)
        if value is None:
            if default is not None:
                return default
            raise EnvConfigError(f"{where} references ${{{name}}}, which is not set in the environment")
        return value

    return _VAR.sub(sub, text)


def _first_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    loc = ".".join(str(part) for part in err["loc"]) or "(top level)"
    if err["type"] == "extra_forbidden":
        return f"unknown key '{loc}'"
    if err["type"] == "missing":
        return f"missing key '{loc}'"
    return f"{loc}: {err['msg']}"


def parse_server(name: str, raw: Any, *, where: str, base_dir: Path | None = None) -> ServerConfig:
    """One `mcpServers` entry -> StdioServer | HttpServer, with `${VAR}` expanded and,
    when the entry came from a file, `cwd` resolved against the file's folder."""
    label = f"{where}: server '{name}'"
    if isinstance(raw, StdioServer | HttpServer):
        return raw
    if not isinstance(raw, dict):
        raise EnvConfigError(f"{label} must be an object with 'command' (stdio) or 'url' (http)")
    if "url" in raw and "command" in raw:
        raise EnvConfigError(f"{label} has both 'command' and 'url'; give one")
    model: type[StdioServer] | type[HttpServer]
    if "url" in raw:
        model = HttpServer
    elif "command" in raw:
        model = StdioServer
    else:
        raise EnvConfigError(f"{label} needs 'command' (stdio) or 'url' (http)")
    try:
        server = model.model_validate(raw)
    except ValidationError as exc:
        raise EnvConfigError(f"{label}: {_first_error(exc)}") from None
    if isinstance(server, HttpServer):
        return HttpServer(
            url=expand_vars(server.url, where=f"{label} url"),
            headers={k: expand_vars(v, where=f"{label} header '{k}'") for k, v in server.headers.items()},
            type=server.type,
        )
    command = server.command
    if command in ("python", "python3"):
        command = sys.executable
    cwd = expand_vars(server.cwd, where=f"{label} cwd") if server.cwd is not None else None
    if base_dir is not None:
        # A config file's relative paths mean "next to this file", wherever it is run from.
        cwd = str((base_dir / cwd).resolve()) if cwd is not None else str(base_dir)
    if cwd is not None and not Path(cwd).is_dir():
        raise EnvConfigError(f"{label}: cwd '{cwd}' is not a directory")
    return StdioServer(
        command=command,
        args=[expand_vars(a, where=f"{label} args") for a in server.args],
        env={k: expand_vars(v, where=f"{label} env '{k}'") for k, v in server.env.items()},
        cwd=cwd,
        type=server.type,
    )


def parse_mcp_config(data: Any, *, source: Path | None = None) -> McpConfig:
    """Validate an `mcpServers` document (already decoded from JSON)."""
    where = str(source) if source is not None else "mcp config"
    if not isinstance(data, dict):
        raise EnvConfigError(f"{where}: expected a JSON object with an 'mcpServers' key")
    unknown = sorted(set(data) - {"mcpServers", "mcpgym"})
    if unknown:
        raise EnvConfigError(f"{where}: unknown top-level key '{unknown[0]}' (expected 'mcpServers', 'mcpgym')")
    servers_raw = data.get("mcpServers")
    if not isinstance(servers_raw, dict) or not servers_raw:
        raise EnvConfigError(f"{where}: 'mcpServers' must be a non-empty object of name -> server")
    try:
        section = McpGymSection.model_validate(data.get("mcpgym") or {})
    except ValidationError as exc:
        raise EnvConfigError(f"{where}: mcpgym: {_first_error(exc)}") from None
    base_dir = source.parent.resolve() if source is not None else None
    servers = {
        str(name): parse_server(str(name), raw, where=where, base_dir=base_dir) for name, raw in servers_raw.items()
    }
    return McpConfig(servers=servers, mcpgym=section, source=source.resolve() if source else None)


def load_mcp_config(path: str | Path) -> McpConfig:
    """Read and validate an `mcpServers` JSON file; every problem is one EnvConfigError line."""
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
