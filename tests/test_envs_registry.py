"""`envs.load(spec)` in each of its forms, and `python -m envs list | inspect`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import envs
from envs import EnvConfigError, MCPEnv, Task, ToolCall
from envs.registry import ENTRY_POINT_GROUP, available
from tests.fixtures.envs_fixtures import SERVER_SCRIPT

ROOT = Path(__file__).resolve().parents[1]


def make_dist(folder: Path) -> Path:
    """A real installed-distribution record on sys.path declaring an `mcpgym.envs` entry point."""
    info = folder / "mcpgym_testenv-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: mcpgym-testenv\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(
        f"[{ENTRY_POINT_GROUP}]\ncalc-test = tests.fixtures.envs_fixtures:make_env\n"
    )
    return folder


def mcp_json(folder: Path, **mcpgym: object) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    doc: dict[str, object] = {"mcpServers": {"calc": {"command": "python", "args": [str(SERVER_SCRIPT)]}}}
    if mcpgym:
        doc["mcpgym"] = mcpgym
    path = folder / "calc.json"
    path.write_text(json.dumps(doc))
    return path


async def _adds(env: MCPEnv) -> str:
    async with env, env.episode() as episode:
        await episode.reset(Task(id="t", question="?"))
        result = await episode.step([ToolCall(id="1", name="add", arguments='{"a": 20, "b": 22}')])
        return result.messages[0]["content"]


async def test_module_factory_returning_an_env() -> None:
    env = envs.load("tests.fixtures.envs_fixtures:make_env", isolation="per_process")
    assert isinstance(env, MCPEnv) and env.name == "calc" and env.isolation == "per_process"
    assert {s: len(env.tasks(s)) for s in env.splits()} == {"train": 3, "test": 1}
    assert await _adds(env) == "42"


async def test_module_server_factory_and_server_object() -> None:
    env = envs.load("tests.fixtures.envs_servers:build_calc", isolation="per_process", call_timeout_s=5)
    assert env.name == "envs_servers" and env.isolation == "per_process" and env.call_timeout_s == 5
    assert env.handles["envs_servers"].kind == "factory"  # kept as a factory: per_process can rebuild it
    assert await _adds(env) == "42"


def test_mcp_servers_json_with_tasks_from_kwarg_and_from_mcpgym_key(tmp_path: Path) -> None:
    # Running such a JSON end to end is in test_envs_config; here: what load() makes of it.
    tasks = tmp_path / "extra.jsonl"
    tasks.write_text('{"question": "a?", "split": "val"}\n{"question": "b?", "split": "val"}\n')
    env = envs.load(str(mcp_json(tmp_path / "one")), tasks=str(tasks), isolation="shared")
    assert env.name == "calc" and env.isolation == "shared"
    assert env.splits() == ["val"] and len(env.tasks("val")) == 2
    assert env.handles["calc"].kind == "stdio"
    with_key = mcp_json(tmp_path / "two", tasks="tasks.jsonl", isolation="per_process", name="calcs")
    (tmp_path / "two" / "tasks.jsonl").write_text('{"question": "c?"}\n')
    env2 = envs.load(with_key)
    assert env2.name == "calcs" and env2.isolation == "per_process"
    assert {s: len(env2.tasks(s)) for s in env2.splits()} == {"train": 1}


async def test_entry_point(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(make_dist(tmp_path / "site")))
    assert any(e.name == "calc-test" and e.source == "entry point (mcpgym-testenv)" for e in available())
    env = envs.load("calc-test", isolation="shared")
    assert env.name == "calc" and env.isolation == "shared"
    assert await _adds(env) == "42"


def test_builtin_energy_is_listed() -> None:
    entries = {e.name: e for e in available()}
    assert entries["energy"].target == "envs.energy:load_env"


BAD_SPECS = [
    ("", "empty env spec"),
    ("no-such-env", "unknown env 'no-such-env'"),
    ("no_such_pkg.mod:factory", "cannot import 'no_such_pkg.mod'"),
    ("tests.fixtures.envs_servers:nothing_here", "has no attribute 'nothing_here'"),
    ("tests.fixtures.envs_fixtures:SERVER_SCRIPT", "not a factory"),
    ("tests.fixtures.envs_fixtures:calc_stdio", "returned StdioServer"),
    ("missing/config.json", "no such mcpServers file"),
    ("tests.fixtures.envs_servers:", "expected 'package.module:factory'"),
]


@pytest.mark.parametrize(("spec", "message"), BAD_SPECS)
def test_bad_specs(spec: str, message: str) -> None:
    with pytest.raises(EnvConfigError) as info:
        envs.load(spec)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_options_a_factory_does_not_take() -> None:
    with pytest.raises(EnvConfigError, match="does not accept options colour"):
        envs.load("tests.fixtures.envs_fixtures:calc_stdio", colour="red")


def run_cli(*args: str, extra_path: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    if extra_path is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(extra_path), str(ROOT)])
    return subprocess.run(
        [sys.executable, "-m", "envs", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )


def test_cli_list_shows_builtins_and_entry_points(tmp_path: Path) -> None:
    result = run_cli("list", extra_path=make_dist(tmp_path / "site"))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert any(line.split()[:2] == ["energy", "envs.energy:load_env"] and "built-in" in line for line in lines)
    assert any(line.startswith("calc-test") and "entry point (mcpgym-testenv)" in line for line in lines)
    as_json = json.loads(run_cli("list", "--json").stdout)
    assert {"name": "energy", "target": "envs.energy:load_env", "source": "built-in"} in as_json


def test_cli_inspect_shows_tools_schemas_and_task_counts(tmp_path: Path) -> None:
    result = run_cli("inspect", "tests.fixtures.envs_fixtures:make_env")
    assert result.returncode == 0, result.stderr
    assert "env calc: isolation per_session" in result.stdout
    assert "add  [calc]  Add two integers." in result.stdout
    assert '"required": [' in result.stdout  # the parameter schema is printed
    assert "tasks: train=3, test=1" in result.stdout
    doc = json.loads(run_cli("inspect", str(mcp_json(tmp_path)), "--json").stdout)
    assert doc["servers"] == {"calc": "stdio"} and doc["tasks"] == {}
    add = next(t for t in doc["tools"] if t["function"]["name"] == "add")
    assert add["function"]["parameters"]["properties"] == {"a": {"type": "integer"}, "b": {"type": "integer"}}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["inspect", "no-such-env"], "error: unknown env 'no-such-env'"),
        (["inspect", "missing.json"], "error: no such mcpServers file: missing.json"),
        (["frobnicate"], "invalid choice"),
    ],
)
def test_cli_bad_input_is_one_line_and_exit_2(args: list[str], message: str) -> None:
    result = run_cli(*args)
    assert result.returncode == 2
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.stderr


def test_cli_bad_config_file_is_one_line_and_exit_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"mcpServers": {"x": {"command": "python", "argz": []}}}')
    result = run_cli("inspect", str(bad))
    assert result.returncode == 2
    assert result.stderr.strip() == f"error: {bad}: server 'x': unknown key 'argz'"


def test_cli_server_that_does_not_start_is_one_line_and_exit_2(tmp_path: Path) -> None:
    broken = tmp_path / "broken.json"
    broken.write_text('{"mcpServers": {"x": {"command": "/nonexistent/server"}}}')
    result = run_cli("inspect", str(broken))
    assert result.returncode == 2
    where = f"command: /nonexistent/server; config: {broken.resolve()}"
    assert result.stderr.startswith(f"error: server 'x' ({where}) failed to start")
    assert len(result.stderr.splitlines()) == 1
