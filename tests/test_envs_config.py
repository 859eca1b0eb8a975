"""`mcpServers` JSON files and tasks JSONL: what works, and one clear line for what does not."""

from __future__ import annotations

import asyncio
import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import envs
from envs import EnvConfigError, EnvInfraError, MCPEnv, ToolCall, load_mcp_config, read_tasks_file
from envs.config import HttpServer, StdioServer
from tests.fixtures.common import free_port
from tests.fixtures.envs_fixtures import SERVER_SCRIPT, HttpMcpServer


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
    ({"mcpServerz": {}}, "unknown top-level key 'mcpServerz'"),
    ({"mcpServers": {}}, "'mcpServers' must be a non-empty object"),
    ({"servers": {}}, "'servers' must be a non-empty object"),
    ({"mcpServers": {"x": {"args": ["a.py"]}}}, "server 'x' needs 'command' (stdio) or 'url' (http, sse)"),
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
    # The dialects' keys are known; anything else is still refused, with one line naming it.
    ({"mcpServers": {"x": {"command": "python", "colour": "red"}}}, "server 'x': unknown key 'colour'"),
    ({"mcpServers": {"x": {"url": "http://a/mcp", "colour": 1}}}, "server 'x': unknown key 'colour'"),
    ({"mcpServers": {"x": {"command": "python", "type": "sse"}}}, "server 'x': type 'sse' needs 'url', not 'command'"),
    ({"mcpServers": {"x": {"url": "http://a", "type": "stdio"}}}, "server 'x': type 'stdio' needs 'command'"),
    ({"mcpServers": {"x": {"url": "http://a", "type": "sse", "transport": "http"}}}, "'type' and 'transport' disagree"),
    ({"mcpServers": {"x": {"url": "http://a", "type": "websocket"}}}, "server 'x': type: Input should be"),
    ({"mcpServers": {"x": {"url": "http://a", "serverUrl": "http://b"}}}, "has both 'url' and 'serverUrl'"),
    ({"mcpServers": {"x": {"command": "python"}}, "servers": {"y": {"command": "python"}}}, "both 'mcpServers' and"),
    ({"mcpServers": {"x": {"command": "python", "disabled": True}}}, "every server is disabled (x)"),
    ({"mcpServers": {"x": {"command": "python", "disabled": "yes"}}}, "disabled: Input should be a valid boolean"),
    ({"mcpServers": {"x": {"command": "python", "envFile": "missing.env"}}}, "missing.env' does not exist"),
    ({"mcpServers": {"x": {"command": "python", "timeout": -5}}}, "timeout: Input should be greater than 0"),
    ({"mcpServers": {"x": {"url": "http://a", "auth": "oauth"}}}, "auth 'oauth' needs a browser"),
    ({"mcpServers": {"x": {"url": "http://a", "tools": {"add": {}}}}}, "fastmcp tool transforms (tools) are not"),
    ({"mcpServers": {"x": {"command": "${config:python.path}"}}}, "uses ${config:python.path}; only environment"),
    (
        {"mcpServers": {"x": {"command": "${env:MCPGYM_SURELY_UNSET}"}}},
        "server 'x' command references ${MCPGYM_SURELY_UNSET}, which is not set in the environment",
    ),
    (
        {"servers": {"x": {"command": "python", "env": {"K": "${input:nope}"}}}},
        "server 'x' env.K references ${input:nope}, which 'inputs' does not declare",
    ),
    ({"servers": {"x": {"command": "python"}}, "inputs": [{"id": "a", "colour": 1}]}, "inputs.0: unknown key 'colour'"),
    ({"servers": {"x": {"command": "python"}}, "inputs": [{"id": "a"}, {"id": "a"}]}, "input 'a' is declared twice"),
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


# -- every host's dialect, as each writes it, connecting to real servers -----------------------

SECRET = "sekrit-tok-42"


async def call_text(env: MCPEnv, tool: str, **arguments: object) -> str:
    async with env.episode() as episode:
        await episode.reset("q")
        result = await episode.step([ToolCall(id="1", name=tool, arguments=json.dumps(arguments))])
    return result.messages[0]["content"]


async def tool_names(env: MCPEnv) -> set[str]:
    return {t["function"]["name"] for t in await env.tools()}


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    """A project folder as an editor opens it: the server script and a `.env` next to it."""
    folder = tmp_path / "project"
    folder.mkdir()
    shutil.copy(SERVER_SCRIPT, folder / "server.py")
    (folder / ".env").write_text("FROM_ENV_FILE=yes\nAPI_TOKEN=loses-to-env\n")
    return folder


async def test_claude_desktop_config(tmp_path: Path) -> None:
    # claude_desktop_config.json: absolute paths, literal env values, no variables, no type.
    path = write_json(
        tmp_path / "claude_desktop_config.json",
        {
            "mcpServers": {
                "calc": {"command": sys.executable, "args": [str(SERVER_SCRIPT)], "env": {"API_TOKEN": "desktop"}}
            }
        },
    )
    async with envs.load(path, isolation="shared") as env:
        assert {"add", "getenv", "sleep"} <= await tool_names(env)
        assert await call_text(env, "add", a=2, b=3) == "5"
        assert await call_text(env, "getenv", name="API_TOKEN") == "desktop"


async def test_claude_code_project_config(
    workspace: Path, calc_http: HttpMcpServer, calc_sse: HttpMcpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # .mcp.json: `type` on every entry, `${VAR}` / `${VAR:-default}` anywhere, a whole URL in a variable.
    monkeypatch.setenv("MCPGYM_T_TOKEN", SECRET)
    monkeypatch.setenv("MCPGYM_T_URL", calc_http.url)
    monkeypatch.delenv("MCPGYM_T_MODE", raising=False)
    path = write_json(
        workspace / ".mcp.json",
        {
            "mcpServers": {
                "calc": {
                    "type": "stdio",
                    "command": "python",
                    "args": ["server.py"],
                    "env": {"API_TOKEN": "${MCPGYM_T_TOKEN}", "MODE": "${MCPGYM_T_MODE:-dev}"},
                },
                "remote": {
                    "type": "http",
                    "url": "${MCPGYM_T_URL}",
                    "headers": {"Authorization": "Bearer ${MCPGYM_T_TOKEN}"},
                },
                "events": {"type": "sse", "url": calc_sse.url},
            }
        },
    )
    async with envs.load(path, isolation="shared") as env:
        assert {n: h.kind for n, h in env.handles.items()} == {"calc": "stdio", "remote": "http", "events": "sse"}
        assert {"calc__add", "remote__add", "events__add"} <= await tool_names(env)  # all three serve `add`
        assert await call_text(env, "calc__getenv", name="API_TOKEN") == SECRET
        assert await call_text(env, "calc__getenv", name="MODE") == "dev"
        assert await call_text(env, "remote__header", name="Authorization") == f"Bearer {SECRET}"
        assert await call_text(env, "events__add", a=1, b=2) == "3"


async def test_cursor_config(workspace: Path, calc_http: HttpMcpServer, monkeypatch: pytest.MonkeyPatch) -> None:
    # .cursor/mcp.json: `${env:VAR}` in command, args, env, url and headers; `${workspaceFolder}`; envFile.
    monkeypatch.setenv("MCPGYM_T_TOKEN", SECRET)
    monkeypatch.setenv("MCPGYM_T_PYTHON", sys.executable)
    monkeypatch.setenv("MCPGYM_T_PORT", str(calc_http.port))
    (workspace / ".cursor").mkdir()
    path = write_json(
        workspace / ".cursor" / "mcp.json",
        {
            "mcpServers": {
                "calc": {
                    "command": "${env:MCPGYM_T_PYTHON}",
                    "args": ["${workspaceFolder}/server.py"],
                    "env": {"API_TOKEN": "${env:MCPGYM_T_TOKEN}"},
                    "envFile": "${workspaceFolder}/.env",
                },
                "remote": {
                    "url": "http://127.0.0.1:${env:MCPGYM_T_PORT}/mcp",
                    "headers": {"X-Api-Key": "${env:MCPGYM_T_TOKEN}"},
                },
            }
        },
    )
    config = load_mcp_config(path)
    calc = config.servers["calc"]
    assert isinstance(calc, StdioServer) and calc.args == [str(workspace / "server.py")]
    assert SECRET not in repr(config)
    async with MCPEnv(config, isolation="shared") as env:
        assert {"calc__add", "remote__add", "calc__getenv"} <= await tool_names(env)
        assert await call_text(env, "calc__getenv", name="API_TOKEN") == SECRET  # `env` wins over envFile
        assert await call_text(env, "calc__getenv", name="FROM_ENV_FILE") == "yes"
        assert await call_text(env, "remote__header", name="X-Api-Key") == SECRET


def vscode_config(workspace: Path, url: str) -> Path:
    (workspace / ".vscode").mkdir(exist_ok=True)
    return write_json(
        workspace / ".vscode" / "mcp.json",
        {
            "inputs": [
                {"type": "promptString", "id": "calc-token", "description": "Calc API token", "password": True},
                {"type": "promptString", "id": "calc-mode", "description": "Mode", "default": "from-default"},
            ],
            "servers": {
                "calc": {
                    "type": "stdio",
                    "command": "python",
                    "args": ["${workspaceFolder}/server.py"],
                    "env": {"API_TOKEN": "${input:calc-token}", "MODE": "${input:calc-mode}"},
                    "envFile": "${workspaceFolder}/.env",
                    "dev": {"watch": "server.py"},
                },
                "remote": {"type": "http", "url": url, "headers": {"Authorization": "Bearer ${input:calc-token}"}},
            },
        },
    )


async def test_vscode_config_reads_inputs_from_the_environment(
    workspace: Path, calc_http: HttpMcpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # .vscode/mcp.json: `servers` + `inputs`; ${input:calc-token} is read from $CALC_TOKEN.
    monkeypatch.setenv("CALC_TOKEN", SECRET)
    monkeypatch.delenv("CALC_MODE", raising=False)
    path = vscode_config(workspace, calc_http.url)
    async with envs.load(path, isolation="shared") as env:
        assert {"calc__add", "remote__add"} <= await tool_names(env)
        assert await call_text(env, "calc__getenv", name="API_TOKEN") == SECRET
        assert await call_text(env, "calc__getenv", name="MODE") == "from-default"  # the input's default
        assert await call_text(env, "calc__getenv", name="FROM_ENV_FILE") == "yes"
        assert await call_text(env, "remote__header", name="Authorization") == f"Bearer {SECRET}"


def test_vscode_input_not_in_the_environment_names_the_variable(
    workspace: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CALC_TOKEN", raising=False)
    path = vscode_config(workspace, "http://127.0.0.1:9/mcp")
    with pytest.raises(EnvConfigError) as info:
        envs.load(path)
    text = str(info.value)
    assert "\n" not in text and text.startswith(str(path))
    assert "server 'calc' env.API_TOKEN uses ${input:calc-token}: set CALC_TOKEN in the environment" in text


async def test_fastmcp_config(
    tmp_path: Path, calc_http: HttpMcpServer, calc_sse: HttpMcpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # fastmcp's MCPConfig keys: `transport`, `timeout` (ms), `auth`, metadata; a disabled server is skipped
    # unread (its variable is not set and its command does not exist).
    monkeypatch.setenv("MCPGYM_T_TOKEN", SECRET)
    monkeypatch.delenv("MCPGYM_NEVER_SET", raising=False)
    path = write_json(
        tmp_path / "fastmcp.json",
        {
            "mcpServers": {
                "calc": {
                    "transport": "stdio",
                    "command": "python",
                    "args": [str(SERVER_SCRIPT)],
                    "timeout": 700,
                    "description": "a calculator",
                    "keep_alive": False,
                },
                "events": {
                    "url": calc_sse.url,
                    "transport": "sse",
                    "auth": "${MCPGYM_T_TOKEN}",
                    "sse_read_timeout": 60,
                },
                "web": {"url": calc_http.url, "transport": "streamable-http", "headers": {"X-Mode": "fastmcp"}},
                "retired": {"command": "/nonexistent/old-server", "args": ["${MCPGYM_NEVER_SET}"], "disabled": True},
            }
        },
    )
    async with envs.load(path, isolation="shared") as env:
        assert env.config is not None and env.config.disabled == ["retired"]
        assert {n: h.kind for n, h in env.handles.items()} == {"calc": "stdio", "events": "sse", "web": "http"}
        assert {"calc__add", "events__add", "web__add"} <= await tool_names(env)
        assert await call_text(env, "events__header", name="Authorization") == f"Bearer {SECRET}"
        assert await call_text(env, "web__header", name="X-Mode") == "fastmcp"
        async with env.episode() as episode:
            await episode.reset("q")
            slow = await episode.step([ToolCall(id="1", name="calc__sleep", arguments='{"seconds": 5}')])
            assert slow.outcomes[0].error == "timeout"  # the entry's 700 ms, not the env's 30 s
            assert slow.messages[0]["content"] == "Error: tool 'calc__sleep' timed out after 0.7 s."
            fast = await episode.step([ToolCall(id="2", name="web__sleep", arguments='{"seconds": 1}')])
            assert fast.outcomes[0].ok  # other servers keep the env's call timeout
            booked = [
                (await episode.step([ToolCall(id=f"b{i}", name="events__book", arguments='{"amount": 2}')]))
                for i in range(2)
            ]
            assert [b.messages[0]["content"] for b in booked] == ["2", "4"]  # one SSE session per episode


async def test_windsurf_server_url(tmp_path: Path, calc_http: HttpMcpServer) -> None:
    # ~/.codeium/windsurf/mcp_config.json names the URL `serverUrl`.
    path = write_json(tmp_path / "mcp_config.json", {"mcpServers": {"remote": {"serverUrl": calc_http.url}}})
    async with envs.load(path, isolation="shared") as env:
        assert await call_text(env, "add", a=4, b=4) == "8"


# -- connection errors name the server, its URL or command, and the config file -----------------


async def start_error(path: Path) -> str:
    env = envs.load(path, isolation="shared", startup_timeout_s=15)
    try:
        with pytest.raises(EnvInfraError) as info:
            await asyncio.wait_for(env.start(), timeout=30)
    finally:
        await env.aclose()
    return str(info.value)


def refused_config(tmp_path: Path, port: int) -> Path:
    return write_json(
        tmp_path / "mcp.json",
        {
            "mcpServers": {
                "remote": {
                    "url": "http://127.0.0.1:${MCPGYM_T_PORT}/mcp?key=${MCPGYM_T_TOKEN}",
                    "headers": {"Authorization": "Bearer ${MCPGYM_T_TOKEN}"},
                }
            }
        },
    )


def refused_where(path: Path, port: int) -> str:
    """How the error names it: the URL as written (its query, maybe a key, cut), the host it expanded to."""
    return f"url: http://127.0.0.1:${{MCPGYM_T_PORT}}/mcp?... (http://127.0.0.1:{port}); config: {path.resolve()}"


async def test_refused_connection_names_server_url_and_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    port = free_port()  # nothing listens there: the connection is refused
    monkeypatch.setenv("MCPGYM_T_PORT", str(port))
    monkeypatch.setenv("MCPGYM_T_TOKEN", SECRET)
    path = refused_config(tmp_path, port)
    text = await start_error(path)
    assert text.startswith(f"server 'remote' ({refused_where(path, port)}) failed to start: "), text
    assert "connection refused" in text and "\n" not in text
    assert SECRET not in text  # neither the header nor the URL's query


def test_cli_refused_connection_is_one_line_exit_2_without_the_secret(tmp_path: Path) -> None:
    port = free_port()
    path = refused_config(tmp_path, port)
    result = subprocess.run(
        [sys.executable, "-m", "envs", "inspect", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "MCPGYM_T_PORT": str(port), "MCPGYM_T_TOKEN": SECRET},
    )
    assert result.returncode == 2
    assert result.stderr.startswith(f"error: server 'remote' ({refused_where(path, port)}) failed to start")
    assert len(result.stderr.strip().splitlines()) == 1 and SECRET not in result.stderr + result.stdout


@pytest.mark.parametrize("transport", ["http", "sse"])
async def test_http_error_quoting_the_url_does_not_carry_its_key(
    tmp_path: Path, calc_http: HttpMcpServer, monkeypatch: pytest.MonkeyPatch, transport: str
) -> None:
    # A wrong path: the HTTP client's own error quotes the whole URL, key and all.
    monkeypatch.setenv("MCPGYM_T_TOKEN", SECRET)
    url = f"http://127.0.0.1:{calc_http.port}/nope?key=${{MCPGYM_T_TOKEN}}"
    entry = {"url": url, "type": transport, "headers": {"Authorization": "Bearer ${MCPGYM_T_TOKEN}"}}
    path = write_json(tmp_path / "mcp.json", {"mcpServers": {"remote": entry}})
    text = await start_error(path)
    sse = "sse " if transport == "sse" else ""
    where = f"{sse}url: http://127.0.0.1:{calc_http.port}/nope?...; config: {path.resolve()}"
    assert text.startswith(f"server 'remote' ({where}) failed to start: ") and "Not Found" in text, text
    assert SECRET not in text


@pytest.mark.parametrize(
    ("command", "args", "reason"),
    [
        ("python", ["-c", "raise SystemExit(3)"], "the server closed the connection during start-up"),
        ("/nonexistent/mcp-server", ["--token", "${MCPGYM_T_TOKEN}"], "No such file or directory"),
    ],
)
async def test_stdio_command_that_fails_names_server_command_and_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, command: str, args: list[str], reason: str
) -> None:
    monkeypatch.setenv("MCPGYM_T_TOKEN", SECRET)
    path = write_json(tmp_path / "mcp.json", {"mcpServers": {"calc": {"command": command, "args": args}}})
    text = await start_error(path)
    where = f"command: {shlex.join([command, *args])}; config: {path.resolve()}"
    assert text.startswith(f"server 'calc' ({where}) failed to start: "), text
    assert reason in text and "\n" not in text and SECRET not in text


def test_transport_from_type_or_url() -> None:
    def kind(entry: dict[str, object]) -> str:
        server = load_server(entry)
        return server.protocol if isinstance(server, HttpServer) else "stdio"

    assert kind({"url": "http://a/events", "type": "sse"}) == "sse"  # declared: any path
    assert kind({"url": "http://a/events", "transport": "sse"}) == "sse"
    assert kind({"url": "http://a/sse"}) == "sse"  # undeclared: inferred from the path, as fastmcp does
    assert kind({"url": "http://a/mcp"}) == kind({"url": "http://a/sse", "type": "streamableHttp"}) == "http"
    assert kind({"command": "python", "type": "stdio"}) == "stdio"
    assert MCPEnv("http://127.0.0.1:9/sse").handles["mcp"].kind == "sse"


def load_server(entry: dict[str, object]) -> StdioServer | HttpServer:
    from envs.config import parse_mcp_config

    return parse_mcp_config({"mcpServers": {"x": entry}}).servers["x"]


def test_expanded_values_stay_out_of_reprs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MCPGYM_T_TOKEN", SECRET)
    stdio = load_server({"command": "python", "args": ["server.py", "--token", "${env:MCPGYM_T_TOKEN}"]})
    http = load_server({"url": "http://127.0.0.1:9/mcp/${MCPGYM_T_TOKEN}?key=${MCPGYM_T_TOKEN}"})
    assert isinstance(stdio, StdioServer) and stdio.args[-1] == SECRET  # the server still gets it
    assert isinstance(http, HttpServer) and http.url.endswith(f"?key={SECRET}")
    for server in (stdio, http):
        assert SECRET not in repr(server) and SECRET not in server.describe()
    assert "'--token', '***'" in repr(stdio) and "127.0.0.1:9" in repr(http)


def test_expanded_values_are_not_echoed_in_config_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MCPGYM_T_URL", f"ftp://user:{SECRET}@host/mcp")
    monkeypatch.setenv("MCPGYM_T_TOKEN", SECRET)
    for entry, message in [
        ({"url": "${MCPGYM_T_URL}"}, "server 'x': url: String should match pattern"),
        ({"url": "http://a/mcp", "headers": {"K": "${MCPGYM_T_TOKEN}", "N": 1}}, "headers.N: Input should be"),
        ({"command": "python", "cwd": "/${MCPGYM_T_TOKEN}"}, "cwd '/${MCPGYM_T_TOKEN}' is not a directory"),
        ({"command": "python", "envFile": "${MCPGYM_T_TOKEN}.env"}, "envFile '${MCPGYM_T_TOKEN}.env' does not exist"),
    ]:
        path = write_json(tmp_path / "bad.json", {"mcpServers": {"x": entry}})
        with pytest.raises(EnvConfigError) as info:
            load_mcp_config(path)
        assert message in str(info.value) and SECRET not in str(info.value)
