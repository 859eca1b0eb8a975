"""The BFCL multi-turn server out of process: a stdio command, or an HTTP server for a block."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from envs.config import StdioServer

REPO = Path(__file__).resolve().parents[2]


def stdio_server() -> StdioServer:
    """The server as a stdio command (one process per session)."""
    return StdioServer(
        command=sys.executable, args=["-m", "envs.bfcl_mt.server", "--transport", "stdio"], cwd=str(REPO)
    )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def http_server(startup_timeout_s: float = 60.0) -> Iterator[str]:
    """Run the server as its own process over streamable HTTP; yields its MCP URL."""
    port = _free_port()
    command = [sys.executable, "-m", "envs.bfcl_mt.server", "--transport", "http", "--port", str(port)]
    process = subprocess.Popen(command, cwd=REPO)
    try:
        deadline = time.monotonic() + startup_timeout_s
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2):
                    break
            except OSError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise RuntimeError("the BFCL multi-turn server did not start") from None
                time.sleep(0.3)
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
