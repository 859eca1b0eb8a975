"""`envs.load(spec)`: one string names an environment, whatever form it comes in.

A spec is, in the order tried:
- a path to an MCP config JSON (`path/to/mcp.json`) in any host's dialect
  (`mcpServers`, VS Code's `servers` + `inputs`; see `envs.config`), with tasks
  from the `tasks=` keyword or the JSON's `"mcpgym": {"tasks": ...}` key;
- `package.module:factory`, where the factory returns an `MCPEnv` (or a
  FastMCP server, which then becomes the env's in-process server factory), or
  the attribute is a FastMCP server itself;
- a name: a built-in (`energy`, `bfcl-multi-turn`) or any entry point in group `mcpgym.envs`.

A spec that does not resolve is one `EnvConfigError` line.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from common.refs import load_ref
from contracts import EnvConfigError

ENTRY_POINT_GROUP = "mcpgym.envs"
# Built-ins work even where the distribution's entry points are not installed.
BUILTINS: dict[str, str] = {"energy": "envs.energy:load_env", "bfcl-multi-turn": "envs.bfcl_mt:load_env"}


@dataclass(frozen=True)
class EnvEntry:
    name: str
    target: str  # "package.module:attribute"
    source: str  # "built-in" or "entry point (<distribution>)"


def available() -> list[EnvEntry]:
    """Every env that a bare name can load: built-ins, then other entry points."""
    found: dict[str, EnvEntry] = {name: EnvEntry(name, target, "built-in") for name, target in BUILTINS.items()}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name in found and found[ep.name].target == ep.value:
            continue  # the built-in, declared by our own distribution
        dist = ep.dist.name if ep.dist is not None else "?"
        found.setdefault(ep.name, EnvEntry(ep.name, ep.value, f"entry point ({dist})"))
    return sorted(found.values(), key=lambda e: e.name)


def _import_target(target: str, *, spec: str) -> Any:
    """The factory `target` names (`package.module:factory` or `file.py:factory`)."""
    module_name, _, attr = target.rpartition(":")
    if not module_name or not attr:
        raise EnvConfigError(f"env spec '{spec}': expected 'package.module:factory'")
    try:
        return load_ref(target, what="env spec")
    except ValueError as exc:
        raise EnvConfigError(str(exc).replace(f"'{target}'", f"'{spec}'", 1)) from None


def _build(obj: Any, *, spec: str, default_name: str, kwargs: dict[str, Any]) -> Any:
    from fastmcp import FastMCP

    from .mcp_env import MCPEnv

    if isinstance(obj, MCPEnv):
        if kwargs:
            raise EnvConfigError(f"env spec '{spec}' is an MCPEnv instance; it takes no options ({', '.join(kwargs)})")
        return obj
    if isinstance(obj, FastMCP):
        return MCPEnv(obj, **{"name": default_name, **kwargs})
    if not callable(obj):
        raise EnvConfigError(f"env spec '{spec}' is a {type(obj).__name__}, not a factory")
    if _accepts(obj, kwargs):
        result = obj(**kwargs)
        if isinstance(result, MCPEnv):
            return result
        if isinstance(result, FastMCP):
            # A server factory: keep the factory itself so per_process can build fresh servers.
            return MCPEnv(obj, name=default_name)
    elif _accepts(obj, {}):
        # A zero-arg server factory given env options: the options are the env's.
        result = obj()
        if isinstance(result, FastMCP):
            return MCPEnv(obj, **{"name": default_name, **kwargs})
        raise EnvConfigError(f"env spec '{spec}' does not accept options {', '.join(kwargs)}")
    else:
        raise EnvConfigError(f"env spec '{spec}' does not accept options {', '.join(kwargs)}")
    raise EnvConfigError(f"env spec '{spec}' returned {type(result).__name__}, expected an MCPEnv or a FastMCP server")


def _accepts(func: Any, kwargs: dict[str, Any]) -> bool:
    try:
        inspect.signature(func).bind(**kwargs)
    except TypeError:
        return False
    except ValueError:  # no signature to inspect (a builtin): let the call decide
        return True
    return True


def _load_json(path: Path, kwargs: dict[str, Any]) -> Any:
    from .config import load_mcp_config

    config = load_mcp_config(path)  # before importing the MCP stack: a bad file fails fast

    from .mcp_env import MCPEnv

    name = kwargs.pop("name", None) or config.mcpgym.name or path.stem
    return MCPEnv(config, name=name, **kwargs)


def load(spec: str | Path, **kwargs: Any) -> Any:
    """Resolve `spec` to an `MCPEnv` (not started: `await env.start()` or `async with env`).
    Keyword options go to the env (or its factory): isolation, tasks, system_prompt, ..."""
    text = str(spec).strip()
    if not text:
        raise EnvConfigError("empty env spec")
    path = Path(text)
    if text.endswith(".json") or path.is_file():
        return _load_json(path, dict(kwargs))
    if ":" in text:
        obj = _import_target(text, spec=text)
        return _build(obj, spec=text, default_name=text.partition(":")[0].rsplit(".", 1)[-1], kwargs=dict(kwargs))
    entries = {entry.name: entry for entry in available()}
    entry = entries.get(text)
    if entry is None:
        names = ", ".join(entries) or "none"
        raise EnvConfigError(
            f"unknown env '{text}': not a built-in or entry point ({names}), a package.module:factory, "
            "or an mcpServers JSON file"
        )
    obj = _import_target(entry.target, spec=text)
    return _build(obj, spec=text, default_name=entry.name, kwargs=dict(kwargs))
