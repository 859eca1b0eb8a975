"""RULER (through ART and litellm) and the LLM rubric judge (through openai.AsyncOpenAI)
against a real HTTP judge server (tests/fixtures/judge_server.py, scripted)."""

from __future__ import annotations

from pathlib import Path

import pytest

from contracts import Trajectory
from judges import build_judge
from judges.compose import ComposedJudge
from judges.endpoint import JudgeEndpoint
from judges.llm_judge import LLMJudge
from judges.ruler import RulerJudge, ruler_score_art_group
from tests.fixtures.judge_data import PRICE, infra_failure, make_trajectory
from tests.fixtures.judge_server import JudgeServer

RIGHT = ("get_price", {"hub": "Henry Hub", "date": "2025-03-04"})
NO_THINK = {"chat_template_kwargs": {"enable_thinking": False}}

# litellm's response objects trip pydantic's serializer check on every call (its logging thread): noise.
pytestmark = pytest.mark.filterwarnings("ignore:Pydantic serializer warnings:UserWarning")


def price_group(
    group: str = "g", answers: tuple[str, ...] = ("4.12 GOOD", "3.00 BAD", "no idea MEH")
) -> list[Trajectory]:
    return [
        make_trajectory(PRICE, [[RIGHT]], answer=answer, sample=i, group=group, success=i == 0)
        for i, answer in enumerate(answers)
    ]


def ruler(server: JudgeServer, **kwargs: object) -> RulerJudge:
    options: dict = {"backoff_s": 0.0} | kwargs
    return RulerJudge(JudgeEndpoint(model="Qwen/Qwen3-8B", base_url=server.base_url), **options)


def llm(server: JudgeServer, **kwargs: object) -> LLMJudge:
    options: dict = {"backoff_s": 0.0} | kwargs
    return LLMJudge(JudgeEndpoint(model="Qwen/Qwen3-8B", base_url=server.base_url), **options)


SCORES = {"GOOD": 0.9, "BAD": 0.2, "MEH": 0.4}


# -- RULER ----------------------------------------------------------------------------------


async def test_ruler_scores_a_group_and_keeps_everything(judge_server: JudgeServer) -> None:
    judge_server.set_script(score_by=SCORES)
    judge = ruler(judge_server)
    group = price_group()
    scored = await judge.score_group(group)
    assert [t.reward for t in scored] == [0.9, 0.2, 0.4]
    assert [t.metrics["ruler_score"] for t in scored] == [0.9, 0.2, 0.4]
    assert scored[1].metrics["ruler_explanation"] == "scripted for 2"
    assert scored[0].reward_parts == {"env": 1.0, "ruler": 0.9}  # the env's reward before RULER, kept as a part
    assert scored[0].metrics["judge/latency_s"] > 0
    assert sum(t.metrics["judge/prompt_tokens"] for t in scored) == judge.stats.prompt_tokens > 0
    assert judge.stats.completion_tokens > 0 and judge.stats.judge_calls == 1
    # Everything of the record survives (ART's conversion keeps only numeric metrics).
    assert scored[0].tool_outcomes == group[0].tool_outcomes
    assert scored[0].group == "g" and scored[0].messages == group[0].messages and scored[0].task == group[0].task
    request = judge_server.requests[-1]
    assert request["model"] == "Qwen/Qwen3-8B"  # the served name, routed as OpenAI-compatible
    assert request["response_format"]["type"] == "json_schema"
    assert "scores" in request["response_format"]["json_schema"]["schema"]["properties"]
    assert "get_price" in request["messages"][1]["content"]  # the judge saw the tools


async def test_ruler_identical_trajectories_and_extra_body(judge_server: JudgeServer) -> None:
    judge_server.set_script(score_by=SCORES)
    endpoint = JudgeEndpoint(model="judge", base_url=judge_server.base_url, extra_body=NO_THINK)
    judge = RulerJudge(endpoint, backoff_s=0.0)
    scored = await judge.score_group(price_group(answers=("same GOOD", "same GOOD")))
    assert [t.reward for t in scored] == [0.9, 0.9]
    request = judge_server.requests[-1]
    assert request["messages"][1]["content"].count("<trajectory id=") == 1  # ART sends identical ones once
    assert request["chat_template_kwargs"] == {"enable_thinking": False}


async def test_ruler_wrapper_keeps_what_art_drops(judge_server: JudgeServer) -> None:
    import art

    from judges.art_trajectory import to_art_trajectory

    judge_server.set_script(score_by=SCORES)
    group = art.TrajectoryGroup(
        [to_art_trajectory(t) for t in price_group()],
        metadata={"task": "price"},
        metrics={"env_seconds": 1.5},
        exceptions=[RuntimeError("one rollout crashed")],
    )
    endpoint = JudgeEndpoint(model="judge", base_url=judge_server.base_url)
    scored, usage = await ruler_score_art_group(group, endpoint.litellm_model(), endpoint.litellm_params())
    assert [t.reward for t in scored.trajectories] == [0.9, 0.2, 0.4]
    assert scored.metadata == {"task": "price"}
    assert scored.metrics == {"env_seconds": 1.5}
    assert len(scored.exceptions) == 1
    assert usage["prompt_tokens"] > 0


async def test_ruler_retries_a_malformed_reply(judge_server: JudgeServer) -> None:
    judge_server.set_script(score_by=SCORES, malformed="not_json", malformed_times=1)
    judge = ruler(judge_server)
    scored = await judge.score_group(price_group())
    assert [t.reward for t in scored] == [0.9, 0.2, 0.4]
    assert judge.stats.retries == 1 and judge.stats.malformed_replies == 1 and judge.stats.judge_calls == 2


@pytest.mark.parametrize("malformed", ["wrong_shape", "wrong_count", "not_a_number", "out_of_range"])
async def test_ruler_marks_the_group_infra_failed_after_retries(judge_server: JudgeServer, malformed: str) -> None:
    judge_server.set_script(score_by=SCORES, malformed=malformed, malformed_times=-1)
    judge = ruler(judge_server, retries=2)
    scored = await judge.score_group(price_group())
    assert len(judge_server.requests) == 3
    for traj in scored:
        assert traj.reward is None  # never 0
        assert traj.error is not None and traj.error.kind == "infra" and traj.error.message.startswith("judge ruler")
        assert traj.is_infra_failure
    assert judge.stats.groups_infra == 1 and judge.stats.judge_failures == 3 and judge.stats.groups_scored == 0


async def test_ruler_retries_http_errors(judge_server: JudgeServer) -> None:
    judge_server.set_script(score_by=SCORES, fail_status=503, fail_times=2)
    judge = ruler(judge_server, retries=2)
    scored = await judge.score_group(price_group())
    assert [t.reward for t in scored] == [0.9, 0.2, 0.4]
    assert judge.stats.retries == 2


async def test_ruler_masks_infra_and_drops_groups_it_cannot_compare(judge_server: JudgeServer) -> None:
    judge_server.set_script(score_by=SCORES)
    judge = ruler(judge_server)
    group = [*price_group(answers=("4.12 GOOD", "3.00 BAD")), infra_failure(PRICE, sample=5, group="g")]
    scored = await judge.score_group(group)
    assert [t.reward for t in scored] == [0.9, 0.2, None]
    assert scored[2].metrics["masked"] == "infra"
    # The judge never saw the infra failure: two trajectories in the prompt.
    assert judge_server.requests[-1]["messages"][1]["content"].count("<trajectory id=") == 2
    lonely = await judge.score_group([price_group(answers=("4.12 GOOD",))[0], infra_failure(PRICE, sample=1)])
    assert [t.reward for t in lonely] == [None, None]
    assert "group_dropped" in lonely[0].metrics and not lonely[0].is_infra_failure
    assert judge.stats.groups_dropped == 1 and len(judge_server.requests) == 1


async def test_ruler_cache_makes_a_rerun_free(judge_server: JudgeServer, tmp_path: Path) -> None:
    judge_server.set_script(score_by=SCORES)
    first = ruler(judge_server, cache=None)
    trajs = price_group("a") + price_group("b", ("x GOOD", "y MEH"))
    judge = build_judge("ruler", judge_model="m", judge_base_url=judge_server.base_url, cache_dir=tmp_path / "cache")
    scored = await judge.score(trajs)
    assert len(judge_server.requests) == 2
    again = build_judge("ruler", judge_model="m", judge_base_url=judge_server.base_url, cache_dir=tmp_path / "cache")
    rescored = await again.score(trajs)
    assert len(judge_server.requests) == 2  # nothing new sent
    assert [t.reward for t in rescored] == [t.reward for t in scored] == [0.9, 0.2, 0.4, 0.9, 0.4]
    assert again.stats.cache_hits == 2 and again.stats.judge_calls == 0
    assert rescored[0].metrics["judge/cached"] == 1.0 and rescored[0].metrics["judge/prompt_tokens"] == 0
    assert rescored[0].metrics["ruler_explanation"] == scored[0].metrics["ruler_explanation"]
    # A changed trajectory is a different key: judged again.
    changed = [
        trajs[0].model_copy(update={"messages": [*trajs[0].messages[:-1], {"role": "assistant", "content": "GOOD!"}]})
    ]
    await again.score([*changed, *trajs[1:3]])
    assert len(judge_server.requests) == 3
    assert first.stats.judge_calls == 0


async def test_ruler_concurrency_is_bounded(judge_server: JudgeServer) -> None:
    judge_server.set_script(score_by=SCORES, delay_s=0.3)
    judge = ruler(judge_server, concurrency=2)
    trajs = [t for g in range(5) for t in price_group(f"g{g}")]
    scored = await judge.score(trajs)
    assert all(t.reward is not None for t in scored)
    assert judge_server.max_in_flight == 2


async def test_ruler_plus_rules_composes_weighted_rewards(judge_server: JudgeServer) -> None:
    judge_server.set_script(score_by=SCORES)
    judge = build_judge("ruler:0.7+rules:0.3", judge_model="m", judge_base_url=judge_server.base_url, backoff_s=0.0)
    assert isinstance(judge, ComposedJudge)
    wrong_tool = make_trajectory(PRICE, [[("get_storage", {"region": "E"})]], answer="BAD", success=False, sample=1)
    group = [price_group(answers=("4.12 GOOD",))[0], wrong_tool.model_copy(update={"group": "g"})]
    scored = await judge.score_group(group)
    assert scored[0].reward == pytest.approx(0.7 * 0.9 + 0.3 * 1.0)
    assert scored[1].reward == pytest.approx(0.7 * 0.2 + 0.3 * 0.0)  # rules: a failure with a stray call
    assert scored[1].reward_parts["ruler"] == 0.2
    assert scored[1].metrics["rules/penalty/stray_call"] == 1.0
    report = judge.report()
    assert report["ruler/judge_calls"] == 1 and report["groups_scored"] == 1
    # When the judge fails, the composition fails too: infra, not a rules-only score.
    judge_server.set_script(malformed="not_json", malformed_times=-1)
    failed = await judge.score_group(group)
    assert all(t.is_infra_failure and t.reward is None for t in failed)
    assert judge.stats.groups_infra == 1


# -- LLM rubric judge ---------------------------------------------------------------------------


async def test_llm_judge_scores_each_trajectory_with_a_json_schema(judge_server: JudgeServer) -> None:
    judge_server.set_script(score_by=SCORES)
    judge = llm(judge_server)
    scored = await judge.score([*price_group(answers=("GOOD", "BAD")), make_trajectory(PRICE, [], answer="??")])
    assert [t.reward for t in scored] == [0.9, 0.2, 0.5]  # a single member is scored: the judge is absolute
    assert scored[0].metrics["llm_reason"] == "scripted score 0.9"
    assert scored[0].metrics["judge/prompt_tokens"] > 0 and scored[0].metrics["judge/latency_s"] > 0
    request = judge_server.requests[0]
    assert request["model"] == "Qwen/Qwen3-8B"
    assert request["response_format"]["json_schema"]["name"] == "rubric_verdict"
    assert request["response_format"]["json_schema"]["schema"]["required"] == ["score", "reason"]
    assert "<reference_answer>\n4.12" in request["messages"][1]["content"]
    no_think = LLMJudge(JudgeEndpoint(model="m", base_url=judge_server.base_url, extra_body=NO_THINK))
    await no_think.score(price_group(answers=("GOOD",)))
    await no_think.aclose()
    assert judge_server.requests[-1]["chat_template_kwargs"] == {"enable_thinking": False}


async def test_llm_judge_retries_then_marks_only_the_failed_trajectory(judge_server: JudgeServer) -> None:
    judge_server.set_script(score_by=SCORES, malformed="out_of_range", malformed_times=1)
    judge = llm(judge_server, concurrency=1)
    scored = await judge.score(price_group(answers=("GOOD",)))
    assert scored[0].reward == 0.9 and judge.stats.retries == 1 and judge.stats.malformed_replies == 1

    judge_server.set_script(score_by=SCORES, malformed="not_json", malformed_times=3)
    judge = llm(judge_server, concurrency=1, retries=2)
    scored = await judge.score(price_group(answers=("GOOD", "BAD")))
    # The first trajectory used up the three malformed replies; the second was judged fine.
    failed = [t for t in scored if t.is_infra_failure]
    assert len(failed) == 1 and failed[0].reward is None and "malformed" in failed[0].error.message
    assert [t.reward for t in scored if not t.is_infra_failure] in ([0.9], [0.2])
    assert judge.stats.judge_failures == 1


async def test_llm_judge_cache(judge_server: JudgeServer, tmp_path: Path) -> None:
    judge_server.set_script(score_by=SCORES)
    trajs = price_group(answers=("GOOD", "BAD"))
    first = await build_judge("llm", judge_model="m", judge_base_url=judge_server.base_url, cache_dir=tmp_path).score(
        trajs
    )
    judge = build_judge("llm", judge_model="m", judge_base_url=judge_server.base_url, cache_dir=tmp_path)
    second = await judge.score(trajs)
    assert len(judge_server.requests) == 2
    assert [t.reward for t in second] == [t.reward for t in first] == [0.9, 0.2]
    assert judge.stats.cache_hits == 2
