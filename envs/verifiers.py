"""A verifier of one's own: a function named in the MCP config's `mcpgym` section.

    {"mcpServers": {...},
     "mcpgym": {"tasks": "tasks.jsonl", "verifier": "my_checks.py:verify"}}

`"verifier"` is `path/to/file.py:function` or `package.module:function`, both looked up in the
config file's folder first (then, for a module, on the import path). The function:

    def verify(task: Task, answer: str, calls: list[ToolCall]) -> bool | float | Verdict

- `task`: the `contracts.Task` as the tasks file gave it (`question`, `answer`, `expected_calls`,
  `metadata`, ...);
- `answer`: the model's final answer text ("" when it gave none);
- `calls`: every tool call the model made, in order (`ToolCall.name`, and `parsed_arguments()`
  for the arguments as a dict: it raises ValueError when the model wrote arguments that are
  not a JSON object);
- `turns=` (only to a function that takes it, or `**kwargs`): for a conversation of several user
  turns, the calls of each turn, a list per turn.

It returns `True`/`False` (score 1 or 0), a number in [0, 1] (the score; a success when it is
1), or a `contracts.Verdict(success, score, reason)`. It may be `async def`. It runs in the
process that drives the rollouts (not in the server's), once per finished episode; what it
raises makes that episode an infra failure (masked, never scored 0), with the error's line.

That score is the env's verdict, which `--judge env` takes as the reward unchanged (and which
the other judges read: `rules` ranks successes above failures with it).
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

from common.refs import load_ref
from contracts import EnvConfigError, Verdict

# (task, answer, calls[, turns=]) -> bool | float | Verdict (or an awaitable of one)
Verifier = Callable[..., Any]


def load_verifier(ref: str, *, base_dir: Path | None) -> Verifier:
    """The function `ref` names, checked to take (task, answer, calls); EnvConfigError (one line)
    when it cannot be found or called that way."""
    try:
        func = load_ref(ref, base_dir=base_dir, what="verifier")
    except ValueError as exc:
        raise EnvConfigError(str(exc)) from None
    if not callable(func):
        raise EnvConfigError(f"verifier '{ref}' is a {type(func).__name__}, not a function")
    try:
        inspect.signature(func).bind(None, "", [])
    except TypeError:
        raise EnvConfigError(f"verifier '{ref}' must take (task, answer, calls)") from None
    except ValueError:  # no signature to inspect (a builtin): the call will tell
        pass
    return func


def as_verdict(value: Any) -> Verdict:
    """What a verifier returned, as a Verdict: a bool, a number in [0, 1], a Verdict or its dict.
    ValueError naming what came back otherwise."""
    if isinstance(value, Verdict):
        return value
    if isinstance(value, bool):
        return Verdict(success=value, score=float(value), reason="verifier: passed" if value else "verifier: failed")
    if isinstance(value, int | float):
        score = float(value)
        if not (math.isfinite(score) and 0.0 <= score <= 1.0):
            raise ValueError(f"verifier returned {value!r}: a score must be a number in [0, 1]")
        return Verdict(success=score >= 1.0, score=score, reason=f"verifier: score {score:g}")
    if isinstance(value, dict):
        return Verdict.model_validate(value)
    raise ValueError(f"verifier returned a {type(value).__name__}: expected a bool, a number in [0, 1] or a Verdict")


async def awaited_verdict(pending: Any) -> Verdict:
    """An async verifier's result, once it has come, as a Verdict."""
    return as_verdict(await pending)


__all__ = ["Verifier", "as_verdict", "awaited_verdict", "load_verifier"]
