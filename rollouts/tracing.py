"""Weave tracing of rollouts, only when the user turns it on.

On only when asked: `--weave PROJECT` (bare `--weave`: project "mcpgym"), or
mcpgym's own variable `MCPGYM_WEAVE=PROJECT`; a W&B key alone never turns it
on. `--no-weave` keeps it off even with MCPGYM_WEAVE set.
Off, nothing is imported and `traced(fn)` is `fn` itself. If weave cannot
start (offline, bad key), a one-line warning is printed and the run goes on
untraced: tracing is never a reason for a rollout to fail.

What a trace records of a rollout is the task, the sample and the model name,
never the env or policy objects (the policy's client holds the API key).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])

DEFAULT_PROJECT = "mcpgym"
_state: dict[str, Any] = {"enabled": False, "project": None}


def wanted_project(flag: str | None, *, disabled: bool = False, environ: Mapping[str, str] | None = None) -> str | None:
    """The weave project to trace into, or None for no tracing. `flag` is `--weave`'s value: None
    (not given), "" (given bare: the default project) or a project name."""
    environ = os.environ if environ is None else environ
    if disabled:
        return None
    if flag is not None:
        return flag or DEFAULT_PROJECT
    return environ.get("MCPGYM_WEAVE", "").strip() or None


def setup_tracing(project: str | None, *, init: Callable[[str], Any] | None = None) -> bool:
    """Start weave for `project` (None: stay off). Returns whether tracing is on."""
    if not project:
        _state.update(enabled=False, project=None)
        return False
    try:
        if init is None:
            import weave

            init = weave.init
        init(project)
    except Exception as exc:  # offline, no key, weave missing: trace nothing, break nothing
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        print(f"warning: weave tracing is off ({type(exc).__name__}: {first})", file=sys.stderr)
        _state.update(enabled=False, project=None)
        return False
    _state.update(enabled=True, project=project)
    return True


def tracing_enabled() -> bool:
    return bool(_state["enabled"])


def traced(fn: F, *, name: str | None = None) -> F:
    """`fn` as a weave op when tracing is on, else `fn` unchanged."""
    if not tracing_enabled():
        return fn
    import weave

    return weave.op(  # type: ignore[return-value]
        fn,
        name=name or fn.__name__,
        postprocess_inputs=_safe_inputs,
        postprocess_output=_safe_output,
    )


def record(name: str, metrics: Mapping[str, Any]) -> None:
    """One weave call named `name` holding `metrics` (plain numbers and names, e.g. a GRPO step's
    row); nothing when tracing is off. A failure to record never stops the run."""
    if not tracing_enabled():
        return
    import weave

    def log(metrics: dict[str, Any]) -> dict[str, Any]:
        return metrics

    try:
        weave.op(log, name=name)(dict(metrics))
    except Exception as exc:
        print(f"warning: weave did not record {name} ({type(exc).__name__})", file=sys.stderr)


def _safe_inputs(inputs: dict[str, Any]) -> dict[str, Any]:
    task = inputs.get("task")
    policy = inputs.get("policy")
    return {
        "task": task.model_dump(mode="json") if hasattr(task, "model_dump") else task,
        "sample": inputs.get("sample"),
        "group": inputs.get("group"),
        "model": getattr(policy, "model", None),
        "env": getattr(inputs.get("env"), "name", None),
    }


def _safe_output(output: Any) -> Any:
    return output.model_dump(mode="json") if hasattr(output, "model_dump") else output
