"""Where an environment's tasks come from: a dict of splits, a loader, or a JSONL file.

A tasks JSONL holds one task per line: full `Task` objects (with `split` to
say which split; lines without one are `train`) or plain `{"question": ...}`
lines, which get an id from the file name and line number.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from contracts import EnvConfigError, Task

TasksArg = Mapping[str, Sequence[Task | dict[str, Any]]] | Callable[[str], Sequence[Task | dict[str, Any]]] | str | Path
DEFAULT_SPLITS = ("train", "val", "test")


def _as_task(value: Task | dict[str, Any], *, where: str, default_id: str, split: str | None) -> Task:
    if isinstance(value, Task):
        return value
    if not isinstance(value, dict):
        raise EnvConfigError(f"{where}: a task must be an object with a 'question', got {type(value).__name__}")
    data = dict(value)
    data.setdefault("id", default_id)
    if split is not None:
        data.setdefault("split", split)
    if "kind" not in data and data.get("answer") is None and not data.get("expected_calls"):
        data["kind"] = "open"  # nothing to check it against: an open question
    try:
        return Task.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = ".".join(str(p) for p in err["loc"])
        reason = "unknown key" if err["type"] == "extra_forbidden" else err["msg"]
        raise EnvConfigError(f"{where}: {loc}: {reason}") from None


def read_tasks_file(path: str | Path) -> dict[str, list[Task]]:
    """A tasks JSONL -> tasks by split. Every problem is one EnvConfigError line (file:line)."""
    path = Path(path)
    if not path.is_file():
        raise EnvConfigError(f"no such tasks file: {path}")
    splits: dict[str, list[Task]] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            value = json.loads(line)
        except json.JSONDecodeError as exc:
            raise EnvConfigError(f"{where}: not a JSON line ({exc.msg})") from None
        task = _as_task(value, where=where, default_id=f"{path.stem}-{number:05d}", split=None)
        splits.setdefault(task.split or "train", []).append(task)
    if not splits:
        raise EnvConfigError(f"{path}: no tasks in file")
    return splits


class TaskSource:
    """Tasks by split from whichever form the env was given, loaded once per split."""

    def __init__(self, tasks: TasksArg | None, *, env_name: str) -> None:
        self._env = env_name
        self._loader: Callable[[str], Sequence[Task | dict[str, Any]]] | None = None
        self._cache: dict[str, list[Task]] = {}
        self._known: list[str] | None = None
        if tasks is None:
            self._known = []
        elif isinstance(tasks, str | Path):
            self._cache = read_tasks_file(tasks)
            self._known = list(self._cache)
        elif isinstance(tasks, Mapping):
            self._cache = {
                str(split): [
                    _as_task(t, where=f"env '{env_name}' split '{split}'", default_id=f"{split}-{i:05d}", split=split)
                    for i, t in enumerate(items)
                ]
                for split, items in tasks.items()
            }
            self._known = list(self._cache)
        elif callable(tasks):
            self._loader = tasks
            declared = getattr(tasks, "splits", None)
            if declared is not None:
                self._known = list(declared() if callable(declared) else declared)
        else:
            raise EnvConfigError(f"env '{env_name}': tasks must be a dict of splits, a loader, or a JSONL path")

    def splits(self) -> list[str]:
        if self._known is None:
            # A bare loader cannot list its splits: ask it for the usual ones.
            self._known = [s for s in DEFAULT_SPLITS if self._try_load(s)]
        return list(self._known)

    def _try_load(self, split: str) -> bool:
        try:
            return bool(self.tasks(split))
        except EnvConfigError:
            return False

    def tasks(self, split: str) -> list[Task]:
        if split in self._cache:
            return self._cache[split]
        if self._loader is None:
            known = ", ".join(self._known or []) or "none"
            raise EnvConfigError(f"env '{self._env}' has no split '{split}' (splits: {known})")
        try:
            items = self._loader(split)
        except (KeyError, ValueError, FileNotFoundError, LookupError) as exc:
            raise EnvConfigError(f"env '{self._env}' has no split '{split}' ({exc})") from None
        where = f"env '{self._env}' split '{split}'"
        loaded = [_as_task(t, where=where, default_id=f"{split}-{i:05d}", split=split) for i, t in enumerate(items)]
        self._cache[split] = loaded
        return loaded
