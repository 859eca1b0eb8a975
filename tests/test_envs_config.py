"""`mcpServers` JSON files and tasks JSONL: what works, and one clear line for what does not."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

from envs import EnvConfigError, MCPEnv, ToolCall, load_mcp_config, read_tasks_file
from envs.config import HttpServer, StdioServer
from tests.fixtures.envs_fixtures import SERVER_SCRIPT


def write_json(path: Path, data: object) -> Path:
    path.write_text(json.dumps(data) if not isinstance(data, str) else data)
    return path


@pytest.fixture
def server_dir(tmp_path: Path) -> Path:
    """A folder with a stdio server script, an mcpServers JSON using a relative path, and tasks."""
    folder = tmp_path / "myenv"
    folder.mkdir()
    shutil.copy(SERVER_SCRIPT, folder / "server.py")
    lines = [
        {"id": "a", "question": "1 + 1?", "answer": 2, "split": "train"},
        {"id": "b", "question": "2 + 2?", "answer": 4, "split": "test"},
        {"question": "Say hello."},
    ]
    (folder / "tasks.jsonl").write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    write_json(
        folder / "mcp.json",
        {
            "mcpServers": {
                "calc": {"command": "python", "args": ["server.py"], "env": {"API_TOKEN": "${MCPGYM_TEST_TOKEN}"}}
            },
            "mcpgym": {"tasks": "tasks.jsonl", "system_prompt": "Be brief.", "isolation": "shared"},
        },
    )
    return folder


async def test_json_config_runs_with_relative_paths_and_env_from_environment(
    server_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MCPGYM_TEST_TOKEN", "tok-123")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # relative paths mean "next to the JSON", not the cwd
    env = MCPEnv(server_dir / "mcp.json")
    assert env.isolation == "shared" and env.system_prompt == "Be brief."
    assert env.splits() == ["train", "test"]
    assert [t.id for t in env.tasks("train")] == ["a", "tasks-00003"]
    assert env.tasks("train")[1].kind == "open"
    async with env, env.episode() as episode:
        obs = await episode.reset(env.tasks("test")[0])
        assert obs.messages[0] == {"role": "system", "content": "Be brief."}
        result = await episode.step([ToolCall(id="1", name="getenv", arguments='{"name": "API_TOKEN"}')])
        assert result.messages[0]["content"] == "tok-123"


def test_config_models_and_var_expansion(server_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MCPGYM_TEST_TOKEN", "s3cr3t-value")
    monkeypatch.setenv("MCPGYM_TEST_HOST", "127.0.0.1:9")
    config = load_mcp_config(server_dir / "mcp.json")
    server = config.servers["calc"]
    assert isinstance(server, StdioServer)
    assert server.command == sys.executable  # "python" is the running interpreter
    assert server.cwd == str(server_dir.resolve())
    assert server.env == {"API_TOKEN": "s3cr3t-value"}
    assert "s3cr3t" not in repr(server) and "s3cr3t" not in repr(config)  # secrets stay out of logs
    assert config.tasks_path() == (server_dir / "tasks.jsonl").resolve()
    http = load_mcp_config(
        write_json(
            server_dir / "http.json",
            {
                "mcpServers": {
                    "remote": {
                        "url": "http://${MCPGYM_TEST_HOST}/mcp",
                        "headers": {"Authorization": "Bearer ${MCPGYM_TEST_TOKEN}", "X-Mode": "${MCPGYM_UNSET:-dev}"},
                    }
                }
            },
        )
    ).servers["remote"]
    assert isinstance(http, HttpServer)
    assert http.url == "http://127.0.0.1:9/mcp"
    assert http.headers == {"Authorization": "Bearer s3cr3t-value", "X-Mode": "dev"}
    assert "s3cr3t" not in repr(http)


BAD_CONFIGS = [
    ("{not json", "not valid JSON"),
    ({"servers": {}}, "unknown top-level key 'servers'"),
    ({"mcpServers": {}}, "'mcpServers' must be a non-empty object"),
    ({"mcpServers": {"x": {"args": ["a.py"]}}}, "server 'x' needs 'command' (stdio) or 'url' (http)"),
    ({"mcpServers": {"x": {"command": "python", "argz": []}}}, "server 'x': unknown key 'argz'"),
    ({"mcpServers": {"x": {"command": "python", "args": "server.py"}}}, "args: Input should be a valid list"),
    ({"mcpServers": {"x": {"command": "python", "env": {"K": 1}}}}, "env.K: Input should be a valid string"),
    ({"mcpServers": {"x": {"command": "python", "url": "http://a"}}}, "has both 'command' and 'url'"),
    ({"mcpServers": {"x": {"url": "ftp://host/mcp"}}}, "server 'x': url:"),
    ({"mcpServers": {"x": "python server.py"}}, "server 'x' must be an object"),
    ({"mcpServers": {"x": {"command": "python", "cwd": "no/such/dir"}}}, "is not a directory"),
    (
        {"mcpServers": {"x": {"command": "python", "env": {"K": "${MCPGYM_SURELY_UNSET}"}}}},
        "references ${MCPGYM_SURELY_UNSET}, which is not set in the environment",
    ),
    ({"mcpServers": {"x": {"command": "python"}}, "mcpgym": {"isolation": "nope"}}, "mcpgym: isolation:"),
    ({"mcpServers": {"x": {"command": "python"}}, "mcpgym": {"taskz": "t.jsonl"}}, "mcpgym: unknown key 'taskz'"),
    ([1, 2], "expected a JSON object"),
]


@pytest.mark.parametrize(("content", "message"), BAD_CONFIGS)
def test_bad_config_files(tmp_path: Path, content: object, message: str) -> None:
    path = write_json(tmp_path / "bad.json", content)
    with pytest.raises(EnvConfigError) as info:
        load_mcp_config(path)
    text = str(info.value)
    assert message in text and "\n" not in text
    assert str(path) in text


def test_missing_config_file(tmp_path: Path) -> None:
    with pytest.raises(EnvConfigError, match="no such mcpServers file"):
        MCPEnv(tmp_path / "absent.json")


def test_tasks_file_forms_and_errors(tmp_path: Path) -> None:
    good = tmp_path / "t.jsonl"
    good.write_text(
        '{"id": "x1", "question": "q1", "answer": 3, "split": "val", "kind": "single"}\n\n{"question": "q2"}\n'
    )
    splits = read_tasks_file(good)
    assert {k: [t.id for t in v] for k, v in splits.items()} == {"val": ["x1"], "train": ["t-00003"]}
    for body, message in [
        ('{"question": "ok"}\n{"question": \n', "t.jsonl:2: not a JSON line"),
        ('{"question": "q", "prompt": "q"}\n', "t.jsonl:1: prompt: unknown key"),
        ('"just a string"\n', "a task must be an object"),
        ("", "no tasks in file"),
    ]:
        good.write_text(body)
        with pytest.raises(EnvConfigError, match=message.replace("$", r"\$")):
            read_tasks_file(good)
    with pytest.raises(EnvConfigError, match="no such tasks file"):
        read_tasks_file(tmp_path / "absent.jsonl")


def test_task_splits_from_dicts_and_loaders() -> None:
    from tests.fixtures.envs_servers import build_calc

    env = MCPEnv(build_calc, tasks={"train": [{"question": "a?", "answer": 1}], "val": []})
    assert env.splits() == ["train", "val"]
    assert env.tasks("train")[0].id == "train-00000"
    with pytest.raises(EnvConfigError, match="no split 'test'"):
        env.tasks("test")

    def loader(split: str) -> list[dict[str, object]]:
        if split not in ("train", "test"):
            raise KeyError(split)
        return [{"id": f"{split}-1", "question": "?", "answer": 1}]

    env = MCPEnv(build_calc, tasks=loader)
    assert env.splits() == ["train", "test"]
    assert env.tasks("test")[0].split == "test"
    with pytest.raises(EnvConfigError, match="no split 'dev'"):
        env.tasks("dev")
    assert MCPEnv(build_calc).splits() == []
