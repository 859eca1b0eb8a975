"""Each episode's stdio server under bubblewrap: its own writable copy of the paths it keeps state in.

For servers whose state paths cannot be templated with `${MCPGYM_EPISODE_DIR}` (a fixed
`MEMORY_FILE_PATH`, a database path compiled in), the `mcpgym` section's
`"sandbox": {"private_paths": [...], "network": false}` runs each episode's server as

    TMPDIR=EPISODE/.mcpgym-private/tmp
    bwrap --die-with-parent --ro-bind / / --dev /dev --proc /proc
          --bind EPISODE EPISODE
          --bind EPISODE/.mcpgym-private/0-NAME PATH ...   (a copy of each private path, made per episode)
          [--unshare-net] --chdir CWD -- COMMAND ARGS...

so the server sees the host read-only except its own copies and its episode folder, and its
temporary files go to a private folder (`TMPDIR`). /tmp itself stays read-only rather than a fresh
tmpfs: a tmpfs there would hide whatever the server runs from under /tmp (a checkout, a venv);
the copies go with the episode folder (`envs.episode_dir`), and the host's paths never change.
bubblewrap is Debian's `bubblewrap` (scripts/setup_system.sh installs it). Where it is missing or
cannot make its namespaces (a container that forbids them), the env fails to start with one line
saying so; it never runs the server unsandboxed. A sandboxed server is spawned, never forked: a
fork server's children would all share the zygote's one sandbox.
"""

from __future__ import annotations

import functools
import shutil
import subprocess
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from contracts import EnvConfigError, EnvInfraError

from .config import HttpServer, McpConfig, SandboxSection, StdioServer
from .episode_dir import EpisodeSpace, copy_path, uses_placeholder

PRIVATE = ".mcpgym-private"
# The host read-only, with its own /dev and /proc.
_BASE = ("--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc")


class Sandbox(BaseModel):
    """A config's `sandbox` section with its paths resolved."""

    model_config = ConfigDict(frozen=True)

    private_paths: tuple[Path, ...] = ()
    network: bool = True

    @classmethod
    def from_section(cls, section: SandboxSection, *, base_dir: Path, where: str) -> Sandbox:
        paths: list[Path] = []
        for written in section.private_paths:
            path = (base_dir / written).resolve()
            if not path.exists():
                raise EnvConfigError(
                    f"{where}: sandbox.private_paths '{written}' does not exist (create it, empty, to seed nothing)"
                )
            if path == Path("/"):
                raise EnvConfigError(f"{where}: sandbox.private_paths cannot be '/'")
            paths.append(path)
        return cls(private_paths=tuple(paths), network=section.network)

    def seed(self, folder: Path) -> None:
        """Copy the private paths into the episode's `folder` (blocking: run off the event loop)."""
        check_bwrap(self.network)
        private = folder / PRIVATE
        private.mkdir(mode=0o700)
        (private / "tmp").mkdir(mode=0o700)
        for i, path in enumerate(self.private_paths):
            copy_path(path, private / f"{i}-{path.name}")

    def wrap(self, spec: StdioServer, folder: Path) -> StdioServer:
        """`spec` run under bwrap, over the copies `seed` made in `folder`."""
        bwrap = check_bwrap(self.network)
        cwd = Path(spec.cwd) if spec.cwd is not None else Path.cwd()
        argv = ["--die-with-parent", *_BASE, "--bind", str(folder), str(folder)]
        for i, path in enumerate(self.private_paths):
            argv += ["--bind", str(folder / PRIVATE / f"{i}-{path.name}"), str(path)]
        if not self.network:
            argv.append("--unshare-net")
        argv += ["--chdir", str(cwd), "--", spec.command, *spec.args]
        env = {**(spec.env or {}), "TMPDIR": str(folder / PRIVATE / "tmp")}
        wrapped = spec.model_copy(update={"command": bwrap, "args": argv, "env": env})
        wrapped._expanded = spec._expanded
        return wrapped


@functools.cache
def check_bwrap(network: bool) -> str:
    """The path of a bwrap that works here (tried once per process), else one EnvInfraError line saying why."""
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        raise EnvInfraError(
            "sandbox: bubblewrap (bwrap) is not installed; install the Debian package 'bubblewrap' "
            "(scripts/setup_system.sh does, as root)"
        )
    argv = [bwrap, "--die-with-parent", *_BASE]
    argv += [] if network else ["--unshare-net"]
    try:
        done = subprocess.run([*argv, "true"], capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise EnvInfraError(f"sandbox: bubblewrap cannot run here: {exc}") from None
    if done.returncode != 0:
        reason = (done.stderr.strip().splitlines() or [f"exit code {done.returncode}"])[-1]
        raise EnvInfraError(f"sandbox: bubblewrap cannot run here ({reason}); user namespaces may be disabled")
    return bwrap


class DiskIsolation(BaseModel):
    """An env's state-on-disk settings: which servers get an episode folder, seeded from what, sandboxed how."""

    model_config = ConfigDict(frozen=True)

    space: EpisodeSpace | None = None  # None: no server gets an episode folder
    sandbox: Sandbox | None = None
    servers: tuple[str, ...] = ()  # the servers that get one

    def for_server(self, name: str) -> tuple[EpisodeSpace | None, Sandbox | None]:
        if name not in self.servers:
            return None, None
        return self.space, self.sandbox

    def summary(self) -> dict[str, Any]:
        """What `python -m envs inspect` shows."""
        space = self.space
        return {
            "episode_dir": list(self.servers),
            "workspace": str(space.workspace) if space is not None and space.workspace is not None else None,
            "keep_episode_dirs": bool(space and space.keep),
            "sandbox": None
            if self.sandbox is None
            else {"private_paths": [str(p) for p in self.sandbox.private_paths], "network": self.sandbox.network},
        }


def disk_isolation(config: McpConfig | None, targets: dict[str, Any], *, env: str) -> DiskIsolation:
    """Read a config's `workspace`, `keep_episode_dirs` and `sandbox` (one EnvConfigError line when wrong)."""
    section = config.mcpgym if config is not None else None
    where = str(config.source) if config is not None and config.source is not None else f"env '{env}'"
    base_dir = config.base_dir if config is not None else Path.cwd()
    workspace = None
    if section is not None and section.workspace is not None:
        workspace = (base_dir / section.workspace).resolve()
        if not workspace.is_dir():
            raise EnvConfigError(f"{where}: mcpgym.workspace '{section.workspace}' is not a directory")
    sandbox = None
    if section is not None and section.sandbox is not None:
        sandbox = Sandbox.from_section(section.sandbox, base_dir=base_dir, where=where)
    servers: list[str] = []
    for name, target in targets.items():
        if isinstance(target, HttpServer) and sandbox is not None:
            raise EnvConfigError(
                f"{where}: server '{name}' is reached by URL, which mcpgym cannot sandbox; "
                "only stdio servers it starts run sandboxed (an HTTP server is isolated per session)"
            )
        if uses_placeholder(target) or (isinstance(target, StdioServer) and (workspace or sandbox)):
            servers.append(name)
    if not servers:
        return DiskIsolation(sandbox=sandbox)
    keep = bool(section and section.keep_episode_dirs)
    return DiskIsolation(space=EpisodeSpace(workspace=workspace, keep=keep), sandbox=sandbox, servers=tuple(servers))
