"""Opening an env by spec for the CLIs: `envs.load(spec)` plus its lifetime."""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any


@asynccontextmanager
async def open_env(spec: str, *, replay: str | None = None) -> AsyncIterator[Any]:
    """The env named by `spec`, started for the block and closed after it; `replay`: a
    `--replay MODE[:PATH]` value applied to it (`envs.replay`).

    `envs.load` raises `EnvConfigError` for a bad spec (one line, exit 2 in a CLI).
    """
    import envs
    from envs.replay import attach, replay_from_flag

    setting = replay_from_flag(replay)
    env = envs.load(spec)
    if inspect.isawaitable(env):
        env = await env
    attach(env, setting)
    if hasattr(env, "__aenter__"):
        async with env:
            yield env
        return
    try:
        yield env
    finally:
        close = getattr(env, "aclose", None)
        if close is not None:
            await close()
