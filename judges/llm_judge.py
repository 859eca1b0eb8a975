"""The absolute LLM rubric judge: one trajectory in, a score in 0..1 and a reason out.

The judge model answers under a JSON schema (`response_format` json_schema,
which vLLM enforces with guided decoding and hosted APIs with structured
outputs), through one `openai.AsyncOpenAI` client on any OpenAI-compatible
endpoint. A reply that does not validate is retried; past the retries that
trajectory becomes an infra failure (masked), never a 0. Verdicts are cached
by content hash; latency and tokens are recorded per trajectory.
"""

from __future__ import annotations

import json
from textwrap import dedent
from typing import Any

import anyio
import openai
from pydantic import BaseModel, Field, ValidationError

from rollouts.record import Trajectory

from .base import Judge, JudgeFailure, Timer, mark_infra
from .cache import VerdictCache, content_key
from .endpoint import JudgeEndpoint

DEFAULT_LLM_RUBRIC = dedent(
    """
    - 1.0: the agent fully accomplished the user's task, with correct tool calls and a correct, complete final answer.
    - 0.5: partial progress: some of the needed information was found or the answer is incomplete or imprecise.
    - 0.0: the task was not accomplished, the answer is wrong or invented, or tools were misused.
    - Penalise unnecessary, repeated or malformed tool calls, and calling tools when none were needed.
    - When a reference answer is given, judge the final answer against it.
    """
).strip()

RUBRIC_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "score": {"type": "number", "minimum": 0, "maximum": 1},
        "reason": {"type": "string"},
    },
    "required": ["score", "reason"],
    "additionalProperties": False,
}
RESPONSE_FORMAT = {
    "type": "json_schema",
    "json_schema": {"name": "rubric_verdict", "schema": RUBRIC_SCHEMA, "strict": True},
}


class RubricVerdict(BaseModel):
    score: float = Field(ge=0.0, le=1.0)
    reason: str


def judge_messages(traj: Trajectory, rubric: str, *, reference: bool = True) -> list[dict[str, Any]]:
    """The judge's prompt: the rubric, then the task, tools and the whole conversation."""
    system = (
        "You grade one AI agent trajectory against a rubric. Reply only with a JSON object "
        '{"score": <number between 0 and 1>, "reason": "<one or two sentences>"}.\n\nRubric:\n' + rubric
    )
    parts = [f"<task>\n{traj.task.get('question', '')}\n</task>"]
    if reference and traj.task.get("answer") is not None:
        parts.append(f"<reference_answer>\n{json.dumps(traj.task['answer'], ensure_ascii=False)}\n</reference_answer>")
    if traj.tools:
        parts.append(f"<available_tools>\n{json.dumps(traj.tools, ensure_ascii=False)}\n</available_tools>")
    parts.append(f"<trajectory>\n{json.dumps(traj.messages, ensure_ascii=False)}\n</trajectory>")
    return [{"role": "system", "content": system}, {"role": "user", "content": "\n\n".join(parts)}]


class LLMJudge(Judge):
    name = "llm"

    def __init__(
        self,
        endpoint: JudgeEndpoint,
        *,
        rubric: str | None = None,
        concurrency: int = 8,
        cache: VerdictCache | None = None,
        retries: int = 2,
        backoff_s: float = 0.5,
        reference: bool = True,
    ) -> None:
        super().__init__(concurrency=concurrency)
        self.endpoint = endpoint
        self.rubric = rubric or DEFAULT_LLM_RUBRIC
        self.cache = cache
        self.retries = retries
        self.backoff_s = backoff_s
        self.reference = reference
        self._client: openai.AsyncOpenAI | None = None

    @property
    def client(self) -> openai.AsyncOpenAI:
        if self._client is None:  # one client (one connection pool) for every request of this judge
            self._client = openai.AsyncOpenAI(
                base_url=self.endpoint.base_url,
                api_key=self.endpoint.api_key() or "EMPTY",
                max_retries=0,  # retries are ours
                timeout=self.endpoint.timeout_s,
            )
        return self._client

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None

    async def _score(self, live: list[Trajectory]) -> None:
        async with anyio.create_task_group() as tg:
            for traj in live:
                tg.start_soon(self._score_one, traj)

    async def _score_one(self, traj: Trajectory) -> None:
        messages = judge_messages(traj, self.rubric, reference=self.reference)
        key = content_key("llm", self.endpoint.served_model(), messages)
        cached = self.cache.get(key) if self.cache is not None else None
        latency = 0.0
        if cached is not None:
            self.stats.cache_hits += 1
            verdict = cached
        else:
            try:
                verdict, latency = await self._judge(messages)
            except JudgeFailure as exc:
                mark_infra(traj, f"judge {self.name}: {exc}")
                self.stats.judge_failures += 1
                return
            if self.cache is not None:
                self.cache.put(key, verdict)
        traj.metrics["independent_reward"] = traj.reward
        traj.reward = float(verdict["score"])
        traj.metrics["llm_score"] = float(verdict["score"])
        traj.metrics["llm_reason"] = verdict["reason"]
        traj.metrics["judge/cached"] = float(cached is not None)
        traj.metrics["judge/latency_s"] = latency
        for name in ("prompt_tokens", "completion_tokens"):
            traj.metrics[f"judge/{name}"] = 0.0 if cached is not None else float(verdict["usage"].get(name, 0))

    async def _judge(self, messages: list[dict[str, Any]]) -> tuple[dict[str, Any], float]:
        last = "no attempt"
        async with self.limiter:
            for attempt in range(self.retries + 1):
                if attempt:
                    self.stats.retries += 1
                    await anyio.sleep(self.backoff_s * 2 ** (attempt - 1))
                self.stats.judge_calls += 1
                with Timer() as timer:
                    try:
                        response = await self.client.chat.completions.create(
                            model=self.endpoint.served_model(),
                            messages=messages,  # type: ignore[arg-type]
                            response_format=RESPONSE_FORMAT,  # type: ignore[arg-type]
                            temperature=_or_not_given(self.endpoint.temperature),
                            extra_body=self.endpoint.extra_body or None,
                        )
                    except openai.OpenAIError as exc:
                        response, last = None, f"{type(exc).__name__}: {exc}"
                self.stats.latency_s += timer.elapsed
                if response is None:
                    continue
                usage = {
                    "prompt_tokens": response.usage.prompt_tokens if response.usage else 0,
                    "completion_tokens": response.usage.completion_tokens if response.usage else 0,
                }
                self.stats.add_usage(usage)
                content = response.choices[0].message.content if response.choices else None
                try:
                    parsed = RubricVerdict.model_validate_json(content or "")
                except ValidationError as exc:
                    self.stats.malformed_replies += 1
                    last = f"malformed judge reply: {exc.errors()[0]['msg']}"
                    continue
                return {**parsed.model_dump(), "usage": usage}, timer.elapsed
        raise JudgeFailure(f"{last[:300]} (after {self.retries + 1} attempts)")


def _or_not_given(value: float | None) -> Any:
    return openai.NOT_GIVEN if value is None else value
