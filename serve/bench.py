"""Load-test any OpenAI-compatible chat endpoint (vLLM, a merged model, a hosted API).

    python -m serve.bench --base-url http://127.0.0.1:8000/v1 --model NAME \
        [--concurrency 1,4,16,64] [--requests 64] [--workload chat,agent] [--env energy] [--stream]
    python -m serve.bench --compare runs/bench/base/bench.json runs/bench/merged/bench.json --out-dir runs/bench/cmp

For each workload and each concurrency level it sends `--requests` requests through exactly that
many workers (bounded; a level also ends at `--max-seconds`, so a run always stops by itself) and
reports requests/s, output tokens/s, end-to-end latency p50/p95/p99, the error rate, TTFT and
inter-token latency (with --stream), and for agent traffic the share of tool-call replies that
parse (every call names an offered tool with JSON-object arguments, nothing left as raw text).
Writes bench.json and throughput/latency charts; --compare overlays two or more saved runs.
The API key, when one is needed, comes from $OPENAI_API_KEY (`--api-key-env` names another
variable, e.g. VLLM_API_KEY for a `python -m serve.vllm` server), by common.keys' rule.
"""

from __future__ import annotations

import asyncio
import json
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from pydantic import BaseModel, Field

from common.files import write_private_atomic
from common.flags import progress_off
from common.keys import key_for
from common.redact import redact_text, redact_url

from .bench_report import BenchReport, LevelResult, Percentiles, Sample, load_report, summarise, table
from .workloads import WORKLOADS, BenchRequest, Workload, agent_requests, chat_requests

__all__ = [
    "BenchConfig",
    "BenchReport",
    "LevelResult",
    "Percentiles",
    "Sample",
    "build_pools",
    "load_report",
    "main",
    "run_bench",
    "run_level",
    "send",
    "summarise",
    "table",
]

# Text that means the model tried to call a tool in the formats of the parsers serve.models picks.
_CALL_MARKERS = ("<tool_call>", "<|python_tag|>", "[TOOL_CALLS]")


class BenchConfig(BaseModel):
    base_url: str
    model: str
    concurrency: list[int] = Field(default_factory=lambda: [1, 4, 16, 64])
    requests: int = Field(64, ge=1, description="per workload and concurrency level")
    workloads: list[Workload] = Field(default_factory=lambda: list(WORKLOADS))
    env: str = "energy"
    split: str = "train"
    stream: bool = False
    max_tokens: int = Field(128, ge=1)
    temperature: float = 0.0
    timeout_s: float = Field(120.0, gt=0, description="per request")
    max_seconds: float = Field(300.0, gt=0, description="per level: no new request starts after this")
    warmup: int = Field(1, ge=0, description="uncounted requests per workload before measuring")
    label: str | None = None
    api_key_env: str = Field("OPENAI_API_KEY", description="the variable holding the key (the key is never stored)")


# --------------------------------------------------------------------------- one request


def _judge_tool_calls(request: BenchRequest, content: str | None, calls: list[dict[str, Any]]) -> tuple[bool, bool]:
    """(attempted, parsed) for a reply to a request that offered tools."""
    text = content or ""
    leftover = any(marker in text for marker in _CALL_MARKERS)
    attempted = bool(calls) or leftover
    if not calls or leftover:
        return attempted, False
    names = request.tool_names
    for call in calls:
        function = call.get("function") or {}
        try:
            arguments = json.loads(function.get("arguments") or "{}")
        except (TypeError, ValueError):
            return True, False
        if function.get("name") not in names or not isinstance(arguments, dict):
            return True, False
    return True, True


def _body(config: BenchConfig, request: BenchRequest) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": config.model,
        "messages": request.messages,
        "max_tokens": config.max_tokens,
        "temperature": config.temperature,
    }
    if request.tools:
        body["tools"] = request.tools
    if config.stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    return body


async def _send_plain(client: httpx.AsyncClient, config: BenchConfig, request: BenchRequest) -> Sample:
    start = time.perf_counter()
    response = await client.post("/chat/completions", json=_body(config, request))
    latency = time.perf_counter() - start
    if response.status_code != 200:
        return Sample(ok=False, latency_s=latency, error=f"HTTP {response.status_code}: {response.text[:200]}")
    data = response.json()
    message = data["choices"][0]["message"]
    attempted, parsed = (
        _judge_tool_calls(request, message.get("content"), message.get("tool_calls") or [])
        if request.tools
        else (False, False)
    )
    tokens = int((data.get("usage") or {}).get("completion_tokens") or 0)
    return Sample(
        ok=True,
        latency_s=latency,
        output_tokens=tokens,
        tool_call_attempted=attempted,
        tool_call_parsed=parsed,
    )


async def _send_stream(client: httpx.AsyncClient, config: BenchConfig, request: BenchRequest) -> Sample:
    start = time.perf_counter()
    first: float | None = None
    last: float | None = None
    gaps: list[float] = []
    content: list[str] = []
    calls: dict[int, dict[str, Any]] = {}
    tokens = 0
    async with client.stream("POST", "/chat/completions", json=_body(config, request)) as response:
        if response.status_code != 200:
            text = (await response.aread()).decode(errors="replace")
            return Sample(
                ok=False, latency_s=time.perf_counter() - start, error=f"HTTP {response.status_code}: {text[:200]}"
            )
        async for line in response.aiter_lines():
            if not line.startswith("data:"):
                continue
            payload = line[5:].strip()
            if payload == "[DONE]":
                break
            chunk = json.loads(payload)
            if "error" in chunk:
                return Sample(ok=False, latency_s=time.perf_counter() - start, error=str(chunk["error"])[:200])
            if chunk.get("usage"):
                tokens = int(chunk["usage"].get("completion_tokens") or 0)
            for choice in chunk.get("choices") or []:
                delta = choice.get("delta") or {}
                if not (delta.get("content") or delta.get("tool_calls") or delta.get("reasoning_content")):
                    continue
                now = time.perf_counter()
                if first is None:
                    first = now
                elif last is not None:
                    gaps.append(now - last)
                last = now
                content.append(delta.get("content") or "")
                for part in delta.get("tool_calls") or []:  # streamed calls arrive in pieces, by index
                    call = calls.setdefault(int(part.get("index", 0)), {"function": {"name": "", "arguments": ""}})
                    function = part.get("function") or {}
                    call["function"]["name"] += function.get("name") or ""
                    call["function"]["arguments"] += function.get("arguments") or ""
    latency = time.perf_counter() - start
    attempted, parsed = (
        _judge_tool_calls(request, "".join(content), [calls[i] for i in sorted(calls)])
        if request.tools
        else (False, False)
    )
    return Sample(
        ok=True,
        latency_s=latency,
        ttft_s=(first - start) if first is not None else None,
        itl_s=gaps,
        output_tokens=tokens,
        tool_call_attempted=attempted,
        tool_call_parsed=parsed,
    )


async def send(client: httpx.AsyncClient, config: BenchConfig, request: BenchRequest) -> Sample:
    """One request; any failure (HTTP status, timeout, broken stream) is a failed Sample, not an exception."""
    start = time.perf_counter()
    try:
        if config.stream:
            return await _send_stream(client, config, request)
        return await _send_plain(client, config, request)
    except (httpx.HTTPError, ValueError, KeyError, IndexError, TypeError) as exc:
        return Sample(ok=False, latency_s=time.perf_counter() - start, error=f"{type(exc).__name__}: {exc}"[:200])


# --------------------------------------------------------------------------- one level


async def run_level(
    client: httpx.AsyncClient,
    config: BenchConfig,
    pool: list[BenchRequest],
    workload: Workload,
    concurrency: int,
    progress: Any = None,
) -> LevelResult:
    """`config.requests` requests through `concurrency` workers cycling through `pool`."""
    samples: list[Sample] = []
    sent: list[BenchRequest] = []
    next_index = 0
    deadline = time.perf_counter() + config.max_seconds

    async def worker() -> None:
        nonlocal next_index
        while next_index < config.requests and time.perf_counter() < deadline:
            request = pool[next_index % len(pool)]
            next_index += 1
            sent.append(request)
            samples.append(await send(client, config, request))
            if progress is not None:
                progress.update(1)

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    duration = time.perf_counter() - start
    if progress is not None and len(samples) < config.requests:  # the deadline cut this level short
        progress.update(config.requests - len(samples))
    return summarise(workload, concurrency, samples, duration, sent)


# --------------------------------------------------------------------------- a run


async def build_pools(config: BenchConfig) -> dict[Workload, list[BenchRequest]]:
    pools: dict[Workload, list[BenchRequest]] = {}
    for workload in config.workloads:
        pools[workload] = chat_requests() if workload == "chat" else await _agent_pool(config)
    return pools


async def _agent_pool(config: BenchConfig) -> list[BenchRequest]:
    """The agent traffic of `config.env`: the one place serve loads an env (the user names it)."""
    import envs

    async with envs.load(config.env) as env:
        return await agent_requests(env, split=config.split)


def http_client(config: BenchConfig) -> httpx.AsyncClient:
    key = key_for(config.base_url, config.api_key_env)
    most = max(config.concurrency)
    return httpx.AsyncClient(
        base_url=config.base_url.rstrip("/"),
        headers={"Authorization": f"Bearer {key}"} if key else {},
        timeout=httpx.Timeout(config.timeout_s, connect=10.0),
        limits=httpx.Limits(max_connections=most, max_keepalive_connections=most),
    )


async def run_bench(
    config: BenchConfig, *, pools: dict[Workload, list[BenchRequest]] | None = None, show_progress: bool = True
) -> BenchReport:
    """Every workload at every concurrency level; `pools` (default: built from config) are the requests to cycle."""
    from tqdm import tqdm

    pools = pools or await build_pools(config)
    started = datetime.now(UTC)
    results: list[LevelResult] = []
    total = config.requests * len(config.concurrency) * len(config.workloads)
    async with http_client(config) as client:
        with tqdm(total=total, desc="bench", unit="req", disable=not show_progress or progress_off()) as progress:
            for workload in config.workloads:
                for request in pools[workload][: config.warmup]:  # compile/caches warm before measuring
                    await send(client, config, request)
                for concurrency in config.concurrency:
                    progress.set_postfix_str(f"{workload} x{concurrency}")
                    results.append(await run_level(client, config, pools[workload], workload, concurrency, progress))
    return BenchReport(
        label=config.label or config.model,
        base_url=redact_url(config.base_url),  # a report is shared: no key in a query or path
        model=config.model,
        stream=config.stream,
        max_tokens=config.max_tokens,
        temperature=config.temperature,
        requests_per_level=config.requests,
        concurrency=config.concurrency,
        workloads=config.workloads,
        env=config.env if "agent" in config.workloads else None,
        started=started.isoformat(timespec="seconds"),
        finished=datetime.now(UTC).isoformat(timespec="seconds"),
        results=results,
    )


async def first_model(base_url: str, api_key_env: str = "OPENAI_API_KEY") -> str:
    """The endpoint's first model id (vLLM lists the base model first)."""
    key = key_for(base_url, api_key_env)
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    async with httpx.AsyncClient(timeout=30.0, headers=headers) as client:
        response = await client.get(f"{base_url.rstrip('/')}/models")
    response.raise_for_status()
    return response.json()["data"][0]["id"]


# --------------------------------------------------------------------------- CLI


def _int_list(text: str) -> list[int]:
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise ValueError(f"expected comma-separated integers, got {text!r}") from None
    if not values or any(v < 1 for v in values):
        raise ValueError(f"expected positive integers, got {text!r}")
    return sorted(set(values))


def _workloads(text: str) -> list[Workload]:
    names = [part.strip() for part in text.split(",") if part.strip()]
    bad = [n for n in names if n not in WORKLOADS]
    if not names or bad:
        raise ValueError(f"workloads are {', '.join(WORKLOADS)}; got {text!r}")
    return list(dict.fromkeys(names))  # type: ignore[arg-type]


def _parser() -> Any:
    import argparse

    from common.cli import ArgumentParser
    from common.flags import add_flag, single_base_url_arg

    def typed(func: Any, name: str) -> Any:
        def convert(text: str) -> Any:
            try:
                return func(text)
            except ValueError as exc:
                raise argparse.ArgumentTypeError(str(exc)) from None

        convert.__name__ = name
        return convert

    parser = ArgumentParser(prog="python -m serve.bench", description=__doc__.split("\n\n")[0])
    add_flag(
        parser,
        "--base-url",
        default="http://127.0.0.1:8000/v1",
        type=single_base_url_arg,
        help="the one endpoint measured",
    )
    add_flag(parser, "--model", default=None, help="default: the endpoint's first model")
    add_flag(parser, "--api-key-env", default="OPENAI_API_KEY", help="variable holding the endpoint's API key")
    parser.add_argument("--concurrency", type=typed(_int_list, "concurrency"), default=[1, 4, 16, 64])
    parser.add_argument("--requests", type=int, default=64, help="requests per workload and concurrency level")
    parser.add_argument("--workload", type=typed(_workloads, "workload"), default=list(WORKLOADS), help="chat,agent")
    parser.add_argument("--env", default="energy", help="env whose tasks make the agent traffic")
    parser.add_argument("--split", default="train")
    parser.add_argument("--stream", action="store_true", help="stream replies (adds TTFT and inter-token latency)")
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--temperature", type=float, default=0.0)
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds per request")
    parser.add_argument("--max-seconds", type=float, default=300.0, help="per level; no new request after this")
    parser.add_argument("--warmup", type=int, default=1, help="uncounted requests per workload first")
    parser.add_argument("--label", default=None, help="run name in tables and --compare charts; default: --model")
    add_flag(parser, "--out-dir", type=Path, default=None, aliases=("--out",), help="default runs/bench/<time>")
    parser.add_argument(
        "--compare", nargs="+", type=Path, default=None, metavar="BENCH_JSON", help="overlay saved runs, send nothing"
    )
    add_flag(parser, "--no-progress", help="no progress bar")
    return parser


async def _compare(paths: list[Path], out: Path) -> int:
    """`--compare`: overlay saved runs in one pair of charts and print their tables."""
    from common.cli import fail

    from .bench_charts import compare_charts

    if len(paths) < 2:
        fail("python -m serve.bench: error: --compare needs two or more bench.json files (see --help)")
    reports = []
    for path in paths:
        try:
            reports.append(await asyncio.to_thread(load_report, path))
        except FileNotFoundError:
            raise
        except ValueError as exc:
            fail(f"error: {path} is not a serve.bench report ({str(exc).splitlines()[0]})")
    charts = await asyncio.to_thread(compare_charts, reports, out)
    for report in reports:
        print(table(report))
    print("charts: " + ", ".join(str(c) for c in charts))
    return 0


def _config(args: Any, model: str) -> BenchConfig:
    return BenchConfig(
        base_url=args.base_url,
        model=model,
        concurrency=args.concurrency,
        requests=args.requests,
        workloads=args.workload,
        env=args.env,
        split=args.split,
        stream=args.stream,
        max_tokens=args.max_tokens,
        temperature=args.temperature,
        timeout_s=args.timeout,
        max_seconds=args.max_seconds,
        warmup=max(args.warmup, 0),
        label=args.label,
        api_key_env=args.api_key_env,
    )


async def main(argv: list[str] | None = None) -> int:
    from common.cli import fail
    from common.flags import apply_no_progress

    from .bench_charts import report_charts

    args = _parser().parse_args(argv)
    apply_no_progress(args.no_progress)
    out = args.out_dir or Path("runs") / "bench" / datetime.now().strftime("%Y%m%d-%H%M%S")
    if args.compare:
        return await _compare(args.compare, out)
    for flag, value in (("--requests", args.requests), ("--max-tokens", args.max_tokens), ("--timeout", args.timeout)):
        if value <= 0:
            fail(f"python -m serve.bench: error: {flag} must be positive (see --help)")
    try:
        model = args.model or await first_model(args.base_url, args.api_key_env)
    except (httpx.HTTPError, KeyError, IndexError, ValueError) as exc:
        where = redact_url(args.base_url)
        fail(f"error: cannot list models at {where} ({type(exc).__name__}: {redact_text(str(exc))}); pass --model")
    try:
        report = await run_bench(_config(args, model), show_progress=not args.no_progress)
    except ValueError as exc:  # e.g. an env without tasks in --split
        fail(f"error: {exc}")
    out.mkdir(parents=True, exist_ok=True)
    report.charts = [str(p) for p in await asyncio.to_thread(report_charts, report, out)]
    write_private_atomic(out / "bench.json", report.model_dump_json(indent=2) + "\n")
    print(table(report))
    print(f"wrote {out / 'bench.json'}; charts: {', '.join(report.charts)}")
    if all(r.completed == 0 for r in report.results):
        print(f"every request failed, e.g. {report.results[0].error_samples[:1]}", flush=True)
        return 1
    return 0


if __name__ == "__main__":
    from common.cli import run_cli

    run_cli(main)
