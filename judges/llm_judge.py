"""The absolute LLM rubric judge: one trajectory in, a score in 0..1 and a reason out.

The judge model answers under a JSON schema (`response_format` json_schema,
which vLLM enforces with guided decoding and hosted APIs with structured
outputs), through one `openai.AsyncOpenAI` client on any OpenAI-compatible
endpoint. A reply that does not validate, or a transient error (connection,
timeout, 429, 5xx), is retried by the rollouts' policy (judges.endpoint); a
refused request (400/401/403/404) is not. Past the retries that trajectory
becomes an infra failure (masked), never a 0. Verdicts are cached
by content hash; latency and tokens are recorded per trajectory.
"""

from __future__ import annotations

import json
import os
from textwrap import dedent
from typing import Any

import anyio
import openai
from pydantic import BaseModel, Field, ValidationError

from common.keys import NO_KEY
from contracts import Trajectory

from .base import JudgeFailure, mark_infra
from .cache import content_key
from .endpoint import EndpointJudge, JudgeEndpoint

OPENAI_API_URL = "https://api.openai.com/v1"  # the openai SDK's default base URL

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
    parts = [f"<task>\n{traj.task.question}\n</task>"]
    if reference and traj.task.answer is not None:
        parts.append(f"<reference_answer>\n{json.dumps(traj.task.answer, ensure_ascii=False)}\n</reference_answer>")
    if traj.tools:
        parts.append(f"<available_tools>\n{json.dumps(traj.tools, ensure_ascii=False)}\n</available_tools>")
    parts.append(f"<trajectory>\n{json.dumps(traj.messages, ensure_ascii=False)}\n</trajectory>")
    return [{"role": "system", "content": system}, {"role": "user", "content": "\n\n".join(parts)}]


class LLMJudge(EndpointJudge):
    name = "llm"
    retryable = (openai.OpenAIError, ValidationError)

    def __init__(self, endpoint: JudgeEndpoint, *, reference: bool = True, **options: Any) -> None:
        super().__init__(endpoint, **options)
        self.rubric = self.rubric or DEFAULT_LLM_RUBRIC
        self.reference = reference
        self._hosted: openai.AsyncOpenAI | None = None

    def _make_client(self, url: str | None) -> openai.AsyncOpenAI:
        # one client (one connection pool) per replica for every request of this judge
        target = url or os.environ.get("OPENAI_BASE_URL") or OPENAI_API_URL  # where the SDK sends it
        return openai.AsyncOpenAI(
            base_url=url,  # None: the SDK's own (OPENAI_BASE_URL, else OpenAI's)
            # Said outright: given None, the SDK would read $OPENAI_API_KEY whatever the host.
            api_key=self.endpoint.api_key(target) or NO_KEY,
            max_retries=0,  # retries are ours
            timeout=self.endpoint.timeout_s,
        )

    def _hosted_client(self) -> openai.AsyncOpenAI:
        if self._hosted is None:
            self._hosted = self._make_client(None)
        return self._hosted

    async def aclose(self) -> None:
        clients = [replica.client for replica in self.pool.replicas] if self.pool is not None else []
        for client in [*clients, *([self._hosted] if self._hosted is not None else [])]:
            await client.close()
        self._hosted = None

    def _malformed(self, exc: BaseException) -> bool:
        return isinstance(exc, ValidationError)

    def _describe(self, exc: BaseException) -> str:
        if isinstance(exc, ValidationError):
            return f"malformed judge reply: {exc.errors()[0]['msg']}"
        return super()._describe(exc)

    async def _score(self, live: list[Trajectory]) -> None:
        async with anyio.create_task_group() as tg:
            for traj in live:
                tg.start_soon(self._score_one, traj)

    async def _score_one(self, traj: Trajectory) -> None:
        messages = judge_messages(traj, str(self.rubric), reference=self.reference)
        key = content_key("llm", self.endpoint.served_model(), messages)
        try:
            verdict, latency, cached = await self.verdict(key, lambda: self._ask(messages))
        except JudgeFailure as exc:
            mark_infra(traj, f"judge {self.name}: {exc}")
            self.stats.judge_failures += 1
            return
        traj.reward = float(verdict["score"])
        traj.metrics["llm_score"] = float(verdict["score"])
        traj.metrics["llm_reason"] = verdict["reason"]
        traj.metrics["judge/cached"] = float(cached)
        traj.metrics["judge/latency_s"] = latency
        for name in ("prompt_tokens", "completion_tokens"):
            traj.metrics[f"judge/{name}"] = 0.0 if cached else float(verdict["usage"].get(name, 0))

    async def _ask(self, messages: list[dict[str, Any]]) -> dict[str, Any]:
        """One judge call: the verdict, or OpenAIError / ValidationError (retried when transient or malformed)."""

        async def ask(client: openai.AsyncOpenAI | None, _url: str | None) -> Any:
            if client is None:  # a hosted judge: the SDK's default base URL
                client = self._hosted_client()
            return await client.chat.completions.create(
                model=self.endpoint.served_model(),
                messages=messages,  # type: ignore[arg-type]
                response_format=RESPONSE_FORMAT,  # type: ignore[arg-type]
                temperature=_or_not_given(self.endpoint.temperature),
                extra_body=self.endpoint.extra_body or None,
            )

        response = await self.on_endpoint(ask)
        usage = {
            "prompt_tokens": response.usage.prompt_tokens if response.usage else 0,
            "completion_tokens": response.usage.completion_tokens if response.usage else 0,
        }
        self.stats.add_usage(usage)  # a malformed reply still cost its tokens
        content = response.choices[0].message.content if response.choices else None
        parsed = RubricVerdict.model_validate_json(content or "")
        return {**parsed.model_dump(), "usage": usage}


def _or_not_given(value: float | None) -> Any:
    return openai.NOT_GIVEN if value is None else value
