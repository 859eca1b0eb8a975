"""The fork server of a Python stdio MCP server: import once, fork a fresh server per rollout.

Run by `envs.forkserver` as `<the server's python> _zygote.py CONTROL_FD PARENT_PID LAUNCH_PY --
script.py ARGS...` (or `-- -m module ARGS...`), in the server's cwd and environment, in a session of
its own. It imports only the standard library, because it runs under the *server's* interpreter,
which may not have mcpgym installed; for the parent-death signal it loads mcpgym's
`common/launch.py` by its path (LAUNCH_PY): the zygote dies with PARENT_PID, and each child, made a
session leader of its own, dies with the zygote.

1. It preloads what makes a Python server slow to start (the interpreter itself, fastmcp, and the
   installed packages the script imports at top level), then freezes the heap so forked children
   share those pages copy-on-write.
2. It waits on CONTROL_FD. Each request is one byte carrying a socket (SCM_RIGHTS). It forks; the
   child makes that socket its stdin and stdout and runs the script as `__main__`, exactly as
   `python script.py` would, so every module-level statement of the server (its state, its files)
   runs again in each child. The parent answers with the child's pid and, on Linux, a pidfd.
3. It exits when the control socket closes (its client went away).

Nothing of the script itself runs in the zygote: it is only compiled there (once, and again when
the file changes), and modules next to the script (the server's own code, which may open files or
databases when imported) are imported by each child, never shared.
"""

from __future__ import annotations

import ast
import atexit
import gc
import importlib
import importlib.util
import os
import runpy
import signal
import socket
import struct
import sys
import traceback
import types
from types import CodeType

# A reply: the child's pid (negative errno when the fork failed). Fixed size: the control socket is
# a byte stream, and a fixed size keeps each reply whole.
REPLY = struct.Struct("!i")
READY = b"R"
FORK = b"F"
# A fork into an episode folder: "D", its path's length (PATH_LEN), the path. The child puts the path
# where the server's arguments and environment say ${MCPGYM_EPISODE_DIR} (envs.episode_dir).
FORK_IN = b"D"
PATH_LEN = struct.Struct("!H")
EPISODE_VAR = "MCPGYM_EPISODE_DIR"
PLACEHOLDER = "${" + EPISODE_VAR + "}"


def _top_level_imports(script: str) -> list[tuple[str, list[str]]]:
    """(module, names taken from it) for each module-level absolute import of the script."""
    try:
        with open(script, encoding="utf-8") as handle:
            tree = ast.parse(handle.read(), filename=script)
    except (OSError, SyntaxError, ValueError):
        return []  # the child will report the real error when it runs the script
    found: list[tuple[str, list[str]]] = []
    body = list(tree.body)
    while body:
        node = body.pop(0)
        if isinstance(node, ast.Import):
            found.extend((alias.name, []) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.module, [alias.name for alias in node.names if alias.name != "*"]))
        elif isinstance(node, ast.If | ast.Try):  # `if TYPE_CHECKING:`, `try: import x`
            body.extend(node.body)
            body.extend(getattr(node, "orelse", []))
    return found


def _is_local(name: str, folder: str) -> bool:
    """Whether `name` is the server's own code (found next to the script, or not found at all)."""
    try:
        spec = importlib.util.find_spec(name.partition(".")[0])
    except (ImportError, ValueError):
        return True
    if spec is None:
        return True
    origin = spec.origin or next(iter(spec.submodule_search_locations or [""]))
    if origin in ("built-in", "frozen"):
        return False
    return os.path.abspath(origin).startswith(folder + os.sep)


def script_dir(target: list[str]) -> str:
    """What `python script.py` (or `python -m module`) puts first on sys.path."""
    return os.path.abspath(os.getcwd() if target[0] == "-m" else os.path.dirname(target[0]))


def preload(target: list[str]) -> None:
    # What any fastmcp stdio server imports on its way up (measured: the rest comes from rehearse()).
    imports: list[tuple[str, list[str]]] = [
        ("fastmcp", ["FastMCP", "Context"]),
        ("mcp.server.stdio", []),
        ("anyio._backends._asyncio", []),
        ("anyio.streams.stapled", []),
        ("anyio.streams.tls", []),
        ("fastmcp.server.transforms.catalog", []),
    ]
    if target[0] != "-m":
        folder = script_dir(target)
        imports += [(name, names) for name, names in _top_level_imports(target[0]) if not _is_local(name, folder)]
    for name, names in imports:
        try:
            module = importlib.import_module(name)
            for attr in names:  # `from fastmcp import FastMCP`: packages that load lazily load here
                getattr(module, attr, None)
        except BaseException:  # a module that fails here fails again, visibly, in the child
            pass
    try:
        rehearse()
    except BaseException:  # only a warm-up: the child does it all again for real
        pass
    sys.stdout.flush()  # whatever an import printed goes to /dev/null now, not into a child's stdout


def rehearse() -> None:
    """Build a small FastMCP server and drive one session in memory, so what fastmcp imports
    lazily (docstring parsing, request handling, result serialising) is imported here, once.
    In memory, so no thread is left behind to break the forks."""
    import anyio
    from fastmcp import Client, Context, FastMCP

    server = FastMCP("rehearsal")

    @server.tool
    async def echo(text: str, times: int, ctx: Context) -> str:
        """Echo a text.

        Args:
            text: what to echo.
            times: how often.
        """
        await ctx.set_state("seen", (await ctx.get_state("seen") or 0) + 1)
        return text * times

    async def session() -> None:
        async with Client(server) as client:
            await client.list_tools()
            await client.call_tool("echo", {"text": "x", "times": 2})

    anyio.run(session)


class Script:
    """The server script, read and compiled once in the zygote (again when the file changes), so
    a child runs it without reading or compiling it: only the bytecode is shared, nothing it makes."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._key: tuple[int, int, int] | None = None
        self._code: CodeType | None = None

    def code(self) -> CodeType | None:
        """The compiled script, or None (the child then runs it with runpy, which reports why)."""
        try:
            stat = os.stat(self.path)
        except OSError:
            return None
        key = (stat.st_mtime_ns, stat.st_size, stat.st_ino)
        if key != self._key:
            self._key = key
            try:
                with open(self.path, "rb") as handle:
                    source = handle.read()
                # dont_inherit: this file's `from __future__` flags must not change the script's meaning.
                self._code = compile(source, self.path, "exec", dont_inherit=True)
            except (OSError, SyntaxError, ValueError):
                self._code = None
        return self._code


def run_compiled(code: CodeType, path: str) -> None:
    """What `runpy.run_path(path, run_name="__main__")` does with the script's code."""
    module = types.ModuleType("__main__")
    module.__dict__.update(__file__=path, __cached__=None, __loader__=None, __package__="", __spec__=None)
    sys.modules["__main__"] = module
    exec(code, module.__dict__)


def load_launch(path: str) -> types.ModuleType:
    """mcpgym's `common/launch.py` (the parent-death signal), by its path: standard library only."""
    spec = importlib.util.spec_from_file_location("_mcpgym_launch", path)
    if spec is None or spec.loader is None:
        raise SystemExit(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def enter_episode(target: list[str], folder: str | None) -> list[str]:
    """In the child: the episode folder in place of ${MCPGYM_EPISODE_DIR}, in its arguments and environment."""
    if folder is None:
        return target
    for key, value in list(os.environ.items()):
        if PLACEHOLDER in value:
            os.environ[key] = value.replace(PLACEHOLDER, folder)
    os.environ[EPISODE_VAR] = folder
    return [arg.replace(PLACEHOLDER, folder) for arg in target]


def run_child(
    target: list[str],
    conn_fd: int,
    control_fd: int,
    compiled: CodeType | None,
    launch: types.ModuleType,
    zygote: int,
    folder: str | None = None,
) -> None:
    """In the forked child: its own session, death with the zygote, the socket as stdin/stdout,
    then the script as __main__."""
    code = 0
    try:
        os.setsid()  # its own process group: stopping it takes whatever the server starts
        launch.die_with_parent(zygote)
        os.close(control_fd)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)  # the server may run subprocesses of its own
        signal.signal(signal.SIGINT, signal.default_int_handler)
        os.dup2(conn_fd, 0)
        os.dup2(conn_fd, 1)
        os.close(conn_fd)
        gc.unfreeze()
        bound = enter_episode(target, folder)
        if bound[0] != target[0]:
            compiled = None  # the script itself is in the episode folder: the zygote compiled nothing
        target = bound
        if target[0] == "-m":
            sys.argv = [target[1], *target[2:]]
            runpy.run_module(target[1], run_name="__main__", alter_sys=True)
        else:
            sys.argv = list(target)
            if compiled is not None:
                run_compiled(compiled, target[0])
            else:
                runpy.run_path(target[0], run_name="__main__")
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        if not isinstance(exc.code, int | None):
            print(exc.code, file=sys.stderr)
    except BaseException:  # report like the interpreter would, then exit 1
        traceback.print_exc()
        code = 1
    try:
        atexit._run_exitfuncs()  # what a normal interpreter exit runs, then no second teardown
        sys.stdout.flush()
        sys.stderr.flush()
    finally:
        os._exit(code)


def serve(control_fd: int, target: list[str], launch: types.ModuleType) -> None:
    script = Script(target[0]) if target[0] != "-m" else None
    zygote = os.getpid()
    control = socket.socket(fileno=control_fd)
    control.sendall(READY)
    while True:
        try:
            message, fds, _flags, _addr = socket.recv_fds(control, 1, 4)
        except (ConnectionError, OSError):
            return
        if not message:  # the client closed the control socket: nobody will ask again
            for fd in fds:
                os.close(fd)
            return
        try:
            folder = _read_folder(control) if message == FORK_IN else None
        except (ConnectionError, OSError, UnicodeError):
            return
        if len(fds) != 1:
            for fd in fds:
                os.close(fd)
            control.sendall(REPLY.pack(-22))  # EINVAL
            continue
        conn_fd = fds[0]
        compiled = script.code() if script is not None else None
        try:
            pid = os.fork()
        except OSError as exc:
            os.close(conn_fd)
            control.sendall(REPLY.pack(-(exc.errno or 1)))
            continue
        if pid == 0:
            run_child(target, conn_fd, control.fileno(), compiled, launch, zygote, folder)
        os.close(conn_fd)
        # A pidfd lets the client wait for and signal exactly this child, even after the kernel
        # reaps it (SIGCHLD is ignored below) and the pid could name another process.
        pidfd = os.pidfd_open(pid) if hasattr(os, "pidfd_open") else None
        try:
            socket.send_fds(control, [REPLY.pack(pid)], [pidfd] if pidfd is not None else [])
        finally:
            if pidfd is not None:
                os.close(pidfd)


def _read_exactly(control: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = control.recv(size - len(data))
        if not chunk:
            raise ConnectionError("control socket closed")
        data += chunk
    return data


def _read_folder(control: socket.socket) -> str:
    (size,) = PATH_LEN.unpack(_read_exactly(control, PATH_LEN.size))
    return os.fsdecode(_read_exactly(control, size))


def main() -> None:
    if len(sys.argv) < 6 or sys.argv[4] != "--":
        raise SystemExit("usage: _zygote.py CONTROL_FD PARENT_PID LAUNCH_PY -- script.py ARGS... | -m module ARGS...")
    control_fd, parent = int(sys.argv[1]), int(sys.argv[2])
    launch = load_launch(sys.argv[3])
    launch.die_with_parent(parent)
    target = sys.argv[5:]
    # Children are reaped by the kernel: the zygote never waits on them, and none stays a zombie.
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)
    sys.argv = list(target)  # as the script will see it, in case an import looks
    # sys.path[0] is this file's folder (mcpgym's envs/, whose module names would shadow the
    # server's); make it the script's, so the preload and the child resolve imports alike.
    sys.path[0] = script_dir(target)
    preload(target)
    gc.collect()
    gc.freeze()  # the preloaded heap is never scanned again, so children do not copy its pages
    serve(control_fd, target, launch)


if __name__ == "__main__":
    main()
