"""The remote backends: training runs on a hosted service, nothing here needs a GPU.

- `serverless`: ART's `ServerlessBackend`, W&B Training (OpenPipe's hosted ART); the key is
  `WANDB_API_KEY`.
- `tinker`: ART's `TinkerNativeBackend` on Thinking Machines' Tinker; the key is `TINKER_API_KEY`,
  and the `tinker` extra brings its client (`pip install -e '.[tinker]'`).

Keys come from the environment only (never a flag, so they stay out of shell history and `ps`).
"""

from __future__ import annotations

import importlib.util
import os
from typing import Any

from .local import BackendUnavailable


def serverless_missing() -> str | None:
    if not os.environ.get("WANDB_API_KEY"):
        return "--backend serverless needs WANDB_API_KEY (a W&B API key with W&B Training access)"
    return None


def make_serverless_backend(*, path: Any = None, **opts: Any) -> Any:
    """`art.ServerlessBackend(**opts)` (`base_url`); `path` is ignored (checkpoints stay remote)."""
    reason = serverless_missing()
    if reason is not None:
        raise BackendUnavailable(reason)
    from art.serverless import ServerlessBackend

    return ServerlessBackend(api_key=os.environ["WANDB_API_KEY"], **opts)


def tinker_missing() -> str | None:
    if not os.environ.get("TINKER_API_KEY"):
        return "--backend tinker needs TINKER_API_KEY (a Tinker API key)"
    missing = [name for name in ("tinker", "tinker_cookbook") if importlib.util.find_spec(name) is None]
    if missing:
        return f"--backend tinker needs the tinker extra (missing: {', '.join(missing)}; pip install -e '.[tinker]')"
    return None


def make_tinker_backend(*, path: Any = None, **opts: Any) -> Any:
    """`art.tinker_native.TinkerNativeBackend(path=..., **opts)`, the key read from TINKER_API_KEY."""
    reason = tinker_missing()
    if reason is not None:
        raise BackendUnavailable(reason)
    from art.tinker_native import TinkerNativeBackend

    return TinkerNativeBackend(path=None if path is None else str(path), **opts)
