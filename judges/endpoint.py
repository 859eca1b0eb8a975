"""Where a judge model lives (any OpenAI-compatible endpoint: a local vLLM, a hosted API), and
the base of the judges that call one.

The key is read from the environment when a request is made, by common.keys' one rule: the
variable `api_key_env` names (`JUDGE_API_KEY`); when it is unset, `OPENAI_API_KEY` only for
OpenAI's own API, and for any other endpoint no key (a local judge wants none; one that does
answers 401, and the error names the variable). It is never stored in a config, a record or a log.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, field_validator

from common.flags import parse_base_urls
from common.keys import NO_KEY, key_for
from common.redact import redact_url
from rollouts.endpoints import EndpointPool, EndpointStats
from rollouts.errors import describe_error, is_transient
from rollouts.retry import RetryConfig

from .base import Judge, JudgeFailure
from .cache import VerdictCache

T = TypeVar("T")

# Model prefixes litellm routes to an OpenAI-compatible server at `api_base`.
OPENAI_COMPATIBLE = ("openai/", "hosted_vllm/")


class JudgeEndpoint(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str  # "Qwen/Qwen3-8B" on a base URL, or a litellm name ("openai/gpt-4.1-mini") for a hosted judge
    base_url: str | None = None  # several replicas of one judge model: comma-separated
    api_key_env: str = "JUDGE_API_KEY"
    timeout_s: float = 120.0
    temperature: float | None = 0.0
    # Sent as-is in every request body, e.g. {"chat_template_kwargs": {"enable_thinking": false}} for Qwen3 on vLLM.
    extra_body: dict[str, Any] = Field(default_factory=dict)

    cooldown_s: float = 10.0  # a replica that failed is left out this long (rollouts.endpoints)

    @field_validator("base_url")
    @classmethod
    def _urls(cls, value: str | None) -> str | None:
        return None if value is None else ",".join(parse_base_urls(value))

    def base_urls(self) -> list[str]:
        return self.base_url.split(",") if self.base_url else []

    def api_key(self, url: str | None = None) -> str | None:
        """The key for replica `url` (default: the first), or None when none goes there.

        With no base URL the endpoint is the provider litellm routes to, which reads its own
        variable (OPENAI_API_KEY, ANTHROPIC_API_KEY, ...) when no key is passed."""
        return key_for(url or (self.base_urls() or [None])[0], self.api_key_env)

    def litellm_model(self) -> str:
        """The name litellm routes: on a base URL always the OpenAI-compatible route,
        because a served name like "Qwen/Qwen3-8B" would otherwise read as a provider."""
        if self.base_url and not self.model.startswith(OPENAI_COMPATIBLE):
            return f"openai/{self.model}"
        return self.model

    def served_model(self) -> str:
        """The name the server knows (what an OpenAI client sends)."""
        for prefix in OPENAI_COMPATIBLE:
            if self.model.startswith(prefix):
                return self.model[len(prefix) :]
        return self.model

    def litellm_params(self, base_url: str | None = None) -> dict[str, Any]:
        """litellm's parameters, aimed at `base_url` (one replica; default: the first)."""
        # Retries are ours (counted, then infra-failed), so litellm's and the SDK's are off.
        params: dict[str, Any] = {"timeout": self.timeout_s, "num_retries": 0, "max_retries": 0}
        if self.temperature is not None:
            params["temperature"] = self.temperature
        if self.extra_body:
            params["extra_body"] = self.extra_body
        if self.base_url:
            params["api_base"] = base_url or self.base_urls()[0]
        key = self.api_key(params.get("api_base"))
        if key:
            params["api_key"] = key
        elif self.base_url:
            # Said outright: given no key, litellm's OpenAI route would send $OPENAI_API_KEY to api_base.
            params["api_key"] = NO_KEY
        return params


# What to check when the judge refuses a request outright (not retried: it would fail the same way).
FIX_HINTS = {
    400: "check --judge-model and --judge-extra-body (the judge rejected the request)",
    401: "check {key} (the judge's API key) and --judge-base-url",
    403: "check {key} (the judge's API key: no access to this model) and --judge-base-url",
    404: "check --judge-base-url and --judge-model (no such endpoint or model)",
}


class EndpointJudge(Judge):
    """A judge that asks a model at a `JudgeEndpoint`: verdicts cached by content hash, calls
    bounded by the limiter and retried by the policy the rollouts use (rollouts.retry: backoff
    with jitter, transient errors only, plus malformed replies); when the attempts failed, or a
    request was refused (400/401/403/404: not retried), JudgeFailure (the caller masks those
    trajectories as infra failures, never scores them 0).

    Subclasses build the request and a cache key, and give `verdict` a coroutine making one
    attempt; an error of `retryable` becomes a JudgeFailure (retried first when transient or
    `_malformed`), any other error is a bug and propagates."""

    retryable: tuple[type[BaseException], ...] = (Exception,)

    def __init__(
        self,
        endpoint: JudgeEndpoint,
        *,
        rubric: str | None = None,
        concurrency: int = 8,
        cache: VerdictCache | None = None,
        retries: int = 2,
        backoff_s: float = 0.5,
    ) -> None:
        super().__init__(concurrency=concurrency)
        self.endpoint = endpoint
        self.rubric = rubric
        self.cache = cache
        self.retries = retries
        self.backoff_s = backoff_s
        urls = endpoint.base_urls()
        # One replica per URL of --judge-base-url; a hosted judge (no URL) is litellm's to route.
        self.pool: EndpointPool[Any] | None = (
            EndpointPool(urls, self._make_client, cooldown_s=endpoint.cooldown_s) if urls else None
        )

    def _make_client(self, url: str) -> Any:
        """What a request to replica `url` needs (default: the URL itself, for litellm's `api_base`)."""
        return url

    async def on_endpoint(self, request: Callable[[Any, str | None], Awaitable[T]]) -> T:
        """`await request(client, url)` on the least-loaded replica, failing over to the others on a
        transient error (rollouts.endpoints); a hosted judge gets `(None, None)`."""
        if self.pool is None:
            return await request(None, None)
        return await self.pool.call(lambda replica: request(replica.client, replica.url))

    def endpoint_stats(self) -> list[EndpointStats]:
        return self.pool.stats() if self.pool is not None else []

    def report(self) -> dict[str, float]:
        out = super().report()
        stats = self.endpoint_stats()
        if len(stats) > 1 or any(item.failures for item in stats):
            for item in stats:
                for key in ("requests", "failures", "taken_out"):
                    out[f"endpoint {item.url} {key}"] = getattr(item, key)
        return out

    def _malformed(self, exc: BaseException) -> bool:
        return False

    def _describe(self, exc: BaseException) -> str:
        line = describe_error(exc)
        status = getattr(exc, "status_code", None)
        hint = FIX_HINTS.get(status) if isinstance(status, int) else None
        if hint:
            where = redact_url(self.endpoint.base_url) if self.endpoint.base_url else self.endpoint.model
            line = f"{line} from {where}; {hint.format(key=self.endpoint.api_key_env)}"
        return line

    def _retry_on(self, exc: BaseException) -> bool:
        return is_transient(exc) or self._malformed(exc)

    def _count_retry(self) -> None:
        self.stats.retries += 1

    async def verdict(
        self, key: str, attempt: Callable[[], Awaitable[dict[str, Any]]]
    ) -> tuple[dict[str, Any], float, bool]:
        """(verdict, seconds of the call that gave it, whether it came from the cache)."""
        cached = self.cache.get(key) if self.cache is not None else None
        if cached is not None:
            self.stats.cache_hits += 1
            return cached, 0.0, True
        policy = RetryConfig(retries=self.retries, initial_s=self.backoff_s, jitter_s=min(self.backoff_s, 0.5))
        attempts = 0
        elapsed = 0.0
        async with self.limiter:
            try:
                async for attempt_state in policy.retrying(retry_on=self._retry_on, on_retry=self._count_retry):
                    with attempt_state:
                        attempts += 1
                        self.stats.judge_calls += 1
                        started = time.perf_counter()
                        try:
                            verdict = await attempt()
                        except self.retryable as exc:
                            self.stats.malformed_replies += int(self._malformed(exc))
                            raise
                        finally:
                            elapsed = time.perf_counter() - started
                            self.stats.latency_s += elapsed
            except self.retryable as exc:
                tried = f"after {attempts} attempt{'s' * (attempts != 1)}" if self._retry_on(exc) else "not retried"
                raise JudgeFailure(f"{self._describe(exc)[:400]} ({tried})") from exc
        if self.cache is not None:
            self.cache.put(key, verdict)
        return verdict, elapsed, False
