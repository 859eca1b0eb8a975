"""The BFCL v4 multi-turn data and APIs, read from the installed `bfcl-eval` wheel.

The leaderboard ships, in `bfcl_eval/`: the 800 multi-turn entries (`data/BFCL_v4_multi_turn_*.json`,
JSON lines with `initial_config`, `involved_classes`, `question` (a list of user turns) and, for
`miss_func`, `missed_function`), their per-turn ground truth (`data/possible_answer/`), the function
docs of each API (`data/multi_turn_func_doc/`) and the eight simulated APIs themselves
(`eval_checker/multi_turn_eval/func_source_code/`). Nothing is copied into this repo.

This module imports the API classes and the leaderboard's constants (plain Python, no heavy
dependencies); it never imports the wheel's model handlers (they need tree_sitter and vendor SDKs).
"""

from __future__ import annotations

import copy
import importlib
import importlib.util
import json
from functools import cache
from pathlib import Path
from typing import Any

from contracts import EnvConfigError

PACKAGE = "bfcl_eval"
INSTALL_HINT = "pip install --no-deps bfcl-eval==2026.3.23"
PREFIX = "BFCL_v4"
CATEGORIES = ("multi_turn_base", "multi_turn_miss_func", "multi_turn_miss_param", "multi_turn_long_context")
# The leaderboard's per-user-turn step limit (bfcl_eval.constants.default_prompts.MAXIMUM_STEP_LIMIT):
# a turn in which the model makes calls in more steps than this ends the whole conversation.
MAXIMUM_STEP_LIMIT = 20
# What the leaderboard's FC handler sends as the user turn where held-out functions come back
# (bfcl_eval.constants.default_prompts.DEFAULT_USER_PROMPT_FOR_ADDITIONAL_FUNCTION_FC).
ADDED_FUNCTIONS_PROMPT = "I have updated some more functions you can choose from. What about now?"


@cache
def root() -> Path:
    """`.../site-packages/bfcl_eval`; one EnvConfigError line when the wheel is missing."""
    spec = importlib.util.find_spec(PACKAGE)
    for location in list(spec.submodule_search_locations or []) if spec is not None else []:
        path = Path(location)
        if (path / "data" / f"{PREFIX}_multi_turn_base.json").is_file():
            return path
    raise EnvConfigError(f"BFCL data not found: install it with `{INSTALL_HINT}` (the data only, no dependencies)")


def _read_lines(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def check_category(category: str) -> None:
    if category not in CATEGORIES:
        raise EnvConfigError(f"unknown BFCL multi-turn category {category!r} (known: {', '.join(CATEGORIES)})")


@cache
def _entries(category: str) -> tuple[dict[str, Any], ...]:
    check_category(category)
    data = root() / "data"
    prompts = _read_lines(data / f"{PREFIX}_{category}.json")
    answers = _read_lines(data / "possible_answer" / f"{PREFIX}_{category}.json")
    if len(prompts) != len(answers):
        counts = f"{len(prompts)} entries, {len(answers)} answers"
        raise EnvConfigError(f"BFCL data is inconsistent: {category} has {counts}")
    # Aligned by position, as the leaderboard does; the ground truth goes with its entry.
    pairs = zip(prompts, answers, strict=True)
    return tuple({**prompt, "ground_truth": answer["ground_truth"]} for prompt, answer in pairs)


def entries(category: str) -> list[dict[str, Any]]:
    """The entries of one category in file order, each with its `ground_truth` (deep copies)."""
    return copy.deepcopy(list(_entries(category)))


@cache
def _by_id() -> dict[str, dict[str, Any]]:
    return {entry["id"]: entry for category in CATEGORIES for entry in _entries(category)}


def entry(entry_id: str) -> dict[str, Any]:
    """One entry by its id (`multi_turn_base_0`); shared, do not mutate."""
    found = _by_id().get(entry_id)
    if found is None:
        raise EnvConfigError(f"unknown BFCL multi-turn entry {entry_id!r}")
    return found


def category_of(entry_id: str) -> str:
    return entry_id.rsplit("_", 1)[0]


def is_long_context(entry_id: str) -> bool:
    """As the leaderboard decides it (`"long_context" in test_category or "composite" in ...`)."""
    category = category_of(entry_id)
    return "long_context" in category or "composite" in category


@cache
def _backend() -> tuple[dict[str, str], dict[str, str], tuple[str, ...]]:
    config = importlib.import_module(f"{PACKAGE}.constants.executable_backend_config")
    return config.MULTI_TURN_FUNC_DOC_FILE_MAPPING, config.CLASS_FILE_PATH_MAPPING, tuple(config.STATELESS_CLASSES)


# The eight APIs of the multi-turn categories (the wheel's mapping also lists agentic ones).
API_CLASSES = (
    "GorillaFileSystem",
    "MathAPI",
    "MessageAPI",
    "TwitterAPI",
    "TicketAPI",
    "TradingBot",
    "TravelAPI",
    "VehicleControlAPI",
)


@cache
def func_docs(class_name: str) -> tuple[dict[str, Any], ...]:
    """The leaderboard's function docs of one API class, as shipped."""
    doc_files, _, _ = _backend()
    if class_name not in doc_files:
        raise EnvConfigError(f"unknown BFCL API class {class_name!r}")
    return tuple(_read_lines(root() / "data" / "multi_turn_func_doc" / doc_files[class_name]))


def api_class(class_name: str) -> type:
    _, modules, _ = _backend()
    return getattr(importlib.import_module(modules[class_name]), class_name)


def new_instance(class_name: str, initial_config: dict[str, Any], *, long_context: bool) -> Any:
    """One API instance in its starting state, made exactly as the leaderboard's
    `execute_multi_turn_func_call` makes it (stateless classes take no scenario)."""
    _, _, stateless = _backend()
    instance = api_class(class_name)()
    if class_name not in stateless:
        instance._load_scenario(copy.deepcopy(initial_config.get(class_name, {})), long_context=long_context)
    return instance
