"""Replay the BFCL multi-turn ground truth through the bfcl-multi-turn env and count what passes.

    python scripts/check_bfcl_multi_turn.py                      # all 800 entries, in-process server
    python scripts/check_bfcl_multi_turn.py --transport http --limit 20 --out replay.json

For every entry the ground-truth calls of each user turn go through the env's MCP server
(`envs.bfcl_mt.replay`), then (1) the leaderboard's own `multi_turn_checker` scores them and
(2) the results the server returned are compared with the leaderboard's own execution of the
same calls. Prints the counts per category and writes every entry's outcome as JSON.
Exit 0 when every entry passes both checks, 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common.cli import ArgumentParser, run_cli


def _servers(transport: str, stack: Any) -> Any:
    from envs.bfcl_mt.processes import http_server, stdio_server
    from envs.bfcl_mt.server import build_server

    if transport == "in-process":
        return build_server
    if transport == "stdio":
        return stdio_server()
    return stack.enter_context(http_server())


async def run(args: argparse.Namespace) -> int:
    from contextlib import ExitStack

    import envs
    from envs.bfcl_mt.replay import replay_all, summarize

    with ExitStack() as stack:
        env = envs.load("bfcl-multi-turn", categories=args.categories, servers=_servers(args.transport, stack))
        async with env:
            tasks = env.tasks("all")
            if args.limit is not None:
                tasks = [t for t in tasks if int(t.id.rsplit("_", 1)[1]) < args.limit]
            started = time.perf_counter()
            replays = await replay_all(env, tasks, concurrency=args.concurrency)
            elapsed = time.perf_counter() - started
    summary = summarize(replays)
    for category, row in summary["categories"].items():
        print(
            f"{category:26s} {row['passed']:4d}/{row['entries']} pass the checker, "
            f"{row['results_equal']:4d}/{row['entries']} results equal the leaderboard's, {row['errors']} errors"
        )
    total = summary["total"]
    print(
        f"{'total':26s} {total['passed']:4d}/{total['entries']} pass, {total['results_equal']} equal "
        f"({elapsed:.1f} s, {total['entries'] / elapsed:.1f} entries/s)"
    )
    failing = [r for r in replays if not (r.passed and r.results_equal)]
    for replay in failing[:20]:
        print(f"  {replay.id}: {replay.error or replay.reason} {replay.differences[:1] or ''}")
    if args.out is not None:
        report = {
            **summary,
            "transport": args.transport,
            "seconds": elapsed,
            "entries": [r.model_dump() for r in replays],
        }
        args.out.write_text(json.dumps(report, indent=1, default=str), encoding="utf-8")
        print(f"wrote {args.out}")
    return 0 if not failing else 1


def main() -> int:
    parser = ArgumentParser(prog="python scripts/check_bfcl_multi_turn.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--categories", default="multi_turn", help="categories, comma-separated (default all four)")
    parser.add_argument("--limit", type=int, default=None, help="only entries numbered below this, per category")
    parser.add_argument("--transport", choices=["in-process", "stdio", "http"], default="in-process")
    parser.add_argument("--concurrency", type=int, default=8, help="episodes at once (default 8)")
    parser.add_argument("--out", type=Path, default=None, help="write every entry's outcome here (JSON)")
    args = parser.parse_args()

    async def go() -> int:
        return await run(args)

    return run_cli(go)


if __name__ == "__main__":
    raise SystemExit(main())
