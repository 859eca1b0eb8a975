"""Judge verdicts cached on disk by content hash, so a rerun over the same trajectories costs nothing.

The key hashes everything the verdict depends on (judge model, rubric, the
exact messages and tools the judge sees), so a changed trajectory or rubric
is a miss. One JSON file per verdict, written atomically (a crash leaves no
half file), in a directory shared by concurrent runs.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from common.files import write_private_atomic


def content_key(*parts: Any) -> str:
    text = json.dumps(parts, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "mcpgym" / "judges"


class VerdictCache:
    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)

    def _path(self, key: str) -> Path:
        return self.directory / key[:2] / f"{key}.json"

    def get(self, key: str) -> dict[str, Any] | None:
        path = self._path(key)
        try:
            return json.loads(path.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return None  # absent, or unreadable: judge again rather than fail

    def put(self, key: str, value: dict[str, Any]) -> None:
        path = self._path(key)
        write_private_atomic(path, json.dumps(value, ensure_ascii=False), durable=False)
