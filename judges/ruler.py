"""RULER: group-relative LLM judging through `art.rewards.ruler_score_group`, kept whole.

ART's RULER asks one judge model to score every trajectory of a group at once
(relative scores are all GRPO needs). Around it this module adds what a long
run needs and ART leaves out:

- any OpenAI-compatible judge (a local Qwen3 on vLLM, or a hosted model) via
  litellm's `api_base`/`api_key` (judges.endpoint);
- what `ruler_score_group` drops is kept: the group's metadata, metrics,
  exceptions and logs (`ruler_score_art_group`), and our records keep every
  field since only copies with scores added come back;
- verdicts cached by content hash (judges.cache), so a rerun costs nothing;
- bounded concurrency (the judge's limiter), latency and tokens of each call
  (tokens captured from the response ART hands to its `MetricsBuilder`);
- a reply that does not parse (or has the wrong number of scores) is retried,
  then the group is marked infra-failed, never scored 0.
"""

from __future__ import annotations

import os

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # before litellm loads: no network fetch

from typing import Any

from contracts import Trajectory

from .cache import content_key
from .endpoint import EndpointJudge
from .groups import group_key

EXPLANATION_PREFIX = "RULER explanation: "


def _art() -> Any:
    import art  # lazy: art (and litellm) take seconds to import
    import litellm

    litellm.suppress_debug_info = True  # no "Give Feedback" banner on every failed judge call
    return art


def default_rubric() -> str:
    _art()
    from art.rewards.ruler import DEFAULT_RUBRIC

    return DEFAULT_RUBRIC


def _usage_capture(outer: Any) -> Any:
    """A `MetricsBuilder` that records the judge response's token usage (ART hands
    every RULER response to the active builder for pricing) and passes it on to
    the builder that was active before, so a training loop still sees the cost."""
    from art.metrics import MetricsBuilder

    class UsageCapture(MetricsBuilder):
        def __init__(self) -> None:
            super().__init__("judge")
            self.usage: dict[str, Any] = {}

        def add_response_cost(self, source: str, response: Any, **kwargs: Any) -> float | None:
            usage = getattr(response, "usage", None)
            self.usage = {
                "prompt_tokens": int(getattr(usage, "prompt_tokens", 0) or 0),
                "completion_tokens": int(getattr(usage, "completion_tokens", 0) or 0),
                "cost_usd": _litellm_cost(response),
            }
            if outer is not None:
                return outer.add_response_cost(source, response, **kwargs)  # ART catches its ValueError
            return None

    return UsageCapture()


def _litellm_cost(response: Any) -> float:
    import litellm

    try:
        return float(litellm.completion_cost(completion_response=response) or 0.0)
    except Exception:  # a local model has no price: its cost is the tokens
        return 0.0


async def ruler_score_art_group(
    group: Any,
    judge_model: str,
    extra_litellm_params: dict[str, Any] | None = None,
    rubric: str | None = None,
) -> tuple[Any, dict[str, Any]]:
    """`ruler_score_group` that keeps the group's metadata, metrics, exceptions and
    logs, raises instead of returning None, and also returns the judge call's usage."""
    art = _art()
    from art.metrics import MetricsBuilder
    from art.rewards import ruler_score_group

    try:
        outer = MetricsBuilder.get_active()
    except LookupError:
        outer = None
    capture = _usage_capture(outer)
    with capture.activate_context():
        scored = await ruler_score_group(
            group,
            judge_model,
            extra_litellm_params=extra_litellm_params,
            rubric=rubric or default_rubric(),
            swallow_exceptions=False,
        )
    assert scored is not None  # swallow_exceptions=False raises instead
    kept = art.TrajectoryGroup(
        scored.trajectories, metadata=dict(group.metadata), metrics=dict(group.metrics), logs=list(group.logs)
    )
    kept.exceptions = list(group.exceptions)  # already converted to ART's PydanticException: copied as they are
    return kept, capture.usage


def _explanation(art_traj: Any) -> str:
    for line in reversed(art_traj.logs):
        if line.startswith(EXPLANATION_PREFIX):
            return line[len(EXPLANATION_PREFIX) :]
    return ""


class RulerJudge(EndpointJudge):
    name = "ruler"
    relative = True

    def _malformed(self, exc: BaseException) -> bool:
        from pydantic import ValidationError

        return isinstance(exc, ValidationError | ValueError | KeyError)

    async def _score(self, live: list[Trajectory]) -> None:
        from .art_trajectory import to_art_trajectory

        art = _art()
        rubric = self.rubric or default_rubric()
        arts = [to_art_trajectory(traj) for traj in live]
        group = art.TrajectoryGroup(arts, metadata={"group": group_key(live[0])})
        key = content_key("ruler", self.endpoint.litellm_model(), rubric, [t.messages() for t in arts], arts[0].tools)
        # Any failure (malformed reply, wrong count, HTTP error) is retried, then raises JudgeFailure.
        verdict, latency, cached = await self.verdict(key, lambda: self._ask(group, rubric))
        n = len(live)
        for traj, score, explanation in zip(live, verdict["scores"], verdict["explanations"], strict=True):
            traj.reward = float(score)
            traj.metrics["ruler_score"] = float(score)
            traj.metrics["ruler_explanation"] = explanation
            traj.metrics["judge/cached"] = float(cached)
            traj.metrics["judge/latency_s"] = latency
            # Per-member share of the group's call, so summing over trajectories gives the total.
            for name in ("prompt_tokens", "completion_tokens", "cost_usd"):
                traj.metrics[f"judge/{name}"] = 0.0 if cached else float(verdict["usage"].get(name, 0)) / n

    async def _ask(self, group: Any, rubric: str) -> dict[str, Any]:
        """One RULER call on the whole group: its scores, explanations and usage."""
        scored, usage = await self.on_endpoint(
            lambda _client, url: ruler_score_art_group(
                group, self.endpoint.litellm_model(), self.endpoint.litellm_params(url), rubric
            )
        )
        bad = [t.reward for t in scored.trajectories if not 0.0 <= t.reward <= 1.0]
        if bad:  # ART accepts any float; a score outside 0..1 is a judge that misread the task
            raise ValueError(f"scores outside 0..1: {bad}")
        self.stats.add_usage(usage)
        return {
            "scores": [t.reward for t in scored.trajectories],
            "explanations": [_explanation(t) for t in scored.trajectories],
            "usage": usage,
            "judge_model": self.endpoint.litellm_model(),
        }
