"""Record and replay of tool results: a SQLite store of what each tool call answered.

Tools that cost money or drift (a search API, a paid database, a web page) are called again and
again by GRPO (`group_size` samples per task, every epoch) and by repeated evaluations. With a
replay store, a call's result is recorded once and answered from the store afterwards:

- `record`: every call goes to the server; its result is stored (the first one recorded wins).
- `replay`: every call is answered from the store, the server is never called; a call the store
  does not hold is the environment's failure (`EnvInfraError` naming the tool), never the model's.
- `auto`: answered from the store where it holds the call; otherwise called live and recorded.
- `off`: no store (the default).

What is stored: the text the model reads (before the env's `max_output_chars` cut, which applies
on the way out as for a live call), the outcome (ok, or the model's error kind: `tool_error`,
`bad_arguments`, ...) and whether the server's answer was cut. Timeouts are not stored: they say
nothing about the call, only about that moment.

The key: sha256 of `[server, tool, arguments, history]`, where `arguments` is the canonical JSON
of the call's arguments (sorted keys, no spaces: `{"b":1,"a":2}` and `{"a":2,"b":1}` are one
call) and `history` is a hash chain of the calls the same episode made earlier on the same server
(each the tool and its canonical arguments, the task's `setup` calls first). So the same call after
different side effects is a different entry, and the same call at the same point of an episode that
did the same things before is the same entry, whichever episode or process makes it. Calls of one
step that run at once (`parallel_calls`) all see the history as it was before the step, which then
takes them in call order; calls that run one after another each see the ones before. Tools named in
`stateless` (results that depend only on their arguments: a search, a lookup of fixed data) are
keyed without the history and leave it unchanged, so they hit across episodes whatever came before.
Under `isolation: "shared"`, episodes see one another's side effects, which no per-episode key can
capture: replay there assumes the tools are stateless.

The store is one SQLite file in WAL mode (readers never block the writer; concurrent rollouts of
one or several processes share it), written with `INSERT OR IGNORE` in one transaction per entry,
so a process killed at any moment (kill -9) leaves only whole entries. It is created owner-only
(`common.files.open_private`: 0600 unless `MCPGYM_FILE_MODE`, never through a planted link);
SQLite gives its `-wal` and `-shm` files the same mode.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import sqlite3
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from common.files import open_private
from contracts import EnvConfigError, EnvInfraError

ReplayMode = Literal["record", "replay", "auto", "off"]
REPLAY_MODES: tuple[ReplayMode, ...] = ("record", "replay", "auto", "off")
DEFAULT_STORE = "tools.sqlite"
# The start of the infra error a replay miss raises (rollouts.stats counts these as misses).
MISS_PREFIX = "replay miss"
# The history of an episode that has made no call yet on a server.
EMPTY_HISTORY = hashlib.sha256(b"mcpgym/replay/v1").hexdigest()

_SCHEMA = """
CREATE TABLE IF NOT EXISTS results (
    key TEXT PRIMARY KEY,
    server TEXT NOT NULL,
    tool TEXT NOT NULL,
    arguments TEXT NOT NULL,
    history TEXT NOT NULL,
    error TEXT,
    content TEXT NOT NULL,
    truncated INTEGER NOT NULL,
    recorded_at REAL NOT NULL
)
"""


class ReplaySetting(BaseModel):
    """The `"replay"` key of a config's `mcpgym` section, and what `--replay MODE[:PATH]` sets."""

    model_config = ConfigDict(extra="forbid")

    mode: ReplayMode = "off"
    path: str = DEFAULT_STORE  # relative to the config file's folder (to the working folder without one)
    stateless: list[str] = Field(default_factory=list)  # tools keyed without the episode's history

    def describe(self) -> str:
        if self.mode == "off":
            return "off"
        extra = f", stateless: {', '.join(self.stateless)}" if self.stateless else ""
        return f"{self.mode} ({self.path}{extra})"


def parse_replay_flag(value: str) -> ReplaySetting:
    """`--replay MODE[:PATH]` -> a setting; ValueError (one line) for an unknown mode or empty path.
    Without PATH the store is the config's (or `tools.sqlite`): `ReplaySetting.path`'s default."""
    mode, sep, path = value.partition(":")
    mode = mode.strip()
    if mode not in REPLAY_MODES:
        raise ValueError(f"--replay {value!r}: the mode must be one of {', '.join(REPLAY_MODES)} (MODE or MODE:PATH)")
    if sep and not path.strip():
        raise ValueError(f"--replay {value!r}: an empty PATH after ':'")
    if sep:  # a path on the command line is the user's, relative to the working folder
        return ReplaySetting(mode=mode, path=str(Path(path).expanduser().absolute()))  # type: ignore[arg-type]
    return ReplaySetting(mode=mode)  # type: ignore[arg-type]


def replay_from_flag(value: str | None) -> ReplaySetting | None:
    """A CLI's `--replay` value (None: not given) -> a setting; EnvConfigError (one line, exit 2) if bad."""
    if value is None:
        return None
    try:
        return parse_replay_flag(value)
    except ValueError as exc:
        raise EnvConfigError(str(exc)) from None


def canonical_arguments(arguments: dict[str, Any]) -> str:
    """One spelling per set of arguments: sorted keys, no spaces, UTF-8 as it is."""
    return json.dumps(arguments, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def advance(history: str, tool: str, arguments: dict[str, Any]) -> str:
    """The history after one more call of `tool` with `arguments` (a hash chain)."""
    return hashlib.sha256(json.dumps([history, tool, canonical_arguments(arguments)]).encode()).hexdigest()


def entry_key(server: str, tool: str, arguments: dict[str, Any], history: str) -> str:
    return hashlib.sha256(json.dumps([server, tool, canonical_arguments(arguments), history]).encode()).hexdigest()


class Recorded(BaseModel):
    """One stored result: what `MCPEpisode._reply` got for the call."""

    error: str | None  # None: ok; else the model's error kind (tool_error, bad_arguments, ...)
    text: str
    truncated: bool = False


# A live call: its result and whether it may be stored (not a timeout).
LiveCall = Callable[[], Awaitable[tuple[Recorded, bool]]]


class ReplayStore:
    """The SQLite store of one process: one connection, used under a lock from worker threads."""

    def __init__(self, path: str | Path, mode: ReplayMode, *, stateless: tuple[str, ...] = ()) -> None:
        if mode == "off":
            raise ValueError("a replay store needs a mode other than off")
        self.path = Path(path)
        self.mode: ReplayMode = mode
        self.stateless = frozenset(stateless)
        if mode == "replay" and not self.path.is_file():
            raise EnvConfigError(f"replay store {self.path} does not exist (record it first with --replay record)")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        os.close(open_private(self.path, os.O_RDWR | os.O_CREAT))  # owner-only, never through a link
        self._lock = threading.Lock()
        try:
            self._db = sqlite3.connect(self.path, timeout=60, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            # NORMAL under WAL: a killed process loses nothing committed; only a power cut may lose the last ones.
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute(_SCHEMA)
        except sqlite3.DatabaseError as exc:
            raise EnvConfigError(f"replay store {self.path}: {exc}") from None

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _get(self, key: str) -> Recorded | None:
        with self._lock:
            row = self._db.execute("SELECT error, content, truncated FROM results WHERE key = ?", (key,)).fetchone()
        return None if row is None else Recorded(error=row[0], text=row[1], truncated=bool(row[2]))

    def _put(self, key: str, server: str, tool: str, arguments: str, history: str, result: Recorded) -> None:
        with self._lock:
            self._db.execute(
                "INSERT OR IGNORE INTO results VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (key, server, tool, arguments, history, result.error, result.text, int(result.truncated), time.time()),
            )

    def count(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM results").fetchone()[0])

    def history_for(self, tool: str, history: str) -> str:
        """The history a call of `tool` is keyed with (none for a stateless tool)."""
        return EMPTY_HISTORY if tool in self.stateless else history

    def after(self, tool: str, arguments: dict[str, Any], history: str) -> str:
        """The history after a call of `tool` (unchanged by a stateless tool)."""
        return history if tool in self.stateless else advance(history, tool, arguments)

    async def call(
        self, server: str, tool: str, arguments: dict[str, Any], history: str, live: LiveCall
    ) -> tuple[Recorded, Literal["hit", "miss", "recorded"] | None]:
        """The result of one call under the store's mode, and what the store did ("recorded" only when
        it stored the result: under record, a timeout is neither a hit, a miss nor recorded)."""
        keyed = self.history_for(tool, history)
        key = entry_key(server, tool, arguments, keyed)
        if self.mode != "record":
            try:
                found = await asyncio.to_thread(self._get, key)
            except sqlite3.Error as exc:
                raise EnvInfraError(f"replay store {self.path}: {exc}") from None
            if found is not None:
                return found, "hit"
            if self.mode == "replay":
                raise EnvInfraError(
                    f"{MISS_PREFIX}: tool '{tool}' of server '{server}' with these arguments at this point of the "
                    f"episode is not in {self.path} (record it with --replay record or auto)"
                )
        result, storable = await live()
        if storable:
            try:
                await asyncio.to_thread(self._put, key, server, tool, canonical_arguments(arguments), keyed, result)
            except sqlite3.Error as exc:
                raise EnvInfraError(f"replay store {self.path}: {exc}") from None
        if self.mode == "record":
            return result, "recorded" if storable else None
        return result, "miss"


def open_store(setting: ReplaySetting | None, base_dir: Path) -> ReplayStore | None:
    """The store a setting asks for (None for off), its path taken relative to `base_dir`."""
    if setting is None or setting.mode == "off":
        return None
    path = Path(setting.path).expanduser()
    if not path.is_absolute():
        path = base_dir / path
    return ReplayStore(path, setting.mode, stateless=tuple(setting.stateless))


def attach(env: Any, setting: ReplaySetting | None) -> None:
    """Apply a `--replay` flag to a loaded env: its mode wins; its path wins where the flag gave one,
    else the config's `replay.path`. An env that is not an MCP env cannot replay: a config error."""
    if setting is None:
        return
    if not hasattr(env, "set_replay"):  # e.g. a custom `contracts.Environment`
        raise EnvConfigError(f"env {getattr(env, 'name', env)!r} is not an MCP env: --replay works with MCP envs only")
    env.set_replay(setting)


__all__ = [
    "DEFAULT_STORE",
    "MISS_PREFIX",
    "REPLAY_MODES",
    "Recorded",
    "ReplayMode",
    "ReplaySetting",
    "ReplayStore",
    "attach",
    "canonical_arguments",
    "entry_key",
    "open_store",
    "parse_replay_flag",
    "replay_from_flag",
]
