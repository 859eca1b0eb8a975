"""The API key on every route of a vLLM server, loaded by vLLM itself (`--middleware vllm_guard.KeyGuard`).

vLLM's own check (`VLLM_API_KEY`, `--api-key`) guards only paths under /v1, /v2, /inference and
/cohere. The same server also answers SageMaker's `/invocations` (chat completions) and, with
runtime LoRA updating on, `POST /adapters` (load any adapter folder under any name) without a key,
which is exactly what poisons `agent@N`. This middleware asks for `Authorization: Bearer
$VLLM_API_KEY` on every path except the read-only `/health` and `/metrics` that probes and
Prometheus poll, and refuses to serve at all when the key is unset.

It reads the key from the environment (never argv) and imports nothing but the standard library,
so the same file runs inside mcpgym's servers (`serve.vllm_guard`) and the stock vLLM image of
deploy/ (a byte-identical copy, checked by tests/test_security_keys.py).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

KEY_ENV = "VLLM_API_KEY"
OPEN_PATHS = frozenset({"/health", "/metrics"})  # GET only: liveness and Prometheus, nothing to steal
_UNAUTHORIZED = json.dumps({"error": {"message": "Unauthorized", "type": "Unauthorized", "code": 401}}).encode()


def _digest(text: str) -> bytes:
    return hashlib.sha256(text.encode("utf-8")).digest()


class KeyGuard:
    """ASGI middleware: `Authorization: Bearer <$VLLM_API_KEY>` or 401, except GET /health and /metrics."""

    def __init__(self, app: ASGIApp) -> None:
        key = os.environ.get(KEY_ENV, "")
        if not key:
            raise RuntimeError(f"{KEY_ENV} is not set: this vLLM server refuses to serve without a key")
        self.app = app
        self._key = _digest(key)

    def allowed(self, scope: Scope) -> bool:
        path = scope.get("path", "")
        root = scope.get("root_path", "")
        if root and path.startswith(root):
            path = path[len(root) :]
        method = scope.get("method", "GET")
        if method == "OPTIONS":  # CORS preflight carries no credentials; the route itself still needs the key
            return True
        if method in ("GET", "HEAD") and path in OPEN_PATHS:
            return True
        for name, value in scope.get("headers", []):
            if name.lower() == b"authorization":
                scheme, _, token = value.decode("latin-1").partition(" ")
                return scheme.lower() == "bearer" and hmac.compare_digest(_digest(token.strip()), self._key)
        return False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or self.allowed(scope):
            await self.app(scope, receive, send)
            return
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})
            return
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(_UNAUTHORIZED)).encode())]
        await send({"type": "http.response.start", "status": 401, "headers": headers})
        await send({"type": "http.response.body", "body": _UNAUTHORIZED})
