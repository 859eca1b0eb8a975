"""Several replicas of one model behind one `--base-url`: least-loaded routing, fail-over, cool-down.

`--base-url` takes one URL or several, comma-separated (`common.flags.parse_base_urls`: the one
parser, which `add_flag` gives `--base-url` and `--judge-base-url` in every CLI). An
`EndpointPool` sends each request to the replica with the fewest requests in flight (ties: the
one used least). A replica whose request fails with a transient error (the one rule of
rollouts.retry, `rollouts.policy.is_transient`: connection refused, timeouts, 429, 5xx) is taken
out for `cooldown_s` and the same request goes at once to another replica; only when every replica
failed does the error reach the caller, whose retries (backoff, jitter) try again. So a rollout
is an infra failure only when every replica kept failing, and a dead replica never makes one a
model failure. When every replica is cooling down, the one whose cool-down ends first is tried
anyway (an answer brings it back at once): one replica behaves exactly like a plain URL.

Counts per replica (requests, failures, times taken out) are `EndpointStats`, for the stats JSON,
reports and closing lines: each names its replica by the redacted URL (`common.redact`: no
userinfo, no query, no secret-looking path segment), never the URL the client uses.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

from pydantic import BaseModel

from common.flags import base_url_arg, parse_base_urls, single_base_url_arg
from common.redact import redact_url

from .errors import is_transient

__all__ = ["EndpointPool", "EndpointStats", "Replica", "base_url_arg", "parse_base_urls", "single_base_url_arg"]

C = TypeVar("C")
T = TypeVar("T")

DEFAULT_COOLDOWN_S = 10.0


class EndpointStats(BaseModel):
    """One replica's counts over the pool's life."""

    url: str  # redacted: what a file or a log line may show
    requests: int = 0  # requests sent to it (each fail-over attempt counts where it went)
    failures: int = 0  # of those, transient failures (then it was taken out)
    taken_out: int = 0  # times it went into cool-down (from in service)
    in_flight: int = 0  # at the moment of the snapshot


class Replica(Generic[C]):
    """One endpoint of the pool: its URL, its client (made once), its counts and cool-down."""

    def __init__(self, url: str, client: C) -> None:
        self.url = url  # the real one, for the client; the stats carry the redacted one
        self.client = client
        self.stats = EndpointStats(url=redact_url(url))
        self.out_until = 0.0  # monotonic time its cool-down ends (0: in service)


class EndpointPool(Generic[C]):
    """Replicas of one endpoint, each with a client from `make_client(url)` (one connection pool
    per replica, for the pool's whole life)."""

    def __init__(
        self,
        urls: list[str],
        make_client: Callable[[str], C],
        *,
        cooldown_s: float = DEFAULT_COOLDOWN_S,
        transient: Callable[[BaseException], bool] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not urls:
            raise ValueError("an endpoint pool needs at least one URL")
        self.replicas = [Replica(url, make_client(url)) for url in urls]
        self.cooldown_s = cooldown_s
        if transient is None:
            transient = is_transient
        self.transient = transient
        self.clock = clock

    @property
    def urls(self) -> list[str]:
        return [replica.url for replica in self.replicas]

    def pick(self, exclude: set[int] | None = None) -> int | None:
        """The index of the replica to send the next request to, `exclude` left out: among those in
        service the fewest in flight (then the fewest requests); when all are cooling down, the one
        whose cool-down ends first. None when every replica is excluded."""
        now = self.clock()
        candidates = [i for i in range(len(self.replicas)) if i not in (exclude or set())]
        if not candidates:
            return None
        live = [i for i in candidates if self.replicas[i].out_until <= now]
        if live:
            return min(live, key=lambda i: (self.replicas[i].stats.in_flight, self.replicas[i].stats.requests))
        return min(candidates, key=lambda i: self.replicas[i].out_until)

    async def call(self, request: Callable[[Replica[C]], Awaitable[T]]) -> T:
        """`await request(replica)` on the least-loaded replica; on a transient error that replica is
        taken out and the request goes to the next one, until each replica was tried once; then
        the last error is raised. Other errors (a 400: the request's fault) are raised at once."""
        tried: set[int] = set()
        while True:
            index = self.pick(tried)
            if index is None:
                raise AssertionError("unreachable: the last replica's error was raised")
            replica = self.replicas[index]
            tried.add(index)
            probe = replica.out_until > self.clock()  # every replica is cooling down: try this one anyway
            replica.stats.requests += 1
            replica.stats.in_flight += 1
            try:
                result = await request(replica)
            except Exception as exc:
                if not self.transient(exc):
                    raise
                self._take_out(replica)
                if len(tried) == len(self.replicas):
                    raise
                continue
            finally:
                replica.stats.in_flight -= 1
            if probe:  # a replica that answers while out is back in service at once; an answer to a
                replica.out_until = 0.0  # request sent before it was taken out does not bring it back
            return result

    def _take_out(self, replica: Replica[C]) -> None:
        replica.stats.failures += 1
        now = self.clock()
        if replica.out_until <= now:
            replica.stats.taken_out += 1
        replica.out_until = now + self.cooldown_s

    def stats(self) -> list[EndpointStats]:
        return [replica.stats.model_copy() for replica in self.replicas]


def summary_line(stats: list[EndpointStats]) -> str:
    """`url: 12 requests, 1 failed, taken out 1x; url: ...` for a closing line."""
    parts = []
    for item in stats:
        text = f"{item.url}: {item.requests} requests"
        if item.failures:
            text += f", {item.failures} failed, taken out {item.taken_out}x"
        parts.append(text)
    return "; ".join(parts)
