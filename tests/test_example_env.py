"""The README's "Add your own environment" example: an mcpServers JSON, a stdio server, a tasks file, no code."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import envs
from envs import ToolCall

EXAMPLE = Path(__file__).parents[1] / "examples" / "inventory" / "mcp.json"


async def test_example_json_env_solves_its_tasks_over_stdio() -> None:
    async with envs.load(str(EXAMPLE)) as env:
        assert env.name == "inventory" and env.isolation == "shared"
        assert {t["function"]["name"] for t in await env.tools()} == {"get_stock", "list_skus", "stock_value"}
        tasks = [t for split in env.splits() for t in env.tasks(split)]
        assert len(tasks) == 5
        for task in tasks:
            async with env.episode() as episode:
                await episode.reset(task)
                calls = [
                    ToolCall(id=f"c{i}", name=c.name, arguments=c.arguments) for i, c in enumerate(task.expected_calls)
                ]
                result = await episode.step(calls)
            assert all(o.ok for o in result.outcomes)
            answer = " ".join(m["content"] for m in result.messages)
            assert env.verify(task, answer, calls).success, (task.id, answer)
            assert not env.verify(task, "I do not know.", calls).success


def test_inspect_cli_reads_the_example() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "envs", "inspect", str(EXAMPLE), "--json"], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert "get_stock" in json.dumps(report) and "train" in json.dumps(report)
