"""Benchmark MCPEnv: tool calls per transport, and whole rollouts per isolation mode.

1. Tool calls/s and p50/p95 latency over in-process, stdio and streamable HTTP,
   at concurrency 1 and 64 (one shared session), plus the per-call overhead of
   MCPEnv against a raw `fastmcp.Client` call on the same in-process server.
2. Rollouts/s of a two-turn task (one tool call, then an answer) against a
   scripted OpenAI-compatible policy server, in each isolation mode, next to
   - the floor: one raw shared stdio session (the MCP SDK) and one OpenAI client;
   - ART's MCP-example pattern: a new stdio server and client session per
     rollout, and a new OpenAI client per turn.
3. Isolation of a stateful Python stdio server (issue 20's harness): `shared`,
   `per_session` with each rollout's fresh server forked from a preloaded
   interpreter (`envs.forkserver`) or spawned, and ART's pattern, at concurrency 16.
4. State on disk (issue 29): forked `per_process` rollouts of the same server, with and without a
   `${MCPGYM_EPISODE_DIR}` seeded from a small `workspace` (made, copied and removed per rollout).

Prints a table and writes JSON (default runs/bench/envs.json). Not a test.

    python scripts/bench_envs.py            # about 2 minutes on 2 cores
    python scripts/bench_envs.py --quick    # smaller counts
    python scripts/bench_envs.py --section isolation   # issue 20's harness only (512 rollouts, c16)
    python scripts/bench_envs.py --section episode-dir  # the episode folder's cost per rollout
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

SCRIPTS = Path(__file__).resolve().parent
ROOT = SCRIPTS.parent
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
from tqdm import tqdm  # noqa: E402

from common.cli import ArgumentParser, run_cli  # noqa: E402

SERVER_SCRIPT = SCRIPTS / "_bench_mcp_server.py"
POLICY_SCRIPT = SCRIPTS / "_scripted_policy.py"
ADD_ARGS = {"a": 2, "b": 3}
EXPECTED_ANSWER = "The answer is 5."


# -- helpers ---------------------------------------------------------------------------------


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Process:
    """A helper server process on 127.0.0.1, up once GET /health answers."""

    def __init__(self, args: list[str], port: int) -> None:
        self.port = port
        self.proc = subprocess.Popen(
            [sys.executable, *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{args[0]} exited with {self.proc.returncode}")
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"{args[0]} did not come up")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@contextlib.contextmanager
def add_policy() -> Iterator[str]:
    """The scripted policy server whose every turn calls `add`: its base URL while it runs."""
    port = free_port()
    policy = Process([str(POLICY_SCRIPT), "--port", str(port), "--tool", "add",
                      "--arguments", json.dumps(ADD_ARGS)], port)  # fmt: skip
    try:
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        policy.stop()


def percentiles(latencies: list[float]) -> dict[str, float]:
    ordered = sorted(latencies)

    def pick(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000

    return {"p50_ms": round(pick(0.50), 3), "p95_ms": round(pick(0.95), 3)}


async def run_concurrently(
    n: int, concurrency: int, one: Callable[[int], Awaitable[None]]
) -> tuple[float, list[float]]:
    """Run `one(i)` for i < n with `concurrency` workers; (wall seconds, latencies)."""
    latencies: list[float] = []
    counter = iter(range(n))

    async def worker() -> None:
        for i in counter:
            start = time.perf_counter()
            await one(i)
            latencies.append(time.perf_counter() - start)

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.perf_counter() - start, latencies


# -- tool calls ------------------------------------------------------------------------------


async def bench_calls(env: Any, *, n: int, concurrency: int) -> dict[str, Any]:
    from envs import Task, ToolCall

    calls = [ToolCall(id="c", name="add", arguments=ADD_ARGS)]
    async with contextlib.AsyncExitStack() as stack:
        episodes = [await stack.enter_async_context(env.episode()) for _ in range(concurrency)]
        for ep in episodes:
            await ep.reset(Task(id="b", question="2 + 3?"))
        for _ in range(10):  # warm-up
            await episodes[0].step(calls)

        async def one(i: int) -> None:
            result = await episodes[i % concurrency].step(calls)
            if result.messages[0]["content"] != "5":
                raise RuntimeError(f"wrong tool result {result.messages[0]['content']!r}")

        wall, latencies = await run_concurrently(n, concurrency, one)
    return {"calls": n, "concurrency": concurrency, "calls_per_s": round(n / wall, 1), **percentiles(latencies)}


async def bench_overhead(n: int, rounds: int) -> dict[str, Any]:
    """Mean in-process call latency: raw fastmcp.Client (default and legacy handshake) vs
    MCPEnv.step, interleaved in blocks so machine noise hits all alike; best block wins."""
    from _bench_mcp_server import build_server
    from fastmcp import Client

    from envs import MCPEnv, Task, ToolCall

    server = build_server()
    calls = [ToolCall(id="c", name="add", arguments=ADD_ARGS)]
    best = {"client_default": float("inf"), "client_legacy": float("inf"), "mcpenv": float("inf")}
    async with (
        Client(server) as default,
        Client(server, mode="legacy") as legacy,
        MCPEnv(server, isolation="shared") as env,
        env.episode() as ep,
    ):
        await ep.reset(Task(id="b", question="?"))

        async def time_block(fn: Callable[[], Awaitable[Any]]) -> float:
            for _ in range(20):
                await fn()
            start = time.perf_counter()
            for _ in range(n):
                await fn()
            return (time.perf_counter() - start) / n

        for _ in range(rounds):
            best["client_default"] = min(
                best["client_default"], await time_block(lambda: default.call_tool("add", ADD_ARGS))
            )
            best["client_legacy"] = min(
                best["client_legacy"], await time_block(lambda: legacy.call_tool("add", ADD_ARGS))
            )
            best["mcpenv"] = min(best["mcpenv"], await time_block(lambda: ep.step(calls)))
    raw = min(best["client_default"], best["client_legacy"])  # the stricter baseline
    return {
        "raw_client_default_ms": round(best["client_default"] * 1000, 3),
        "raw_client_legacy_ms": round(best["client_legacy"] * 1000, 3),
        "mcpenv_ms": round(best["mcpenv"] * 1000, 3),
        "overhead_x": round(best["mcpenv"] / raw, 3),
        "calls_per_block": n,
        "rounds": rounds,
    }


# -- rollouts --------------------------------------------------------------------------------


def _openai_calls(message: Any) -> list[Any]:
    return list(message.tool_calls or [])


async def env_rollout(env: Any, client: Any) -> str:
    """The rollout loop a policy runs against an MCPEnv episode."""
    from envs import Task, ToolCall

    async with env.episode() as ep:
        obs = await ep.reset(Task(id="r", question="What is 2 + 3?"))
        messages = list(obs.messages)
        for _ in range(4):
            response = await client.chat.completions.create(model="scripted", messages=messages, tools=obs.tools)
            message = response.choices[0].message
            calls = _openai_calls(message)
            if not calls:
                return message.content or ""
            messages.append(message.model_dump(exclude_none=True))
            result = await ep.step(
                [ToolCall(id=c.id, name=c.function.name, arguments=c.function.arguments) for c in calls]
            )
            messages.extend(result.messages)
    raise RuntimeError("the scripted policy never answered")


async def session_rollout(session: Any, tools: list[dict[str, Any]], client: Any) -> str:
    """The same loop over a raw MCP SDK session."""
    messages: list[dict[str, Any]] = [{"role": "user", "content": "What is 2 + 3?"}]
    for _ in range(4):
        response = await client.chat.completions.create(model="scripted", messages=messages, tools=tools)
        message = response.choices[0].message
        calls = _openai_calls(message)
        if not calls:
            return message.content or ""
        messages.append(message.model_dump(exclude_none=True))
        for c in calls:
            result = await session.call_tool(c.function.name, json.loads(c.function.arguments))
            text = "\n".join(getattr(block, "text", "") for block in result.content)
            messages.append({"role": "tool", "tool_call_id": c.id, "content": text})
    raise RuntimeError("the scripted policy never answered")


def openai_tools(tools: list[Any]) -> list[dict[str, Any]]:
    return [
        {
            "type": "function",
            "function": {"name": t.name, "description": t.description or "", "parameters": t.input_schema},
        }
        for t in tools
    ]


@contextlib.asynccontextmanager
async def raw_stdio_session() -> AsyncIterator[Any]:
    from mcp import ClientSession, StdioServerParameters
    from mcp.client.stdio import stdio_client

    params = StdioServerParameters(command=sys.executable, args=[str(SERVER_SCRIPT)])
    with open(os.devnull, "w") as devnull:  # noqa: ASYNC230 - opening /dev/null does not block
        async with stdio_client(params, errlog=devnull) as (read, write), ClientSession(read, write) as session:
            await session.initialize()
            yield session


async def measure_rollouts(n: int, concurrency: int, rollout: Callable[[], Awaitable[str]]) -> dict[str, Any]:
    wall, latencies = await timed_rollouts(n, concurrency, rollout)
    return {"rollouts": n, "concurrency": concurrency, "rollouts_per_s": round(n / wall, 2), **percentiles(latencies)}


async def bench_floor(base_url: str, n: int, concurrency: int) -> dict[str, Any]:
    from openai import AsyncOpenAI

    async with raw_stdio_session() as session, AsyncOpenAI(base_url=base_url, api_key="bench") as client:
        tools = openai_tools((await session.list_tools()).tools)
        await session_rollout(session, tools, client)  # warm-up
        return await measure_rollouts(n, concurrency, lambda: session_rollout(session, tools, client))


async def art_rollout(base_url: str) -> str:
    """The rollout of ART's MCP example: a new stdio server and session, a new OpenAI client per turn."""
    from openai import AsyncOpenAI

    async with raw_stdio_session() as session:  # a new server and session per rollout
        tools = openai_tools((await session.list_tools()).tools)
        messages: list[dict[str, Any]] = [{"role": "user", "content": "What is 2 + 3?"}]
        for _ in range(4):
            async with AsyncOpenAI(base_url=base_url, api_key="bench") as client:  # a new client per turn
                response = await client.chat.completions.create(model="scripted", messages=messages, tools=tools)
            message = response.choices[0].message
            calls = _openai_calls(message)
            if not calls:
                return message.content or ""
            messages.append(message.model_dump(exclude_none=True))
            for c in calls:
                result = await session.call_tool(c.function.name, json.loads(c.function.arguments))
                text = "\n".join(getattr(block, "text", "") for block in result.content)
                messages.append({"role": "tool", "tool_call_id": c.id, "content": text})
    raise RuntimeError("the scripted policy never answered")


async def bench_art_pattern(base_url: str, n: int, concurrency: int) -> dict[str, Any]:
    return await measure_rollouts(n, concurrency, lambda: art_rollout(base_url))


async def bench_env_rollouts(env: Any, base_url: str, n: int, concurrency: int) -> dict[str, Any]:
    from openai import AsyncOpenAI

    async with env, AsyncOpenAI(base_url=base_url, api_key="bench") as client:
        return await measure_rollouts(n, concurrency, lambda: env_rollout(env, client))


# -- isolation of a stateful stdio server (issue 20's harness) -------------------------------


async def bench_isolation(args: Any) -> dict[str, Any]:
    """One scripted policy, the one Python stdio server, `--iso-rollouts` rollouts at
    `--iso-concurrency`: `shared`, `per_session` with fresh servers forked or spawned, and ART's
    process-per-rollout pattern. The process-per-rollout rows run `--iso-slow-rollouts`.

    Each mode's rollouts are split over `--iso-repeats` rounds run in mirrored order (A B C D,
    then D C B A, ...), and a mode's rate is its rollouts over its summed wall time: on a machine
    whose other load drifts, each ratio is then taken over the same stretch of time, not one mode
    in a quiet minute and the other in a busy one."""
    from envs import MCPEnv, StdioServer

    conc, repeats = args.iso_concurrency, args.iso_repeats
    stdio = StdioServer(command=sys.executable, args=[str(SERVER_SCRIPT)])
    # The default warm pool, which sizes itself to the concurrency; a long start-up bound for the
    # spawning modes under load.
    common: dict[str, Any] = {"server_log": os.devnull, "startup_timeout_s": 180}
    art = "ART pattern (new server+client per rollout)"
    modes: dict[str, tuple[Callable[[int], Awaitable[tuple[float, list[float]]]], int]] = {
        "shared (one process)": (
            lambda n: timed_env_rollouts(MCPEnv(stdio, isolation="shared", **common), base_url, n, conc),
            args.iso_rollouts,
        ),
        "per_session, fork server": (
            lambda n: timed_env_rollouts(
                MCPEnv(stdio, isolation="per_session", stdio_start="fork", **common), base_url, n, conc
            ),
            args.iso_rollouts,
        ),
        "per_session, spawn": (
            lambda n: timed_env_rollouts(
                MCPEnv(stdio, isolation="per_session", stdio_start="spawn", **common), base_url, n, conc
            ),
            args.iso_slow_rollouts,
        ),
        art: (lambda n: timed_art_pattern(base_url, n, conc), args.iso_slow_rollouts),
    }
    with add_policy() as base_url:  # the modes' lambdas read it when they run
        walls, latencies = await run_mirrored(modes, repeats)
    rows, table = isolation_rows(walls, latencies, concurrency=conc, repeats=repeats)
    targets = isolation_targets(rows, art)
    print_results(table, targets)
    settings = {
        "rollouts": args.iso_rollouts,
        "slow_rollouts": args.iso_slow_rollouts,
        "concurrency": conc,
        "repeats": repeats,
    }
    return {"rollouts": rows, "targets": targets, "settings": settings}


# -- state on disk: the episode folder's cost (issue 29) ---------------------------------------


def make_workspace(folder: Path, files: int, size: int) -> Path:
    """A small template: `files` files of `size` bytes in two sub-folders."""
    for i in range(files):
        path = folder / f"sub{i % 2}" / f"file{i}.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(os.urandom(size))
    return folder


async def bench_episode_dir(args: Any) -> dict[str, Any]:
    """Forked `per_process` rollouts with and without an episode folder seeded from a workspace of
    `--ep-files` files, in mirrored rounds; the folder's cost is the ratio of the two rates."""
    import tempfile

    from envs import MCPEnv

    conc, repeats = args.ep_concurrency, args.iso_repeats
    common: dict[str, Any] = {"server_log": os.devnull, "startup_timeout_s": 180, "warm_pool": conc}
    plain = {"command": sys.executable, "args": [str(SERVER_SCRIPT)]}
    with tempfile.TemporaryDirectory(prefix="bench-workspace-") as tmp:
        workspace = make_workspace(Path(tmp), args.ep_files, 4096)
        in_folder = {**plain, "env": {"BENCH_STATE": "${MCPGYM_EPISODE_DIR}/state"}}
        seeded = {"mcpServers": {"bench": in_folder}, "mcpgym": {"workspace": str(workspace)}}
        without, with_dir = "fork, no episode dir", f"fork, episode dir + workspace ({args.ep_files} files)"
        modes: dict[str, tuple[Callable[[int], Awaitable[tuple[float, list[float]]]], int]] = {
            without: (
                lambda n: timed_env_rollouts(
                    MCPEnv({"mcpServers": {"bench": plain}}, isolation="per_process", stdio_start="fork", **common),
                    base_url,
                    n,
                    conc,
                ),
                args.ep_rollouts,
            ),
            with_dir: (
                lambda n: timed_env_rollouts(
                    MCPEnv(seeded, isolation="per_process", stdio_start="fork", **common), base_url, n, conc
                ),
                args.ep_rollouts,
            ),
        }
        with add_policy() as base_url:  # the modes' lambdas read it when they run
            walls, latencies = await run_mirrored(modes, repeats)
    rows, table = isolation_rows(walls, latencies, concurrency=conc, repeats=repeats)
    cost = rows[without]["rollouts_per_s"] / rows[with_dir]["rollouts_per_s"] - 1
    targets = {
        "episode dir adds <= 20% per forked rollout": {"value": round(cost, 3), "target": 0.2, "met": cost <= 0.2}
    }
    print_results(table, targets)
    settings = {"rollouts": args.ep_rollouts, "concurrency": conc, "repeats": repeats, "files": args.ep_files}
    return {"rollouts": rows, "targets": targets, "settings": settings}


async def run_mirrored(
    modes: dict[str, tuple[Callable[[int], Awaitable[tuple[float, list[float]]]], int]], repeats: int
) -> tuple[dict[str, float], dict[str, list[float]]]:
    """Each mode's rollouts split over `repeats` rounds in mirrored order (A B C D, then D C B A);
    each mode's summed wall seconds and its latencies."""
    walls: dict[str, float] = dict.fromkeys(modes, 0.0)
    latencies: dict[str, list[float]] = {name: [] for name in modes}
    with tqdm(total=len(modes) * repeats, desc="bench_envs isolation", unit="run", file=sys.stderr) as bar:
        for round_ in range(repeats):
            for name in list(modes) if round_ % 2 == 0 else list(reversed(modes)):
                run_mode, total = modes[name]
                n = total // repeats + (1 if round_ < total % repeats else 0)
                wall, seen = await run_mode(n)
                walls[name] += wall
                latencies[name] += seen
                bar.write(f"round {round_ + 1}: {name:<44} {n / wall:8.2f} rollouts/s")
                bar.update()
    return walls, latencies


def isolation_rows(
    walls: dict[str, float], latencies: dict[str, list[float]], *, concurrency: int, repeats: int
) -> tuple[dict[str, Any], list[tuple[str, str, str]]]:
    """Each mode's JSON row (its rate over its summed wall time) and its line of the table."""
    rows: dict[str, Any] = {}
    table: list[tuple[str, str, str]] = []
    for name in walls:
        done = len(latencies[name])
        rows[name] = {
            "rollouts": done,
            "concurrency": concurrency,
            "rounds": repeats,
            "wall_s": round(walls[name], 3),
            "rollouts_per_s": round(done / walls[name], 2),
            **percentiles(latencies[name]),
        }
        rate = f"{rows[name]['rollouts_per_s']:>9.2f} rollouts/s"
        table.append((f"isolation {name.split(' (new')[0]}", rate, _latency(rows[name])))
    return rows, table


def isolation_targets(rows: dict[str, Any], art: str) -> dict[str, Any]:
    """The fork server against ART's pattern (`art` names its row) and against spawning."""
    art_rate = rows[art]["rollouts_per_s"]
    fork = rows["per_session, fork server"]["rollouts_per_s"]
    return {
        "per_session fork server >= 20x ART": {
            "value": round(fork / art_rate, 2),
            "target": 20,
            "met": fork / art_rate >= 20,
        },
        "per_session fork server / spawn": {
            "value": round(fork / rows["per_session, spawn"]["rollouts_per_s"], 2),
            "target": None,
            "met": None,
        },
    }


async def timed_env_rollouts(env: Any, base_url: str, n: int, concurrency: int) -> tuple[float, list[float]]:
    """(wall seconds, latencies) of `n` rollouts on a started env (its start-up is not timed)."""
    from openai import AsyncOpenAI

    async with env, AsyncOpenAI(base_url=base_url, api_key="bench") as client:
        await env.start()
        return await timed_rollouts(n, concurrency, lambda: env_rollout(env, client))


async def timed_art_pattern(base_url: str, n: int, concurrency: int) -> tuple[float, list[float]]:
    return await timed_rollouts(n, concurrency, lambda: art_rollout(base_url))


async def timed_rollouts(n: int, concurrency: int, rollout: Callable[[], Awaitable[str]]) -> tuple[float, list[float]]:
    """(wall seconds, latencies) of `n` rollouts at `concurrency`; any wrong answer fails the run."""
    wrong = 0

    async def one(i: int) -> None:
        nonlocal wrong
        if await rollout() != EXPECTED_ANSWER:
            wrong += 1

    wall, latencies = await run_concurrently(n, concurrency, one)
    if wrong:
        raise RuntimeError(f"{wrong} of {n} rollouts got a wrong answer")
    return wall, latencies


def _latency(result: dict[str, Any]) -> str:
    return f"p50 {result['p50_ms']:>8.2f} ms   p95 {result['p95_ms']:>8.2f} ms"


# -- main ------------------------------------------------------------------------------------


def _row(table: list[tuple[str, str, str]], name: str, result: dict[str, Any], bar: tqdm) -> None:
    if "calls_per_s" in result:
        rate = f"{result['calls_per_s']:>9.1f} calls/s"
    else:
        rate = f"{result['rollouts_per_s']:>9.2f} rollouts/s"
    table.append((name, rate, f"p50 {result['p50_ms']:>8.2f} ms   p95 {result['p95_ms']:>8.2f} ms"))
    bar.write(f"{name:<46} {rate}   p50 {result['p50_ms']:.2f} ms  p95 {result['p95_ms']:.2f} ms")


async def bench_transports(
    transports: dict[str, Callable[[], Any]],
    n_calls: int,
    results: dict[str, Any],
    table: list[tuple[str, str, str]],
    bar: tqdm,
) -> dict[str, Any]:
    """Tool calls over each transport at concurrency 1 and 64, then the in-process overhead
    (returned, and in `results`)."""
    for name, make in transports.items():
        for concurrency in (1, 64):
            n = n_calls if concurrency == 1 else max(n_calls, 64 * 20)
            async with make() as env:
                result = await bench_calls(env, n=n, concurrency=concurrency)
            results["calls"][f"{name} c{concurrency}"] = result
            _row(table, f"calls {name} c{concurrency}", result, bar)
            bar.update()
    overhead = await bench_overhead(n_calls, rounds=3)
    results["overhead"] = overhead
    bar.write(
        f"in-process call: raw Client {overhead['raw_client_default_ms']:.3f} ms (legacy "
        f"{overhead['raw_client_legacy_ms']:.3f} ms), MCPEnv {overhead['mcpenv_ms']:.3f} ms "
        f"-> {overhead['overhead_x']:.2f}x"
    )
    bar.update()
    return overhead


async def bench(args: Any) -> dict[str, Any]:
    from _bench_mcp_server import build_server

    from envs import MCPEnv, StdioServer

    quick = args.quick
    n_calls = 200 if quick else args.calls
    n_fast = 100 if quick else args.rollouts
    n_slow = 8 if quick else args.slow_rollouts
    conc = args.concurrency
    stdio = StdioServer(command=sys.executable, args=[str(SERVER_SCRIPT)])
    # A long start-up bound: 8 interpreters starting at once on a loaded 2-core machine take > 30 s.
    common: dict[str, Any] = {"server_log": os.devnull, "startup_timeout_s": 180}
    results: dict[str, Any] = {"calls": {}, "rollouts": {}}
    table: list[tuple[str, str, str]] = []

    mcp_port, policy_port = free_port(), free_port()
    http_server = Process([str(SERVER_SCRIPT), "--transport", "http", "--port", str(mcp_port)], mcp_port)
    policy = Process([str(POLICY_SCRIPT), "--port", str(policy_port), "--tool", "add",
                      "--arguments", json.dumps(ADD_ARGS)], policy_port)  # fmt: skip
    base_url = f"http://127.0.0.1:{policy_port}/v1"
    http_url = f"http://127.0.0.1:{mcp_port}/mcp"
    transports: dict[str, Callable[[], Any]] = {
        "in-process": lambda: MCPEnv(build_server(), isolation="shared", **common),
        "stdio": lambda: MCPEnv(stdio, isolation="shared", **common),
        "http": lambda: MCPEnv(http_url, isolation="shared", **common),
    }
    rollout_modes: dict[str, tuple[Callable[[], Any], int]] = {
        "mcpenv shared (stdio)": (lambda: MCPEnv(stdio, isolation="shared", **common), n_fast),
        "mcpenv per_session (in-process)": (lambda: MCPEnv(build_server(), isolation="per_session", **common), n_fast),
        "mcpenv per_session (http)": (lambda: MCPEnv(http_url, isolation="per_session", **common), n_fast),
        "mcpenv per_process (in-process factory)": (
            lambda: MCPEnv(build_server, isolation="per_process", **common),
            n_fast,
        ),
        "mcpenv per_process (stdio, fork server)": (
            lambda: MCPEnv(stdio, isolation="per_process", stdio_start="fork", warm_pool=conc, **common),
            n_fast,
        ),
        "mcpenv per_process (stdio, spawn)": (
            lambda: MCPEnv(stdio, isolation="per_process", stdio_start="spawn", **common),
            n_slow,
        ),
    }
    steps = len(transports) * 2 + 1 + 2 + len(rollout_modes)
    try:
        with tqdm(total=steps, desc="bench_envs", unit="step", file=sys.stderr) as bar:
            overhead = await bench_transports(transports, n_calls, results, table, bar)

            floor = await bench_floor(base_url, n_fast, conc)
            results["rollouts"]["floor: raw shared stdio session + one client"] = floor
            _row(table, "rollouts floor (raw shared stdio session)", floor, bar)
            bar.update()
            for name, (make, n) in rollout_modes.items():
                result = await bench_env_rollouts(make(), base_url, n, conc)
                results["rollouts"][name] = result
                _row(table, f"rollouts {name}", result, bar)
                bar.update()
            art = await bench_art_pattern(base_url, n_slow, conc)
            results["rollouts"]["ART MCP-example pattern"] = art
            _row(table, "rollouts ART pattern (new server+client)", art, bar)
            bar.update()
    finally:
        http_server.stop()
        policy.stop()

    results["targets"] = transport_targets(results["rollouts"], overhead)
    results["machine"] = {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()}
    results["settings"] = {"calls": n_calls, "rollouts": n_fast, "slow_rollouts": n_slow, "concurrency": conc}

    print_results(table, results["targets"])
    return results


def transport_targets(rollouts: dict[str, Any], overhead: dict[str, Any]) -> dict[str, Any]:
    """Each mode's rate against the floor or ART's pattern, and the call overhead, with its target."""
    art_rate = rollouts["ART MCP-example pattern"]["rollouts_per_s"]
    floor_rate = rollouts["floor: raw shared stdio session + one client"]["rollouts_per_s"]
    checks = {
        "shared >= 0.8x floor": (rollouts["mcpenv shared (stdio)"]["rollouts_per_s"] / floor_rate, 0.8),
        "per_session >= 50x ART": (rollouts["mcpenv per_session (in-process)"]["rollouts_per_s"] / art_rate, 50),
        "per_process in-process >= 20x ART": (
            rollouts["mcpenv per_process (in-process factory)"]["rollouts_per_s"] / art_rate,
            20,
        ),
        "per_process stdio (fork) >= 20x ART": (
            rollouts["mcpenv per_process (stdio, fork server)"]["rollouts_per_s"] / art_rate,
            20,
        ),
        "per_process stdio (spawn) >= 1x ART": (
            rollouts["mcpenv per_process (stdio, spawn)"]["rollouts_per_s"] / art_rate,
            1,
        ),
        "in-process overhead <= 1.3x raw Client": (overhead["overhead_x"], 1.3),
    }
    return {
        name: {
            "value": round(value, 2),
            "target": target,
            "met": value <= target if "overhead" in name else value >= target,
        }
        for name, (value, target) in checks.items()
    }


def print_results(table: list[tuple[str, str, str]], targets: dict[str, Any]) -> None:
    """The closing table: every benchmark's rate and latency, then each target (met, MISSED, or
    blank for a ratio shown without one)."""
    print()
    print(f"{'benchmark':<52}{'rate':>22}   latency")
    for name, rate, latency in table:
        print(f"{name:<52}{rate:>22}   {latency}")
    print()
    for name, check in targets.items():
        verdict = "" if check["met"] is None else ("met" if check["met"] else "MISSED")
        print(f"{name:<44} {check['value']:>8.2f}  (target {check['target']})  {verdict}")


def main() -> None:
    parser = ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=str(ROOT / "runs" / "bench" / "envs.json"), help="where to write the JSON")
    parser.add_argument("--calls", type=int, default=600, help="tool calls per transport at concurrency 1")
    parser.add_argument("--rollouts", type=int, default=400, help="rollouts per fast mode")
    parser.add_argument("--slow-rollouts", type=int, default=24, help="rollouts for the process-per-rollout modes")
    parser.add_argument("--concurrency", type=int, default=8, help="concurrent rollouts")
    parser.add_argument("--quick", action="store_true", help="small counts for a smoke run")
    parser.add_argument(
        "--section",
        choices=["all", "transports", "isolation", "episode-dir"],
        default="all",
        help="which benchmarks to run",
    )
    parser.add_argument("--iso-rollouts", type=int, default=512, help="isolation: rollouts per fast mode")
    parser.add_argument(
        "--iso-slow-rollouts", type=int, default=48, help="isolation: rollouts of the process-per-rollout modes"
    )
    parser.add_argument("--iso-concurrency", type=int, default=16, help="isolation: concurrent rollouts")
    parser.add_argument(
        "--iso-repeats", type=int, default=2, help="isolation: rounds in mirrored order each mode's rollouts split over"
    )
    parser.add_argument("--ep-rollouts", type=int, default=256, help="episode dir: rollouts per mode")
    parser.add_argument("--ep-concurrency", type=int, default=16, help="episode dir: concurrent rollouts")
    parser.add_argument("--ep-files", type=int, default=16, help="episode dir: files in the workspace (4 KiB each)")
    args = parser.parse_args()

    async def run() -> int:
        results: dict[str, Any] = {}
        if args.section in ("all", "transports"):
            results = await bench(args)
        if args.section in ("all", "isolation"):
            results["isolation"] = await bench_isolation(args)
        if args.section in ("all", "episode-dir"):
            results["episode_dir"] = await bench_episode_dir(args)
        results["machine"] = {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        }
        out = Path(args.out)
        write_json(out, results)
        print(f"\nwrote {out}")
        return 0

    run_cli(run)


def write_json(out: Path, results: dict[str, Any]) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
