"""The rule rubric, its config file, composition specs and masking of infra failures (no LLM)."""

from __future__ import annotations

from pathlib import Path

import pytest

from contracts import TrajectoryError
from judges import RubricConfig, build_judge, parse_spec, rule_reward, scored_groups
from judges.rules import RulesJudge
from tests.fixtures.judge_data import MULTI, NO_TOOL, PARALLEL, PRICE, infra_failure, make_trajectory

RIGHT_PRICE = ("get_price", {"hub": "Henry Hub", "date": "2025-03-04"})
WEIGHTED = RubricConfig(mode="weighted")  # the weighted sum's arithmetic; the default is ranked (test_rules_ranking.py)


def test_right_trajectory_gets_full_reward_with_breakdown() -> None:
    reward, breakdown = rule_reward(make_trajectory(PRICE, [[RIGHT_PRICE]]), WEIGHTED)
    assert reward == pytest.approx(1.0)  # defaults 0.4 + 0.25 + 0 + 0.15 + 0.10 + 0.10
    assert breakdown["components"] == {
        "task_completion": 1.0,
        "tool_accuracy": 1.0,
        "param_accuracy": 1.0,
        "efficiency": 1.0,
        "timing": 1.0,
        "format_compliance": 1.0,
    }
    assert breakdown["penalties"] == {"wrong_tool": 0, "redundant_call": 0, "format_error": 0, "timeout": 0}


def test_wrong_tool_is_penalised() -> None:
    reward, breakdown = rule_reward(
        make_trajectory(PRICE, [[("get_storage", {"region": "East"})]], success=False), WEIGHTED
    )
    assert breakdown["penalties"]["wrong_tool"] == 1
    # efficiency 0.15 + timing 0.10 + format 0.10 - wrong_tool 0.3
    assert reward == pytest.approx(0.05)


def test_wrong_value_extra_and_missing_calls() -> None:
    wrong_value, _ = rule_reward(
        make_trajectory(PRICE, [[("get_price", {"hub": "Waha", "date": "2025-03-04"})]], success=False), WEIGHTED
    )
    assert wrong_value == pytest.approx(0.25 + 0.15 + 0.10 + 0.10)  # right tool, nothing else earned
    extra, breakdown = rule_reward(make_trajectory(PRICE, [[RIGHT_PRICE], [RIGHT_PRICE]]), WEIGHTED)
    assert breakdown["penalties"]["redundant_call"] == 1
    tool_f1 = 2 * 1 / (2 + 1)
    assert extra == pytest.approx(0.4 + 0.25 * tool_f1 + 0.15 * 0.5 + 0.10 + 0.10 - 0.2)
    louisiana = ("get_consumption", {"state": "Louisiana", "month": "2024-07"})
    missing, breakdown = rule_reward(make_trajectory(PARALLEL, [[louisiana]], success=False, score=0.5), WEIGHTED)
    assert breakdown["components"]["tool_accuracy"] == pytest.approx(2 / 3)
    assert missing == pytest.approx(0.4 * 0.5 + 0.25 * 2 / 3 + 0.15 + 0.10 + 0.10)


def test_reordered_parallel_calls_and_no_call_needed_get_full_reward() -> None:
    illinois = ("get_consumption", {"state": "IL", "month": "2024-07", "sector": "industrial"})
    louisiana = ("get_consumption", {"state": "Louisiana", "month": "2024-07"})
    assert rule_reward(make_trajectory(PARALLEL, [[illinois, louisiana]]), WEIGHTED)[0] == pytest.approx(1.0)
    assert rule_reward(make_trajectory(NO_TOOL, []), WEIGHTED)[0] == pytest.approx(1.0)
    busy, breakdown = rule_reward(make_trajectory(NO_TOOL, [[RIGHT_PRICE]], success=False), WEIGHTED)
    assert breakdown["components"]["timing"] == 0.0
    assert busy == pytest.approx(0.10 - 0.3)  # only the well-formed call earns anything


def test_format_errors_timeouts_and_clipping() -> None:
    traj = make_trajectory(
        MULTI,
        [[("book_capacity", '{"pipeline": '), ("book_capacity", {"pipeline": "Texas Eastern", "volume_mmcfd": 120})]],
        timeout_calls={"book_capacity"},
        parse_errors=2,
        success=False,
        error=TrajectoryError(kind="model", message="max_turns: no final answer after 8 turns"),
    )
    reward, breakdown = rule_reward(traj, WEIGHTED)
    assert breakdown["penalties"]["format_error"] == 3  # one unparsable + two text calls
    assert breakdown["penalties"]["timeout"] == 2  # one tool timeout + running out of turns
    assert breakdown["raw"] < -1.0
    assert reward == -1.0  # clipped


def test_rubric_from_yaml_and_json(tmp_path: Path) -> None:
    path = tmp_path / "rubric.yaml"
    path.write_text(
        "weights:\n  task_completion: 1.0\n  tool_accuracy: 0\n  efficiency: 0\n  timing: 0\n"
        "  format_compliance: 0\npenalties:\n  wrong_tool: -1.0\n"
    )
    config = RubricConfig.from_file(path)
    assert config.mode == "weighted"  # weights without a mode mean the weighted sum
    assert config.penalties.redundant_call == -0.2  # unspecified keys keep their defaults
    reward, _ = rule_reward(make_trajectory(PRICE, [[RIGHT_PRICE], [("get_storage", {"region": "East"})]]), config)
    assert reward == pytest.approx(1.0 - 1.0)
    as_json = tmp_path / "rubric.json"
    as_json.write_text(config.model_dump_json())
    assert RubricConfig.from_file(as_json) == config
    bad = tmp_path / "bad.yaml"
    bad.write_text("weights:\n  task_completoin: 1.0\n")
    with pytest.raises(ValueError, match="task_completoin"):
        RubricConfig.from_file(bad)


def test_parse_spec_weights() -> None:
    assert parse_spec("rules") == [("rules", 1.0)]
    assert parse_spec("ruler+rules") == [("ruler", 0.5), ("rules", 0.5)]
    assert parse_spec("ruler:0.7+rules:0.3") == [("ruler", 0.7), ("rules", 0.3)]
    assert parse_spec("ruler:0.6+rules+llm") == [
        ("ruler", 0.6),
        ("rules", pytest.approx(0.2)),
        ("llm", pytest.approx(0.2)),
    ]
    for bad in ("rulez", "rules:abc", "rules+rules", "ruler:1+rules"):
        with pytest.raises(ValueError):
            parse_spec(bad)
    with pytest.raises(ValueError, match="judge model"):
        build_judge("ruler")


async def test_rules_judge_masks_infra_failures_and_keeps_input_order() -> None:
    judge = build_judge("rules")
    assert isinstance(judge, RulesJudge)
    trajs = [
        make_trajectory(PRICE, [[RIGHT_PRICE]], sample=0, group="g1"),
        make_trajectory(NO_TOOL, [], sample=0, group="g2"),
        infra_failure(PRICE, sample=1, group="g1"),
        make_trajectory(PRICE, [[("get_storage", {"region": "East"})]], success=False, sample=2, group="g1"),
    ]
    scored = await judge.score(trajs)
    assert [t.id for t in scored] == [t.id for t in trajs]
    assert scored[0].reward == pytest.approx(1.0)
    assert scored[0].metrics["rules/success"] == 1.0
    assert scored[0].metrics["rules_reward"] == scored[0].reward
    assert scored[2].reward is None and scored[2].metrics["masked"] == "infra"
    assert scored[3].reward == pytest.approx(0.0)  # a wrong tool: no progress, one stray call
    assert judge.stats.trajectories_masked == 1 and judge.stats.groups_scored == 2
    assert trajs[0].metrics.get("rules_reward") is None  # copies came back; the input is untouched
    all_infra = await judge.score_group([infra_failure(PRICE)])
    assert all_infra[0].reward is None and judge.stats.groups_dropped == 1


async def test_scored_groups_leave_out_infra_and_drop_small_groups() -> None:
    trajs = [
        make_trajectory(PRICE, [[RIGHT_PRICE]], sample=0, group="a"),
        make_trajectory(PRICE, [[RIGHT_PRICE]], sample=1, group="a"),
        infra_failure(PRICE, sample=2, group="a"),
        make_trajectory(NO_TOOL, [], sample=0, group="b"),
        infra_failure(NO_TOOL, sample=1, group="b"),
    ]
    scored = await build_judge("rules").score(trajs)
    groups, dropped = scored_groups(scored)
    assert [[t.id for t in g] for g in groups] == [["test:price:s0", "test:price:s1"]]
    assert dropped == 1
