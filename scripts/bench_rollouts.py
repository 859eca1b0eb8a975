"""Benchmark the rollout engine: throughput and the engine's own CPU cost per step.

    python scripts/bench_rollouts.py [--levels 1,16,64,256] [--rollouts 128] [--out runs/bench/rollouts.json]

Setup: the scripted OpenAI-compatible TEST server (tests/fixtures/policy_server.py)
in its own process, answering at once; the energy env in this process (its
FastMCP server in-memory). For each concurrency level it runs `run_rollouts`
(no file, no progress bar) and reports rollouts/s and env steps/s.

Overhead: in the same run it measures the raw client-side CPU cost of one
policy HTTP call (`AsyncOpenAI.chat.completions.create`, same request size)
and of one MCP tool call (an MCP client session on the same in-process
server), each at the same concurrency. The engine's CPU per policy turn is this
process's CPU time of the run divided by its policy turns; the raw cost per
turn is what those turns' policy calls and tool calls cost bare. Overhead =
engine / raw - 1 (target: at most 25% at concurrency 64). The server's CPU is
in the other process and counts for neither.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
import openai  # noqa: E402

from contracts import Task  # noqa: E402
from rollouts import ChatPolicy, PolicyConfig, run_rollouts  # noqa: E402
from rollouts.envs_io import open_env  # noqa: E402


def start_server() -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.fixtures.policy_server"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert proc.stdout is not None
    base_url = json.loads(proc.stdout.readline())["base_url"]
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            httpx.post(f"{base_url}/chat/completions", json={"messages": []}, timeout=1)
            return proc, base_url
        except httpx.HTTPError:
            time.sleep(0.05)
    proc.kill()
    raise SystemExit("scripted server did not start")


async def bounded(concurrency: int, n: int, make: Any) -> None:
    """Run `make()` n times, at most `concurrency` at once."""
    it = iter(range(n))

    async def worker() -> None:
        for _ in it:
            await make()

    await asyncio.gather(*(worker() for _ in range(min(concurrency, n))))


def cpu_now() -> float:
    return time.process_time()


async def raw_policy_cpu(
    base_url: str, messages: list[dict[str, Any]], tools: list[dict[str, Any]], concurrency: int, n: int
) -> dict[str, float]:
    """CPU and wall per bare chat-completions call."""
    client = openai.AsyncOpenAI(base_url=base_url, api_key="EMPTY", max_retries=0)
    try:
        await bounded(4, 8, lambda: client.chat.completions.create(model="scripted", messages=messages, tools=tools))
        cpu, wall = cpu_now(), time.perf_counter()
        await bounded(
            concurrency, n, lambda: client.chat.completions.create(model="scripted", messages=messages, tools=tools)
        )
        return {"cpu_ms": (cpu_now() - cpu) / n * 1e3, "wall_ms": (time.perf_counter() - wall) / n * 1e3}
    finally:
        await client.close()


async def raw_mcp_cpu(env: Any, task: Task, concurrency: int, n: int) -> dict[str, float]:
    """CPU and wall per bare MCP tools/call on an open session of the same server."""
    from fastmcp import Client

    call = task.expected_calls[0]
    server = env_server(env)
    async with Client(server) as client:
        await bounded(4, 8, lambda: client.call_tool(call.name, call.arguments))
        cpu, wall = cpu_now(), time.perf_counter()
        await bounded(concurrency, n, lambda: client.call_tool(call.name, call.arguments))
        return {"cpu_ms": (cpu_now() - cpu) / n * 1e3, "wall_ms": (time.perf_counter() - wall) / n * 1e3}


def env_server(env: Any) -> Any:
    """The energy env's in-process FastMCP server."""
    from fastmcp import FastMCP

    for handle in env.handles.values():
        target = getattr(handle, "target", None)
        if isinstance(target, FastMCP):
            return target
        if callable(target):
            built = target()
            if isinstance(built, FastMCP):
                return built
    raise SystemExit("the energy env has no in-process FastMCP server to measure raw MCP calls on")


async def bench(levels: list[int], rollouts: int) -> dict[str, Any]:
    proc, base_url = start_server()
    try:
        async with open_env("energy") as env:
            tasks = [t for t in env.tasks("train") if t.expected_calls]
            probe = tasks[0]
            obs_messages = env.initial_messages(probe)
            tools = await env.tools()
            policy = ChatPolicy(PolicyConfig(base_url=base_url, model="scripted"))
            await run_rollouts(env, policy, tasks[:8], concurrency=4, progress=False)  # warm up
            rows = []
            for level in levels:
                n = max(rollouts, 2 * level)
                work = [tasks[i % len(tasks)] for i in range(n)]
                # distinct ids per repeat: the same task at different samples
                unique = {}
                for task in work:
                    unique.setdefault(task.id, 0)
                    unique[task.id] += 1
                samples = max(unique.values())
                chosen = list(dict.fromkeys(t.id for t in work))
                chosen_tasks = [t for t in tasks if t.id in set(chosen)]
                cpu, wall = cpu_now(), time.perf_counter()
                result = await run_rollouts(
                    env, policy, chosen_tasks, samples=samples, concurrency=level, progress=False, timeout_s=120
                )
                wall = time.perf_counter() - wall
                cpu = cpu_now() - cpu
                trajs = result.trajectories
                turns = sum(len(t.turns) for t in trajs)
                steps = sum(1 for t in trajs for m in t.messages if m["role"] == "assistant" and m.get("tool_calls"))
                calls = sum(t.metrics["tool_calls"] for t in trajs)
                raw_p = await raw_policy_cpu(base_url, obs_messages, tools, level, max(64, turns // 4))
                raw_m = await raw_mcp_cpu(env, probe, level, max(64, calls // 4))
                raw_cpu_ms = turns * raw_p["cpu_ms"] + calls * raw_m["cpu_ms"]
                engine_cpu_ms = cpu * 1e3
                rows.append(
                    {
                        "concurrency": level,
                        "rollouts": len(trajs),
                        "success_rate": result.stats.success_rate,
                        "errors": result.stats.errors,
                        "wall_s": wall,
                        "rollouts_per_s": len(trajs) / wall,
                        "env_steps_per_s": steps / wall,
                        "policy_turns": turns,
                        "tool_calls": calls,
                        "engine_cpu_ms_per_turn": engine_cpu_ms / turns,
                        "raw_cpu_ms_per_turn": raw_cpu_ms / turns,
                        "raw_policy_call_cpu_ms": raw_p["cpu_ms"],
                        "raw_policy_call_wall_ms": raw_p["wall_ms"],
                        "raw_mcp_call_cpu_ms": raw_m["cpu_ms"],
                        "raw_mcp_call_wall_ms": raw_m["wall_ms"],
                        "overhead_pct": (engine_cpu_ms / raw_cpu_ms - 1) * 100,
                    }
                )
            await policy.aclose()
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    return {"levels": rows, "cpus": os.cpu_count(), "python": sys.version.split()[0]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--levels", default="1,16,64,256", help="comma-separated concurrency levels")
    parser.add_argument("--rollouts", type=int, default=128, help="rollouts per level (at least 2x the level)")
    parser.add_argument("--out", default=str(ROOT / "runs" / "bench" / "rollouts.json"), help="JSON results")
    args = parser.parse_args()
    levels = [int(x) for x in args.levels.split(",") if x.strip()]
    result = asyncio.run(bench(levels, args.rollouts))
    header = (
        f"{'conc':>5} {'rollouts':>8} {'ok':>5} {'roll/s':>8} {'steps/s':>8} {'engine ms/turn':>15} "
        f"{'raw ms/turn':>12} {'(policy':>8} {'+ mcp)':>7} {'overhead':>9}"
    )
    print(header)
    for row in result["levels"]:
        print(
            f"{row['concurrency']:>5} {row['rollouts']:>8} {row['success_rate']:>5.0%} {row['rollouts_per_s']:>8.1f} "
            f"{row['env_steps_per_s']:>8.1f} {row['engine_cpu_ms_per_turn']:>15.2f} "
            f"{row['raw_cpu_ms_per_turn']:>12.2f} "
            f"{row['raw_policy_call_cpu_ms']:>8.2f} {row['raw_mcp_call_cpu_ms']:>7.2f} {row['overhead_pct']:>8.1f}%"
        )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
