"""train.phase_clock: a phase's own seconds, nested phases taken out of the outer one."""

from __future__ import annotations

import time

import pytest

from train.phase_clock import PhaseClock, format_phases, phase_table


def test_nested_phases_count_once_and_add_up_to_the_wall_time() -> None:
    seconds: dict[str, float] = {}
    clock = PhaseClock(seconds)
    started = time.perf_counter()
    with clock.phase("grpo:other"):
        time.sleep(0.05)
        with clock.phase("grpo:train"):
            time.sleep(0.1)
        with clock.phase("eval:val"):
            time.sleep(0.05)
    with clock.phase("grpo:train"):  # a second step adds to the first
        time.sleep(0.05)
    wall = time.perf_counter() - started
    assert seconds["grpo:other"] == pytest.approx(0.05, abs=0.03)
    assert seconds["grpo:train"] == pytest.approx(0.15, abs=0.03)
    assert seconds["eval:val"] == pytest.approx(0.05, abs=0.03)
    table = phase_table(seconds)
    assert table["total"]["seconds"] == pytest.approx(wall, abs=0.01)
    assert table["rl"]["seconds"] == pytest.approx(seconds["grpo:other"] + seconds["grpo:train"])
    assert table["rl"]["share"] == pytest.approx(table["rl"]["seconds"] / table["total"]["seconds"])
    text = format_phases(table)
    assert "grpo:train" in text and "total" in text and "%" in text


def test_a_phase_that_raises_is_still_counted() -> None:
    seconds: dict[str, float] = {}
    clock = PhaseClock(seconds)
    with pytest.raises(RuntimeError), clock.phase("warm_start:sft"):
        time.sleep(0.02)
        raise RuntimeError("boom")
    assert seconds["warm_start:sft"] >= 0.02
