"""Isolation of state on disk: `${MCPGYM_EPISODE_DIR}`, `workspace` and `sandbox.private_paths`.

Each test runs 8 episodes at once, each writing its own marker through a real server and reading back
what the server holds: an episode must see only its own marker (plus the seeded state), never
another's, and the host's files must be byte-for-byte what they were. The npm servers are the real
`@modelcontextprotocol/server-memory` and `server-filesystem`, installed into `.mcp-servers/` by
scripts/test.sh (`scripts/setup_mcp_servers.sh`)."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from envs import EnvConfigError, EnvInfraError, MCPEnv, Task, ToolCall
from envs.sandbox import check_bwrap

ROOT = Path(__file__).resolve().parents[1]
MODULES = ROOT / ".mcp-servers" / "node_modules" / "@modelcontextprotocol"
DISK_SERVER = ROOT / "tests" / "fixtures" / "_disk_state_server.py"
TASK = Task(id="t1", question="Keep a note.")
N = 8
SEED = {"type": "entity", "name": "seed", "entityType": "fact", "observations": ["from the template"]}


def call(name: str, **arguments: Any) -> ToolCall:
    return ToolCall(id=name, name=name, arguments=json.dumps(arguments))


@pytest.fixture(scope="module")
def npm_servers() -> dict[str, Path]:
    """The two npm servers' entry points; missing is a failure naming the command that installs them."""
    found = {name: MODULES / f"server-{name}" / "dist" / "index.js" for name in ("memory", "filesystem")}
    missing = [str(path) for path in found.values() if not path.is_file()]
    if missing:
        pytest.fail(f"npm MCP servers missing ({missing[0]}): run scripts/setup_mcp_servers.sh (scripts/test.sh does)")
    return found


def write_config(folder: Path, servers: dict[str, Any], **mcpgym: Any) -> Path:
    path = folder / "mcp.json"
    path.write_text(json.dumps({"mcpServers": servers, "mcpgym": {"isolation": "per_process", **mcpgym}}))
    return path


def gone(folder: str) -> bool:
    return not Path(folder).exists()


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


async def run_episodes(env: MCPEnv, episode: Any) -> list[Any]:
    """`episode(ep, i)` for N episodes at once; all have written before any reads back."""
    gate = asyncio.Barrier(N)

    async def one(i: int) -> Any:
        async with env.episode(group="g") as ep:
            await ep.reset(TASK)
            return await episode(ep, i, gate)

    return list(await asyncio.gather(*(one(i) for i in range(N))))


async def text(ep: Any, name: str, **arguments: Any) -> str:
    result = await ep.step([call(name, **arguments)])
    return str(result.messages[0]["content"])


async def memory_episode(ep: Any, i: int, gate: asyncio.Barrier) -> set[str]:
    marker = {"name": f"marker-{i}", "entityType": "marker", "observations": [f"episode {i}"]}
    await text(ep, "create_entities", entities=[marker])
    await gate.wait()
    graph = json.loads(await text(ep, "read_graph"))
    return {entity["name"] for entity in graph["entities"]}


def seed_memory(folder: Path) -> Path:
    folder.mkdir()
    memory = folder / "memory.jsonl"
    memory.write_text(json.dumps(SEED) + "\n")
    return memory


# -- ${MCPGYM_EPISODE_DIR} + workspace --------------------------------------------------------------


async def test_memory_server_in_episode_dirs_sees_only_its_own_writes(
    tmp_path: Path, npm_servers: dict[str, Path]
) -> None:
    seed_memory(tmp_path / "template")
    before = snapshot(tmp_path / "template")
    server = {
        "command": "node",
        "args": [str(npm_servers["memory"])],
        "env": {"MEMORY_FILE_PATH": "${MCPGYM_EPISODE_DIR}/memory.jsonl"},
    }
    config = write_config(tmp_path, {"memory": server}, workspace="template")
    async with MCPEnv(str(config), warm_pool=2) as env:
        seen = await run_episodes(env, memory_episode)
    assert seen == [{"seed", f"marker-{i}"} for i in range(N)]
    assert snapshot(tmp_path / "template") == before


async def test_filesystem_server_in_episode_dirs_sees_only_its_own_files(
    tmp_path: Path, npm_servers: dict[str, Path]
) -> None:
    (tmp_path / "template").mkdir()
    (tmp_path / "template" / "seed.txt").write_text("seed")
    before = snapshot(tmp_path / "template")
    server = {"command": "node", "args": [str(npm_servers["filesystem"]), "${MCPGYM_EPISODE_DIR}"]}
    config = write_config(tmp_path, {"fs": server}, workspace="template")

    async def episode(ep: Any, i: int, gate: asyncio.Barrier) -> tuple[str, str, str]:
        allowed = (await text(ep, "list_allowed_directories")).splitlines()[-1].strip()
        await text(ep, "write_file", path=f"{allowed}/marker-{i}.txt", content=f"episode {i}")
        await text(ep, "edit_file", path=f"{allowed}/seed.txt", edits=[{"oldText": "seed", "newText": f"seed-{i}"}])
        await gate.wait()
        listing = await text(ep, "list_directory", path=allowed)
        return allowed, listing, await text(ep, "read_text_file", path=f"{allowed}/seed.txt")

    async with MCPEnv(str(config), warm_pool=2) as env:
        seen = await run_episodes(env, episode)
    assert len({allowed for allowed, _, _ in seen}) == N  # a folder each
    for i, (allowed, listing, seed) in enumerate(seen):
        assert sorted(listing.splitlines()) == sorted([f"[FILE] marker-{i}.txt", "[FILE] seed.txt"]), listing
        assert seed == f"seed-{i}"  # its own in-place edit of the seeded copy, no other's
        assert gone(allowed)  # removed once its server stopped
    assert snapshot(tmp_path / "template") == before  # in-place edits never reached the template


# -- sandbox.private_paths ---------------------------------------------------------------------------


async def test_memory_server_with_fixed_path_is_sandboxed_per_episode(
    tmp_path: Path, npm_servers: dict[str, Path]
) -> None:
    memory = seed_memory(tmp_path / "state")  # a path the config cannot template
    before = snapshot(tmp_path / "state")
    server = {"command": "node", "args": [str(npm_servers["memory"])], "env": {"MEMORY_FILE_PATH": str(memory)}}
    config = write_config(tmp_path, {"memory": server}, sandbox={"private_paths": ["state"], "network": False})
    async with MCPEnv(str(config), warm_pool=2) as env:
        seen = await run_episodes(env, memory_episode)
    assert seen == [{"seed", f"marker-{i}"} for i in range(N)]
    assert snapshot(tmp_path / "state") == before


async def test_filesystem_server_with_fixed_folder_is_sandboxed_per_episode(
    tmp_path: Path, npm_servers: dict[str, Path]
) -> None:
    files = tmp_path / "files"
    files.mkdir()
    (files / "seed.txt").write_text("seed")
    before = snapshot(files)
    server = {"command": "node", "args": [str(npm_servers["filesystem"]), str(files)]}
    config = write_config(tmp_path, {"fs": server}, sandbox={"private_paths": ["files"]})

    async def episode(ep: Any, i: int, gate: asyncio.Barrier) -> str:
        await text(ep, "write_file", path=f"{files}/marker-{i}.txt", content=f"episode {i}")
        await gate.wait()
        return await text(ep, "list_directory", path=str(files))

    async with MCPEnv(str(config), warm_pool=2) as env:
        seen = await run_episodes(env, episode)
    for i, listing in enumerate(seen):
        assert sorted(listing.splitlines()) == sorted([f"[FILE] marker-{i}.txt", "[FILE] seed.txt"]), listing
    assert snapshot(files) == before


# -- the fork server and the warm pool ---------------------------------------------------------------


def disk_server(notes: str = "${MCPGYM_EPISODE_DIR}/notes.txt") -> dict[str, Any]:
    return {"command": sys.executable, "args": [str(DISK_SERVER), notes]}


async def test_forked_python_server_gets_its_own_folder_before_serving(tmp_path: Path) -> None:
    (tmp_path / "template").mkdir()
    (tmp_path / "template" / "notes.txt").write_text("seeded\n")
    config = write_config(tmp_path, {"notes": disk_server()}, workspace="template", stdio_start="fork")

    async def episode(ep: Any, i: int, gate: asyncio.Barrier) -> tuple[str, str, int]:
        folder = (await text(ep, "where")).split("|")[0]
        mode = stat.S_IMODE(os.stat(folder).st_mode)
        await text(ep, "note", text=f"episode {i}")
        await gate.wait()
        return folder, await text(ep, "note", text=f"again {i}"), mode

    async with MCPEnv(str(config), warm_pool=2) as env:
        handle = env.handles["notes"]
        assert handle.forks
        seen = await run_episodes(env, episode)
        spares = [conn for conn in env._providers["notes"]._ready]  # type: ignore[attr-defined]
        assert handle.fork_server is not None and handle.fork_server.starts == 1
    folders = [folder for folder, _, _ in seen]
    assert len(set(folders)) == N and all(mode == 0o700 for _, _, mode in seen)
    for i, (folder, notes, _) in enumerate(seen):
        assert notes == f"seeded\nepisode {i}\nagain {i}\n"
        assert gone(folder)
    assert spares  # warm spares were forked (each into a folder of its own) ahead of need
    assert (tmp_path / "template" / "notes.txt").read_text() == "seeded\n"


async def test_warm_spare_folder_exists_before_it_is_taken_and_is_kept_on_request(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MCPGYM_KEEP_EPISODE_DIRS", "1")
    config = write_config(tmp_path, {"notes": disk_server()})
    async with MCPEnv(str(config), warm_pool=1) as env:
        pool = env._providers["notes"]  # type: ignore[attr-defined]
        for _ in range(200):  # the spare is made in the background after start
            if pool._ready:
                break
            await asyncio.sleep(0.05)
        assert pool._ready
        async with env.episode() as ep:
            await ep.reset(TASK)
            folder = (await text(ep, "where")).split("|")[0]
            await text(ep, "note", text="kept")
    try:
        assert (Path(folder) / "notes.txt").read_text() == "kept\n"
    finally:
        shutil.rmtree(folder)


# -- attacks on the sandbox: each must fail ----------------------------------------------------------


async def test_sandboxed_server_cannot_write_the_host_outside_its_private_paths(tmp_path: Path) -> None:
    (tmp_path / "state").mkdir()
    target = tmp_path / "planted.txt"
    config = write_config(
        tmp_path, {"notes": disk_server(str(tmp_path / "state" / "n.txt"))}, sandbox={"private_paths": ["state"]}
    )
    async with MCPEnv(str(config)) as env, env.episode() as ep:
        await ep.reset(TASK)
        answer = await text(ep, "write", path=str(target), text="payload")
        home = await text(ep, "write", path=str(ROOT / "planted.txt"), text="payload")
        assert await text(ep, "note", text="private") == "private\n"
    assert answer.startswith("refused") and home.startswith("refused")
    assert not target.exists() and not (ROOT / "planted.txt").exists()
    assert not (tmp_path / "state" / "n.txt").exists()


async def test_sandbox_without_network_cannot_reach_a_host_port(tmp_path: Path) -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    try:
        (tmp_path / "state").mkdir()
        server = disk_server(str(tmp_path / "state" / "n.txt"))
        open_config = write_config(tmp_path, {"notes": server}, sandbox={"private_paths": ["state"]})
        async with MCPEnv(str(open_config)) as env, env.episode() as ep:
            await ep.reset(TASK)
            assert await text(ep, "probe", port=port) == "connected"  # the probe itself works
        closed = write_config(tmp_path, {"notes": server}, sandbox={"private_paths": ["state"], "network": False})
        async with MCPEnv(str(closed)) as env, env.episode() as ep:
            await ep.reset(TASK)
            assert (await text(ep, "probe", port=port)).startswith("blocked")
    finally:
        listener.close()


async def test_missing_bwrap_is_one_error_never_an_unsandboxed_server(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "state").mkdir()
    config = write_config(
        tmp_path, {"notes": disk_server(str(tmp_path / "state" / "n.txt"))}, sandbox={"private_paths": ["state"]}
    )
    monkeypatch.setenv("PATH", str(tmp_path))  # no bwrap on it
    check_bwrap.cache_clear()
    try:
        with pytest.raises(EnvInfraError, match=r"bubblewrap \(bwrap\) is not installed"):
            async with MCPEnv(str(config)):
                pass
    finally:
        check_bwrap.cache_clear()
    assert not (tmp_path / "state" / "n.txt").exists()


def test_bad_disk_settings_are_config_errors(tmp_path: Path) -> None:
    server = disk_server()
    with pytest.raises(EnvConfigError, match=r"sandbox\.private_paths 'nope' does not exist"):
        MCPEnv(str(write_config(tmp_path, {"s": server}, sandbox={"private_paths": ["nope"]})))
    with pytest.raises(EnvConfigError, match=r"mcpgym\.workspace 'nope' is not a directory"):
        MCPEnv(str(write_config(tmp_path, {"s": server}, workspace="nope")))
    with pytest.raises(EnvConfigError, match="cannot sandbox"):
        MCPEnv(str(write_config(tmp_path, {"s": {"url": "http://127.0.0.1:9/mcp"}}, sandbox={})))
    with pytest.raises(EnvConfigError, match="stdio_start 'fork' is not possible: it runs sandboxed"):
        MCPEnv(str(write_config(tmp_path, {"s": server}, sandbox={}, stdio_start="fork")))


def test_episode_dir_as_cwd_spawns_each_server_in_its_folder(tmp_path: Path) -> None:
    in_folder = {**disk_server("notes.txt"), "cwd": "${MCPGYM_EPISODE_DIR}"}
    assert not MCPEnv(str(write_config(tmp_path, {"s": in_folder}))).handles["s"].forks  # the zygote has no cwd
    with pytest.raises(EnvConfigError, match="stdio_start 'fork' is not possible: its cwd is the episode folder"):
        MCPEnv(str(write_config(tmp_path, {"s": in_folder}, stdio_start="fork")))


async def test_spawned_server_runs_in_its_episode_folder(tmp_path: Path) -> None:
    config = write_config(tmp_path, {"s": {**disk_server("notes.txt"), "cwd": "${MCPGYM_EPISODE_DIR}"}})

    async def episode(ep: Any, i: int, gate: asyncio.Barrier) -> tuple[str, str]:
        folder = (await text(ep, "where")).split("|")[0]
        await text(ep, "note", text=f"episode {i}")
        await gate.wait()
        return folder, await text(ep, "note", text="again")

    async with MCPEnv(str(config), warm_pool=2) as env:
        seen = await run_episodes(env, episode)
    assert [notes for _, notes in seen] == [f"episode {i}\nagain\n" for i in range(N)]
    assert not (tmp_path / "notes.txt").exists()  # relative to the episode folder, never the config's


def test_episode_dir_is_not_read_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MCPGYM_EPISODE_DIR", "/host/shared")
    env = MCPEnv(str(write_config(tmp_path, {"s": disk_server()})))
    assert env.handles["s"].target.args[-1] == "${MCPGYM_EPISODE_DIR}/notes.txt"
    assert env.disk.servers == ("s",)


def test_inspect_shows_isolation_episode_dir_workspace_and_sandbox(tmp_path: Path) -> None:
    (tmp_path / "template").mkdir()
    (tmp_path / "state").mkdir()
    config = write_config(
        tmp_path,
        {"notes": disk_server()},
        workspace="template",
        sandbox={"private_paths": ["state"], "network": False},
    )
    envs = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-m", "envs", "inspect", str(config)], capture_output=True, text=True, env=envs, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert "isolation per_process" in done.stdout
    assert f"episode dir: notes; workspace {tmp_path / 'template'}" in done.stdout
    assert f"sandbox: bubblewrap, private paths {tmp_path / 'state'}; network off" in done.stdout
    as_json = subprocess.run(
        [sys.executable, "-m", "envs", "inspect", str(config), "--json"],
        capture_output=True,
        text=True,
        env=envs,
        timeout=120,
    )
    disk = json.loads(as_json.stdout)["disk"]
    assert disk["sandbox"] == {"private_paths": [str(tmp_path / "state")], "network": False}
    assert disk["episode_dir"] == ["notes"] and disk["workspace"] == str(tmp_path / "template")
