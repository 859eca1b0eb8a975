"""Benchmark rollouts over 1, 2, 4, 8 policy replicas and env servers: where the client saturates.

    python scripts/bench_scale.py [--replicas 1,2,4,8] [--delay-s 0.05] [--slots 8] \\
        [--concurrency 128] [--rollouts 256] [--out runs/bench/scale.json]
    python scripts/bench_scale.py --env-servers 1,2,4,8 [--replicas 4] ...   # HTTP env servers

`--env-servers`: the energy env's FastMCP server runs out of process over streamable HTTP
(`python -m envs.energy.server --transport http`), N of them on their own ports, a session per
rollout (`per_session`, the isolation of a stateful env); the rollouts are split evenly over N
envs, one per server, run at once from this one client process, against the policy replicas of
the first `--replicas` value.

Setup: N scripted OpenAI-compatible TEST servers (tests/fixtures/policy_server.py), each in its own
process on its own port, each standing in for one GPU replica: a reply takes `--delay-s` and at most
`--slots` replies are made at once (the rest queue), so one replica's capacity is slots/delay
requests/s. The energy env runs in this process (its FastMCP server in-memory); `run_rollouts`
goes over all N at once (`--base-url URL,URL,...`, least-loaded routing, rollouts.endpoints).
Each energy rollout here is two policy turns and one tool call.

Per row: rollouts/s and policy requests/s measured; the replicas' ideal (N x slots / delay
requests/s, and its rollouts/s); the client's CPU (this process's CPU time) per rollout; and the
requests/s the client could do if it had one core to itself (requests / CPU seconds). When the
measured rate stops following the ideal and the client's CPU share nears one core, the client is
the bound. With `--delay-s 0` the servers answer at once and the row measures the client and
servers racing for the CPU. Not a pass/fail test; on a shared machine the numbers are noisy.
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

from rollouts import ChatPolicy, PolicyConfig, RetryConfig, run_rollouts  # noqa: E402
from rollouts.envs_io import open_env  # noqa: E402


def start_servers(n: int, delay_s: float, slots: int) -> tuple[list[subprocess.Popen[str]], list[str]]:
    procs, urls = [], []
    for _ in range(n):
        args = [sys.executable, "-m", "tests.fixtures.policy_server", "--delay-s", str(delay_s), "--slots", str(slots)]
        proc = subprocess.Popen(
            args, cwd=ROOT, stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)}
        )
        assert proc.stdout is not None
        procs.append(proc)
        urls.append(json.loads(proc.stdout.readline())["base_url"])
    deadline = time.monotonic() + 60
    for url in urls:
        while True:
            try:
                httpx.post(f"{url}/chat/completions", json={"messages": []}, timeout=5)
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline:
                    stop(procs)
                    raise SystemExit(f"scripted server at {url} did not start") from None
                time.sleep(0.05)
    return procs, urls


def start_env_servers(n: int) -> tuple[list[subprocess.Popen[str]], list[str]]:
    import socket

    procs, urls = [], []
    for _ in range(n):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        args = [sys.executable, "-m", "envs.energy.server", "--transport", "http", "--port", str(port)]
        procs.append(subprocess.Popen(args, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True))
        urls.append(f"http://127.0.0.1:{port}")
    deadline = time.monotonic() + 60
    for url in urls:
        while True:
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                stop(procs)
                raise SystemExit(f"energy HTTP server at {url} did not start")
            time.sleep(0.05)
    return procs, [f"{url}/mcp" for url in urls]


async def env_level(n: int, args: argparse.Namespace, replicas: int) -> dict[str, Any]:
    from envs import MCPEnv
    from envs.energy import SYSTEM_PROMPT, TASKS_FILE
    from envs.verify import verify_answer

    policy_procs, policy_urls = start_servers(replicas, args.delay_s, args.slots)
    env_procs, env_urls = start_env_servers(n)
    try:
        envs = [
            MCPEnv(
                {"energy": url},
                name="energy",
                tasks=TASKS_FILE,
                system_prompt=SYSTEM_PROMPT,
                verifier=verify_answer,
                isolation="per_session",
            )
            for url in env_urls
        ]
        for env in envs:
            await env.__aenter__()
        try:
            tasks = [t for t in envs[0].tasks("train") if t.expected_calls]
            per_env = -(-args.rollouts // n)
            samples = max(1, -(-per_env // len(tasks)))
            chosen = tasks[: -(-per_env // samples)]
            policy = ChatPolicy(PolicyConfig(base_url=",".join(policy_urls), model="scripted", request_timeout_s=60))
            async with policy:
                await run_rollouts(envs[0], policy, tasks[:4], concurrency=4, progress=False)  # warm up
                cpu, wall = time.process_time(), time.perf_counter()
                results = await asyncio.gather(
                    *(
                        run_rollouts(
                            env,
                            policy,
                            chosen,
                            samples=samples,
                            concurrency=max(1, args.concurrency // n),
                            progress=False,
                            timeout_s=300,
                            retry=RetryConfig(retries=2, initial_s=0.05),
                        )
                        for env in envs
                    )
                )
                wall = time.perf_counter() - wall
                cpu = time.process_time() - cpu
        finally:
            for env in envs:
                await env.__aexit__(None, None, None)
    finally:
        stop(policy_procs + env_procs)
    trajs = [t for result in results for t in result.trajectories]
    errors: dict[str, int] = {}
    for result in results:
        for kind, count in result.stats.errors.items():
            errors[kind] = errors.get(kind, 0) + count
    return {
        "env_servers": n,
        "policy_replicas": replicas,
        "rollouts": len(trajs),
        "errors": errors,
        "wall_s": wall,
        "rollouts_per_s": len(trajs) / wall,
        "client_cpu_share": cpu / wall,
        "client_cpu_ms_per_rollout": cpu / len(trajs) * 1e3,
        "client_bound_rollouts_per_s": len(trajs) / cpu if cpu > 0 else None,
    }


def stop(procs: list[subprocess.Popen[str]]) -> None:
    for proc in procs:
        proc.terminate()
    for proc in procs:
        proc.wait(timeout=10)


async def one_level(n: int, args: argparse.Namespace) -> dict[str, Any]:
    procs, urls = start_servers(n, args.delay_s, args.slots)
    try:
        async with open_env("energy") as env:
            tasks = [t for t in env.tasks("train") if t.expected_calls]
            samples = max(1, -(-args.rollouts // len(tasks)))
            chosen = tasks[: -(-args.rollouts // samples)]
            policy = ChatPolicy(PolicyConfig(base_url=",".join(urls), model="scripted", request_timeout_s=60))
            async with policy:
                await run_rollouts(env, policy, tasks[:8], concurrency=8, progress=False)  # warm up
                cpu, wall = time.process_time(), time.perf_counter()
                result = await run_rollouts(
                    env,
                    policy,
                    chosen,
                    samples=samples,
                    concurrency=args.concurrency,
                    progress=False,
                    timeout_s=300,
                    retry=RetryConfig(retries=2, initial_s=0.05),
                )
                wall = time.perf_counter() - wall
                cpu = time.process_time() - cpu
    finally:
        stop(procs)
    trajs = result.trajectories
    requests = sum(len(t.turns) for t in trajs)
    ideal_rps = n * args.slots / args.delay_s if args.delay_s > 0 and args.slots > 0 else None
    turns_per_rollout = requests / len(trajs)
    return {
        "replicas": n,
        "rollouts": len(trajs),
        "errors": result.stats.errors,
        "wall_s": wall,
        "rollouts_per_s": len(trajs) / wall,
        "requests_per_s": requests / wall,
        "ideal_requests_per_s": ideal_rps,
        "ideal_rollouts_per_s": ideal_rps / turns_per_rollout if ideal_rps else None,
        "client_cpu_s": cpu,
        "client_cpu_share": cpu / wall,  # of one core
        "client_cpu_ms_per_rollout": cpu / len(trajs) * 1e3,
        "client_bound_requests_per_s": requests / cpu if cpu > 0 else None,
        "turn_latency_p50_s": result.stats.turn_latency_s.p50,
        "per_replica_requests": [item.requests for item in result.stats.endpoints],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replicas", default="1,2,4,8", help="comma-separated replica counts")
    parser.add_argument("--delay-s", type=float, default=0.05, help="seconds per reply of each replica")
    parser.add_argument("--slots", type=int, default=8, help="replies each replica makes at once")
    parser.add_argument("--concurrency", type=int, default=128, help="rollouts in flight")
    parser.add_argument("--rollouts", type=int, default=256, help="rollouts per row")
    parser.add_argument("--env-servers", default=None, help="comma-separated HTTP env server counts (see above)")
    parser.add_argument("--out", default=str(ROOT / "runs" / "bench" / "scale.json"), help="JSON results")
    args = parser.parse_args()
    levels = [int(x) for x in args.replicas.split(",") if x.strip()]
    if args.env_servers:
        env_rows = []
        head = f"{'env srv':>8} {'rollouts':>8} {'roll/s':>8} {'client cpu':>10} {'ms cpu/roll':>11}"
        print(f"{head} {'client max roll/s':>17}")
        for n in [int(x) for x in args.env_servers.split(",") if x.strip()]:
            row = asyncio.run(env_level(n, args, levels[0]))
            env_rows.append(row)
            print(
                f"{row['env_servers']:>8} {row['rollouts']:>8} {row['rollouts_per_s']:>8.1f} "
                f"{row['client_cpu_share']:>9.0%} {row['client_cpu_ms_per_rollout']:>11.2f} "
                f"{row['client_bound_rollouts_per_s']:>17.1f}  errors {row['errors'] or '{}'}",
                flush=True,
            )
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        config = {key: getattr(args, key) for key in ("delay_s", "slots", "concurrency", "rollouts")}
        config["policy_replicas"] = levels[0]
        out.write_text(json.dumps({"config": config, "env_rows": env_rows, "cpus": os.cpu_count()}, indent=2) + "\n")
        print(f"wrote {out}")
        return
    rows = [asyncio.run(one_level(n, args)) for n in levels]
    print(
        f"{'replicas':>8} {'rollouts':>8} {'roll/s':>8} {'ideal':>8} {'req/s':>8} {'client cpu':>10} "
        f"{'ms cpu/roll':>11} {'client max req/s':>16} {'turn p50':>8}  per replica"
    )
    for row in rows:
        ideal = f"{row['ideal_rollouts_per_s']:.1f}" if row["ideal_rollouts_per_s"] else "-"
        print(
            f"{row['replicas']:>8} {row['rollouts']:>8} {row['rollouts_per_s']:>8.1f} {ideal:>8} "
            f"{row['requests_per_s']:>8.1f} {row['client_cpu_share']:>9.0%} {row['client_cpu_ms_per_rollout']:>11.2f} "
            f"{row['client_bound_requests_per_s']:>16.0f} {row['turn_latency_p50_s'] * 1e3:>6.0f}ms  "
            f"{row['per_replica_requests']}"
        )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    config = {key: getattr(args, key) for key in ("delay_s", "slots", "concurrency", "rollouts")}
    result = {"config": config, "rows": rows, "cpus": os.cpu_count(), "python": sys.version.split()[0]}
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
