"""Judges from a spec string, and weighted composition: `reward = sum(w_i * judge_i)`.

    build_judge("rules")                      # the rule rubric alone
    build_judge("ruler+rules", judge_model=…) # equal weights: 0.5 * RULER + 0.5 * rules
    build_judge("ruler:0.7+rules:0.3", judge_model="Qwen/Qwen3-8B", judge_base_url="http://localhost:8001/v1")

A composed trajectory keeps every part's metrics (`ruler_score`, `rules/…`)
and each part's reward under `reward_parts/<name>`. If any part failed on a
trajectory it is infra-failed; if a relative part dropped the group, the
members stay unscored.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from contracts import Trajectory

from .base import Judge, JudgeFailure, mark_infra
from .cache import VerdictCache
from .endpoint import JudgeEndpoint
from .rules import RubricConfig, RulesJudge

JUDGE_KINDS = ("rules", "ruler", "llm")


class ComposedJudge(Judge):
    def __init__(self, parts: list[tuple[float, Judge]]) -> None:
        super().__init__()
        self.parts = parts
        self.relative = any(judge.relative for _, judge in parts)
        self.name = "+".join(f"{judge.name}:{weight:g}" for weight, judge in parts)

    async def _score(self, live: list[Trajectory]) -> None:
        # One part after the other: the rule part is instant, and each LLM part bounds its own requests.
        results = [await judge.score_group(live) for _, judge in self.parts]
        for index, traj in enumerate(live):
            outs = [result[index] for result in results]
            for out in outs:
                traj.metrics.update(out.metrics)
            failed = next((out for out in outs if out.is_infra_failure), None)
            if failed is not None and failed.error is not None:
                mark_infra(traj, failed.error.message)
                continue
            if any(out.reward is None for out in outs):
                traj.reward = None
                continue
            traj.reward = sum(weight * (out.reward or 0.0) for (weight, _), out in zip(self.parts, outs, strict=True))
            for (_, judge), out in zip(self.parts, outs, strict=True):
                traj.metrics[f"reward_parts/{judge.name}"] = out.reward
        if all(traj.is_infra_failure for traj in live):
            raise JudgeFailure("every part failed")  # counted as a failed group, not a scored one

    async def aclose(self) -> None:
        for _, judge in self.parts:
            await judge.aclose()

    def report(self) -> dict[str, float]:
        out = super().report()
        for _, judge in self.parts:
            out |= {f"{judge.name}/{key}": value for key, value in judge.report().items()}
        return out


def parse_spec(spec: str) -> list[tuple[str, float]]:
    """Parse "ruler:0.7+rules:0.3" -> [("ruler", 0.7), ("rules", 0.3)]; unweighted parts share what is left of 1."""
    items: list[tuple[str, float | None]] = []
    for part in spec.replace(" ", "").split("+"):
        name, _, weight = part.partition(":")
        if name not in JUDGE_KINDS:
            raise ValueError(f"unknown judge {name!r} in {spec!r}: expected {', '.join(JUDGE_KINDS)}")
        try:
            items.append((name, float(weight) if weight else None))
        except ValueError:
            raise ValueError(f"bad weight {weight!r} for {name} in {spec!r}") from None
    if len({name for name, _ in items}) != len(items):
        raise ValueError(f"a judge appears twice in {spec!r}")
    unweighted = [name for name, weight in items if weight is None]
    share = (1.0 - sum(weight for _, weight in items if weight is not None)) / len(unweighted) if unweighted else 0.0
    if unweighted and share <= 0:
        raise ValueError(f"no weight left for {', '.join(unweighted)} in {spec!r}")
    return [(name, share if weight is None else weight) for name, weight in items]


def build_judge(
    spec: str,
    *,
    judge_model: str | None = None,
    judge_base_url: str | None = None,
    rubric: RubricConfig | None = None,
    concurrency: int = 8,
    cache_dir: Path | None = None,
    judge_rubric: str | None = None,
    api_key_env: str = "JUDGE_API_KEY",
    extra_body: dict[str, Any] | None = None,
    retries: int = 2,
    backoff_s: float = 0.5,
) -> Judge:
    """A judge for `spec` ("rules" | "ruler" | "llm" | "ruler+rules" | "ruler:0.7+rules:0.3").

    `rubric` configures the rule rubric, `judge_rubric` the text rubric of the
    LLM judges; `cache_dir` turns the verdict cache on. ValueError on a bad spec
    or an LLM judge without `judge_model`."""
    parts = parse_spec(spec)
    cache = VerdictCache(cache_dir) if cache_dir is not None else None
    endpoint = None
    if any(name != "rules" for name, _ in parts):
        if not judge_model:
            raise ValueError(f"judge {spec!r} needs a judge model (--judge-model)")
        endpoint = JudgeEndpoint(
            model=judge_model, base_url=judge_base_url, api_key_env=api_key_env, extra_body=extra_body or {}
        )
    # The LLM judges (ruler, llm) share one endpoint, cache and retry policy.
    llm_options: dict[str, Any] = {
        "rubric": judge_rubric,
        "concurrency": concurrency,
        "cache": cache,
        "retries": retries,
        "backoff_s": backoff_s,
    }
    judges = [(weight, _part(name, rubric, concurrency, endpoint, llm_options)) for name, weight in parts]
    if len(judges) == 1 and judges[0][0] == 1.0:
        return judges[0][1]
    return ComposedJudge(judges)


def _part(
    name: str,
    rubric: RubricConfig | None,
    concurrency: int,
    endpoint: JudgeEndpoint | None,
    llm_options: dict[str, Any],
) -> Judge:
    """One judge of a spec; the LLM judges load on first use (they pull in their clients)."""
    if name == "rules":
        return RulesJudge(rubric, concurrency=concurrency)
    assert endpoint is not None
    if name == "ruler":
        from .ruler import RulerJudge

        return RulerJudge(endpoint, **llm_options)
    from .llm_judge import LLMJudge

    return LLMJudge(endpoint, **llm_options)
