"""Judges from a spec string, and weighted composition: `reward = sum(w_i * judge_i)`.

    build_judge("rules")                      # the rule rubric alone
    build_judge("env")                        # the env's verdict score, unchanged
    build_judge("mypkg.rewards:brevity")      # a reward function (judges.functions)
    build_judge("ruler+rules", judge_model=…) # equal weights: 0.5 * RULER + 0.5 * rules
    build_judge("ruler:0.7+rules:0.3", judge_model="Qwen/Qwen3-8B", judge_base_url="http://localhost:8001/v1")

Each part is a name the registry resolves (judges.registry: built-ins, registered names, entry
points, `module:function` references), with an optional weight after its last ':'. A composed
trajectory keeps every part's metrics (`ruler_score`, `rules/…`) and every part's reward and
components in `reward_parts` (`ruler`, `rules`, `mypkg.rewards:brevity/short`, ...). If any part
failed on a trajectory it is infra-failed; if a relative part dropped the group, the members stay
unscored.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from contracts import Trajectory

from .base import Judge, JudgeFailure, mark_infra
from .registry import JudgeOptions, build, is_name, resolve
from .rules import RubricConfig


class ComposedJudge(Judge):
    def __init__(self, parts: list[tuple[float, Judge]]) -> None:
        super().__init__()
        self.parts = parts
        self.relative = any(judge.relative for _, judge in parts)
        self.records_part = False  # its reward is `reward`; the parts' are in `reward_parts`
        self.name = "+".join(f"{judge.name}:{weight:g}" for weight, judge in parts)

    async def _score(self, live: list[Trajectory]) -> None:
        # One part after the other: the rule part is instant, and each LLM part bounds its own requests.
        results = [await judge.score_group(live) for _, judge in self.parts]
        for index, traj in enumerate(live):
            outs = [result[index] for result in results]
            for out in outs:
                traj.metrics.update(out.metrics)
                traj.reward_parts.update(out.reward_parts)
            failed = next((out for out in outs if out.is_infra_failure), None)
            if failed is not None and failed.error is not None:
                mark_infra(traj, failed.error.message)
                continue
            if any(out.reward is None for out in outs):
                traj.reward = None
                continue
            traj.reward = sum(weight * (out.reward or 0.0) for (weight, _), out in zip(self.parts, outs, strict=True))
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
    """Parse "ruler:0.7+rules:0.3" -> [("ruler", 0.7), ("rules", 0.3)]; unweighted parts share what
    is left of 1. A part is `name[:weight]`, where a name may itself be `module:function`
    ("mypkg.rewards:brevity:0.5"). Every name must resolve (judges.registry): a reference is
    imported here, so a bad one fails before anything runs. ValueError of one line otherwise."""
    items: list[tuple[str, float | None]] = []
    for part in spec.replace(" ", "").split("+"):
        name, weight = _name_and_weight(part)
        try:
            resolve(name)
        except ValueError as exc:
            raise ValueError(f"{exc} (in {spec!r})" if part != spec else str(exc)) from None
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


def _name_and_weight(part: str) -> tuple[str, str | None]:
    """A part as (name, weight text): `rules:0.3` -> (rules, 0.3); `mod:fn` -> (mod:fn, None);
    `mod:fn:0.3` -> (mod:fn, 0.3)."""
    if ":" not in part or is_name(part):
        return part, None
    head, _, tail = part.rpartition(":")
    if is_name(head) or ":" in head or _is_number(tail):
        return head, tail
    return part, None  # module:function


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


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
    """A judge for `spec` (the module docstring; the names: judges.registry).

    `rubric` configures the rule rubric, `judge_rubric` the text rubric of the
    LLM judges; `cache_dir` turns the verdict cache on. ValueError on a bad spec
    or an LLM judge without `judge_model`."""
    parts = parse_spec(spec)
    # The LLM judges (ruler, llm) share one endpoint, cache and retry policy.
    options = JudgeOptions(
        rubric=rubric,
        concurrency=concurrency,
        judge_model=judge_model,
        judge_base_url=judge_base_url,
        api_key_env=api_key_env,
        extra_body=extra_body,
        cache_dir=cache_dir,
        judge_rubric=judge_rubric,
        retries=retries,
        backoff_s=backoff_s,
    )
    judges = [(weight, build(name, options)) for name, weight in parts]
    if len(judges) == 1 and judges[0][0] == 1.0:
        return judges[0][1]
    return ComposedJudge(judges)
