"""Weave tracing is off unless asked for, never breaks a run, and records what it should.

weave cannot reach its server here (no internet, no key), so `init` is given as an argument
and `weave.op` is watched: what is tested is mcpgym's wiring, not weave itself."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import weave

from rollouts import tracing


@pytest.fixture(autouse=True)
def tracing_off_after() -> Iterator[None]:
    yield
    tracing.setup_tracing(None)


@pytest.fixture
def ops(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, Any]]:
    calls: list[tuple[str, Any]] = []

    def op(fn: Any, *, name: str, **_: Any) -> Any:
        def run(*args: Any, **kwargs: Any) -> Any:
            result = fn(*args, **kwargs)
            calls.append((name, result))
            return result

        return run

    monkeypatch.setattr(weave, "op", op)
    return calls


def test_off_unless_asked(ops: list[tuple[str, Any]]) -> None:
    assert tracing.wanted_project(None, environ={}) is None
    # A W&B key alone never starts tracing: only the flag or mcpgym's own variable.
    assert tracing.wanted_project(None, environ={"WANDB_API_KEY": "k"}) is None
    assert tracing.wanted_project(None, environ={"MCPGYM_WEAVE": "team/p"}) == "team/p"
    assert tracing.wanted_project("", environ={}) == "mcpgym"
    assert tracing.wanted_project("p", disabled=True, environ={"MCPGYM_WEAVE": "q"}) is None
    assert not tracing.setup_tracing(None)

    def fn() -> int:
        return 1

    assert tracing.traced(fn) is fn
    tracing.record("grpo_step", {"reward_mean": 0.5})
    assert ops == []


def test_step_metrics_are_recorded_when_on(ops: list[tuple[str, Any]]) -> None:
    started: list[str] = []
    assert tracing.setup_tracing("proj", init=started.append)
    assert started == ["proj"] and tracing.tracing_enabled()
    tracing.record("grpo_step", {"iteration": 1, "reward_mean": 0.25})
    assert ops == [("grpo_step", {"iteration": 1, "reward_mean": 0.25})]


def test_a_failing_start_warns_once_and_stays_off(capsys: pytest.CaptureFixture[str]) -> None:
    def init(project: str) -> None:
        raise ConnectionError("offline\nmore detail")

    assert not tracing.setup_tracing("proj", init=init)
    assert not tracing.tracing_enabled()
    assert capsys.readouterr().err.strip() == "warning: weave tracing is off (ConnectionError: offline)"


def test_traced_inputs_never_carry_the_policy_or_its_key() -> None:
    class Policy:
        model = "m"
        api_key = "sk-secret"

    safe = tracing._safe_inputs({"policy": Policy(), "task": {"id": "t"}, "sample": 0, "env": None})
    assert safe == {"task": {"id": "t"}, "sample": 0, "group": None, "model": "m", "env": None}
    assert "sk-secret" not in repr(safe)
