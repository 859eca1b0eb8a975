"""What `serve.bench` measures and writes: one request's `Sample`, a level's `LevelResult`, the run's
`BenchReport` (saved as bench.json, read back by `--compare`), and the table printed for it.

Its own module so the charts (serve.bench_charts) read reports without importing the runner.
"""

from __future__ import annotations

import math
import statistics
from pathlib import Path

from pydantic import BaseModel, Field

from common.redact import redact_text

from .workloads import BenchRequest, Workload

_ERROR_SAMPLES = 3


class Percentiles(BaseModel):
    mean: float
    p50: float
    p95: float
    p99: float
    max: float

    @classmethod
    def of(cls, values: list[float]) -> Percentiles | None:
        if not values:
            return None
        ordered = sorted(values)

        def pick(q: float) -> float:  # nearest-rank percentile: an observed value, no interpolation
            return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]

        return cls(mean=statistics.fmean(ordered), p50=pick(0.5), p95=pick(0.95), p99=pick(0.99), max=ordered[-1])


class Sample(BaseModel):
    """One request's outcome."""

    ok: bool
    latency_s: float
    ttft_s: float | None = None
    itl_s: list[float] = Field(default_factory=list)
    output_tokens: int = 0
    tool_call_attempted: bool = False
    tool_call_parsed: bool = False
    error: str | None = None


class ToolCallStats(BaseModel):
    requests_with_tools: int
    replies: int = Field(description="replies that call a tool (parsed calls, or call markup left in the text)")
    parsed: int
    parse_rate: float | None = Field(description="parsed / replies; null when no reply called a tool")


class LevelResult(BaseModel):
    workload: Workload
    concurrency: int
    requests: int
    completed: int
    errors: int
    error_rate: float
    duration_s: float
    requests_per_s: float
    output_tokens: int
    output_tokens_per_s: float
    latency_s: Percentiles | None
    ttft_s: Percentiles | None = Field(description="time to first token; streaming only")
    itl_s: Percentiles | None = Field(description="gaps between streamed chunks; streaming only")
    tpot_s: Percentiles | None = Field(description="(latency - ttft) / (tokens - 1) per request; streaming only")
    tool_calls: ToolCallStats
    error_samples: list[str]


class BenchReport(BaseModel):
    label: str
    base_url: str
    model: str
    stream: bool
    max_tokens: int
    temperature: float
    requests_per_level: int
    concurrency: list[int]
    workloads: list[Workload]
    env: str | None
    started: str
    finished: str
    results: list[LevelResult]
    charts: list[str] = Field(default_factory=list)


def summarise(
    workload: Workload, concurrency: int, samples: list[Sample], duration_s: float, requests: list[BenchRequest]
) -> LevelResult:
    done = [s for s in samples if s.ok]
    errors = len(samples) - len(done)
    tokens = sum(s.output_tokens for s in done)
    duration = max(duration_s, 1e-9)
    tpot = [
        (s.latency_s - s.ttft_s) / (s.output_tokens - 1) for s in done if s.ttft_s is not None and s.output_tokens > 1
    ]
    replies = sum(s.tool_call_attempted for s in done)
    parsed = sum(s.tool_call_parsed for s in done)
    with_tools = sum(1 for r in requests if r.tools)
    return LevelResult(
        workload=workload,
        concurrency=concurrency,
        requests=len(samples),
        completed=len(done),
        errors=errors,
        error_rate=errors / len(samples) if samples else 0.0,
        duration_s=duration_s,
        requests_per_s=len(done) / duration,
        output_tokens=tokens,
        output_tokens_per_s=tokens / duration,
        latency_s=Percentiles.of([s.latency_s for s in done]),
        ttft_s=Percentiles.of([s.ttft_s for s in done if s.ttft_s is not None]),
        itl_s=Percentiles.of([gap for s in done for gap in s.itl_s]),
        tpot_s=Percentiles.of(tpot),
        tool_calls=ToolCallStats(
            requests_with_tools=with_tools,
            replies=replies,
            parsed=parsed,
            parse_rate=parsed / replies if replies else None,
        ),
        error_samples=list(dict.fromkeys(redact_text(s.error) for s in samples if s.error))[:_ERROR_SAMPLES],
    )


def _ms(p: Percentiles | None, field: str) -> str:
    return f"{getattr(p, field) * 1000:.0f}" if p is not None else "-"


def table(report: BenchReport) -> str:
    head = (
        f"{'workload':8} {'conc':>4} {'req/s':>7} {'tok/s':>8} {'p50 ms':>7} {'p95 ms':>7} {'p99 ms':>7} "
        f"{'ttft50':>7} {'itl50':>6} {'err%':>5} {'tool-parse':>10}"
    )
    lines = [f"{report.label} @ {report.base_url} ({report.model}, stream={report.stream})", head]
    for r in report.results:
        rate = r.tool_calls.parse_rate
        parse = f"{rate:.0%} of {r.tool_calls.replies}" if rate is not None else "-"
        lines.append(
            f"{r.workload:8} {r.concurrency:>4} {r.requests_per_s:>7.2f} {r.output_tokens_per_s:>8.1f} "
            f"{_ms(r.latency_s, 'p50'):>7} {_ms(r.latency_s, 'p95'):>7} {_ms(r.latency_s, 'p99'):>7} "
            f"{_ms(r.ttft_s, 'p50'):>7} {_ms(r.itl_s, 'p50'):>6} {r.error_rate * 100:>5.1f} {parse:>10}"
        )
    return "\n".join(lines)


def load_report(path: Path) -> BenchReport:
    return BenchReport.model_validate_json(Path(path).read_text(encoding="utf-8"))
