"""One `mcpServers` entry as the hosts write it, validated strictly on fastmcp's own models.

fastmcp's `StdioMCPServer` / `RemoteMCPServer` (`fastmcp.mcp_config`) define the canonical
keys (`command`/`args`/`env`/`cwd`, `url`/`headers`/`auth`, `transport`, `timeout` in ms,
`sse_read_timeout`, `description`, `icon`, ...). They keep unknown keys; here the same models
refuse them (a typo is an error, not a silently ignored setting) and also take the keys other
hosts write: `type` (Claude Code, Cursor, VS Code: `stdio`, `http`, `sse`, `streamableHttp`),
`disabled` (Cline, Windsurf, fastmcp: the server is skipped), `envFile` (Cursor, VS Code),
`serverUrl` (Windsurf, for `url`) and approval/editor keys that mean nothing to a headless run.
"""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import Any, Literal

from dotenv import dotenv_values
from fastmcp.mcp_config import RemoteMCPServer, StdioMCPServer, infer_transport_type_from_url
from pydantic import BaseModel, ConfigDict, Field, StrictBool, ValidationError

from contracts import EnvConfigError

RemoteType = Literal["http", "streamable-http", "streamableHttp", "sse"]
_TRANSFORMS = ("tools", "include_tags", "exclude_tags")


class HostKeys(BaseModel):
    """Keys hosts write that a headless run accepts: `disabled` is honoured, the rest only name
    things for an editor (auto-approval lists, VS Code's dev mode and gallery)."""

    disabled: StrictBool = False
    autoApprove: list[str] | None = None
    alwaysAllow: list[str] | None = None
    dev: dict[str, Any] | None = None
    gallery: str | bool | None = None
    version: str | None = None


class StdioEntry(StdioMCPServer, HostKeys):
    model_config = ConfigDict(extra="forbid")

    command: str = Field(min_length=1)
    env: dict[str, str] = Field(default_factory=dict)
    envFile: str | None = None
    timeout: float | None = Field(default=None, gt=0)  # ms, per tool call


class RemoteEntry(RemoteMCPServer, HostKeys):
    model_config = ConfigDict(extra="forbid")

    url: str = Field(pattern=r"^https?://")
    type: RemoteType | None = None
    auth: str | None = None  # a bearer token (fastmcp); "oauth" needs a browser, refused below
    timeout: float | None = Field(default=None, gt=0)  # ms, per tool call
    sse_read_timeout: datetime.timedelta | float | None = None


def first_error(exc: ValidationError) -> str:
    """A pydantic error as one line naming the key; the message never holds the value."""
    err = exc.errors()[0]
    loc = ".".join(str(part) for part in err["loc"]) or "(top level)"
    if err["type"] == "extra_forbidden":
        return f"unknown key '{loc}'"
    if err["type"] == "missing":
        return f"missing key '{loc}'"
    return f"{loc}: {err['msg']}"


def entry_kind(raw: dict[str, Any], *, label: str) -> Literal["stdio", "remote"]:
    """Which transport an entry means, from `command`/`url` and its `type`/`transport`."""
    if any(key in raw for key in _TRANSFORMS):
        keys = ", ".join(k for k in _TRANSFORMS if k in raw)
        raise EnvConfigError(f"{label}: fastmcp tool transforms ({keys}) are not supported; list tools unfiltered")
    if "url" in raw and "command" in raw:
        raise EnvConfigError(f"{label} has both 'command' and 'url'; give one")
    declared = {raw[k] for k in ("type", "transport") if isinstance(raw.get(k), str)}
    if len(declared) > 1 and not declared <= {"http", "streamable-http", "streamableHttp"}:
        raise EnvConfigError(f"{label}: 'type' and 'transport' disagree ({' vs '.join(sorted(declared))})")
    if "command" in raw:
        remote = declared & {"http", "streamable-http", "streamableHttp", "sse"}
        if remote:
            raise EnvConfigError(f"{label}: type '{remote.pop()}' needs 'url', not 'command'")
        return "stdio"
    if "url" in raw:
        if "stdio" in declared:
            raise EnvConfigError(f"{label}: type 'stdio' needs 'command', not 'url'")
        return "remote"
    raise EnvConfigError(f"{label} needs 'command' (stdio) or 'url' (http, sse)")


def validate_entry(raw: dict[str, Any], *, label: str) -> StdioEntry | RemoteEntry:
    model = StdioEntry if entry_kind(raw, label=label) == "stdio" else RemoteEntry
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        raise EnvConfigError(f"{label}: {first_error(exc)}") from None


def remote_protocol(entry: RemoteEntry) -> Literal["http", "sse"]:
    """`sse` or (streamable) `http`: as declared, else inferred from the URL as fastmcp does."""
    declared = entry.type or entry.transport
    if declared is None:
        return infer_transport_type_from_url(entry.url)
    return "sse" if declared == "sse" else "http"


def remote_headers(entry: RemoteEntry, *, label: str) -> dict[str, str]:
    """The entry's headers, with fastmcp's `auth` token as `Authorization: Bearer`."""
    headers = dict(entry.headers)
    if entry.auth is None:
        return headers
    if entry.auth == "oauth":
        raise EnvConfigError(f"{label}: auth 'oauth' needs a browser; give a token in 'auth' or 'headers'")
    if any(k.lower() == "authorization" for k in headers):
        raise EnvConfigError(f"{label}: both 'auth' and an Authorization header; give one")
    headers["Authorization"] = f"Bearer {entry.auth}"
    return headers


def stdio_env(entry: StdioEntry, *, base_dir: Path | None, label: str, written: str = "") -> dict[str, str]:
    """`envFile` (relative to the config's folder) under the entry's own `env`, which wins.
    `written`: how messages name the file where a variable went into its path (never its value)."""
    if entry.envFile is None:
        return dict(entry.env)
    path = Path(entry.envFile)
    if not path.is_absolute():
        path = (base_dir or Path.cwd()) / path
    if not path.is_file():
        raise EnvConfigError(f"{label}: envFile '{written or path}' does not exist")
    loaded = {k: v for k, v in dotenv_values(path).items() if v is not None}
    return {**loaded, **entry.env}


def timeout_s(entry: StdioEntry | RemoteEntry) -> float | None:
    return entry.timeout / 1000 if entry.timeout is not None else None


def sse_read_timeout_s(entry: RemoteEntry) -> float | None:
    value = entry.sse_read_timeout
    if isinstance(value, datetime.timedelta):
        return value.total_seconds()
    return float(value) if value is not None else None
