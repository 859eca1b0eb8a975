"""The GRPO run's state on disk (`state.json`), so `--resume` continues where a run stopped.

Written atomically after every phase and every step: a crash or Ctrl-C at any moment leaves the
last completed step recorded. ART's checkpoints hold the weights; this holds the loop around them.
"""

from __future__ import annotations

import json
import signal
import sys
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from common.files import write_private_atomic
from common.redact import redact_url


class BestCheckpoint(BaseModel):
    step: int
    val_success: float
    path: Path


class LoopState(BaseModel):
    model_config = ConfigDict(validate_assignment=True)  # `state.config = ...` is redacted too

    config: dict[str, Any] = Field(default_factory=dict)
    iteration: int = 0  # GRPO iterations done (a step with no signal counts, without a checkpoint)
    evals: dict[str, dict[str, Any]] = Field(default_factory=dict)  # label -> EvalReport (json)
    probe_success: float | None = None
    warm_start: dict[str, Any] | None = None  # what was done, once done (or skipped)
    best: BestCheckpoint | None = None
    last_checkpoint: Path | None = None
    finished: bool = False
    phase_seconds: dict[str, float] = Field(default_factory=dict)  # train.phase_clock: own seconds per phase

    @field_validator("config")
    @classmethod
    def _redacted(cls, config: dict[str, Any]) -> dict[str, Any]:
        """The run's flags as the file may keep them: a URL (`--judge-base-url`,
        `--teacher-base-url`) redacted, since a key may sit in its query or path."""
        return {key: redact_url(value) if _is_url(value) else value for key, value in config.items()}

    @classmethod
    def load(cls, path: Path) -> LoopState:
        return cls.model_validate(json.loads(path.read_text()))

    def save(self, path: Path) -> None:
        write_private_atomic(path, self.model_dump_json(indent=2) + "\n")


def _is_url(value: Any) -> bool:
    return isinstance(value, str) and "://" in value


class StopFlag:
    """Ctrl-C asks the loop to stop after the current step; a second Ctrl-C interrupts at once.

    The first SIGINT sets the flag and puts the previous handler back, so the next one is Python's
    own KeyboardInterrupt."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: Any = None

    def request(self, *_: Any) -> None:
        if not self.requested:
            print("\nstopping after the current step (Ctrl-C again to abort now)", file=sys.stderr, flush=True)
        self.requested = True
        self.uninstall()

    def install(self) -> None:
        # A plain signal handler (not the event loop's) runs as soon as the signal arrives, so a
        # Ctrl-C between two steps is seen before the next one starts.
        try:
            self._previous = signal.signal(signal.SIGINT, self.request)
        except ValueError:  # not the main thread: no Ctrl-C handling here
            self._previous = None

    def uninstall(self) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
            self._previous = None
