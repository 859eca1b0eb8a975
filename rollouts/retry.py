"""The one retry policy of mcpgym: exponential backoff with jitter (tenacity), transient errors only.

The rollouts (each policy call), `rollouts.questions`, `train.bfcl` and the LLM judges
(`judges.endpoint`) all retry through `RetryConfig.retrying`. What is transient is one rule,
`rollouts.policy.is_transient`: connection errors, timeouts, 408/409/425/429 and 5xx. A 400,
401, 403 or 404 is not: the same request would fail the same way, so it fails at once and the
caller names the key or flag to fix. With several replicas (`--base-url URL,URL,...`) the same
rule decides when rollouts.endpoints takes a replica out and sends the request to another one. A
caller may widen the rule for its own kind of retryable reply (a judge's malformed JSON: sampling
again may give a valid one) with `retry_on`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

from pydantic import BaseModel
from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, wait_exponential_jitter

from .errors import is_transient


class RetryConfig(BaseModel):
    """Retries of one call on transient errors (connection, timeout, 429, 5xx)."""

    retries: int = 4  # attempts after the first
    initial_s: float = 0.5  # first backoff; doubles each time
    max_s: float = 20.0
    jitter_s: float = 0.5  # uniform random extra, so a burst of 429s does not retry in lockstep

    def retrying(
        self,
        counter: Counter[str] | None = None,
        *,
        retry_on: Callable[[BaseException], bool] = is_transient,
        on_retry: Callable[[], None] | None = None,
    ) -> AsyncRetrying:
        """A tenacity loop: errors `retry_on` accepts (default: transient ones), waiting
        `initial_s * 2**n + U(0, jitter_s)` capped at `max_s`; the last error is re-raised.
        Each retry adds one to `counter["policy_retries"]` and calls `on_retry`."""

        def before_sleep(_state: object) -> None:
            if counter is not None:
                counter.update(["policy_retries"])
            if on_retry is not None:
                on_retry()

        return AsyncRetrying(
            retry=retry_if_exception(retry_on),
            stop=stop_after_attempt(self.retries + 1),
            wait=wait_exponential_jitter(multiplier=self.initial_s, max=self.max_s, jitter=self.jitter_s),
            before_sleep=before_sleep,
            reraise=True,
        )
