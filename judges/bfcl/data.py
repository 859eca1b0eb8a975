"""The BFCL v4 data, read from the installed `bfcl-eval` wheel (never copied into this repo).

The leaderboard ships its question files and possible answers inside the PyPI
package `bfcl-eval` (`bfcl_eval/data/BFCL_v4_<category>.json` and
`bfcl_eval/data/possible_answer/...`, JSON lines). The wheel's dependency list
is heavy (a pinned numpy, CUDA torch through sentence-transformers, a dozen
vendor SDKs), but its data needs none of it: install it with
`pip install --no-deps bfcl-eval==2026.3.23`. We locate the package with
`importlib.util.find_spec`, which finds it without importing it, so nothing
of bfcl_eval's code runs here.

Entries and possible answers are aligned by position, as the leaderboard does
(`_subset_entries_by_model_ids`): some ground-truth ids differ in form from
the prompt ids, the order never does.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
from functools import cache
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from common.cli import UsageError

BFCL_PACKAGE = "bfcl_eval"
BFCL_DIST = "bfcl-eval"
BFCL_VERSION = "2026.3.23"  # the wheel the agreement test was run against
VERSION_PREFIX = "BFCL_v4"
INSTALL_HINT = f"pip install --no-deps {BFCL_DIST}=={BFCL_VERSION}"

Kind = Literal["ast", "irrelevance", "relevance", "multi_turn"]
Language = Literal["python", "java", "javascript"]

NON_LIVE = [
    "simple_python",
    "simple_java",
    "simple_javascript",
    "multiple",
    "parallel",
    "parallel_multiple",
    "irrelevance",
]
LIVE = ["live_simple", "live_multiple", "live_parallel", "live_parallel_multiple", "live_irrelevance", "live_relevance"]
MULTI_TURN = ["multi_turn_base", "multi_turn_miss_func", "multi_turn_miss_param", "multi_turn_long_context"]
SINGLE_TURN = NON_LIVE + LIVE
ALL_CATEGORIES = SINGLE_TURN + MULTI_TURN

# Names a user may pass in --categories that stand for several categories (the
# leaderboard's own collections, plus "simple" for the three simple_* files).
GROUPS: dict[str, list[str]] = {
    "simple": ["simple_python", "simple_java", "simple_javascript"],
    "non_live": NON_LIVE,
    "live": LIVE,
    "single_turn": SINGLE_TURN,
    "multi_turn": MULTI_TURN,
    "python": [c for c in SINGLE_TURN if c not in ("simple_java", "simple_javascript")],
    "non_python": ["simple_java", "simple_javascript"],
    "all": ALL_CATEGORIES,
}


class BfclNotInstalled(UsageError):
    """The bfcl-eval package (the data) is missing."""


class BfclEntry(BaseModel):
    """One test entry: the conversation, the function docs and, for AST categories, the possible answers."""

    id: str
    category: str
    question: list[list[dict[str, Any]]]  # turns; single-turn categories have one turn
    functions: list[dict[str, Any]] = Field(default_factory=list)  # BFCL function docs as shipped
    # AST: [{func_name: {param: [possible values]}}]; multi-turn: per turn, the calls as Python text
    ground_truth: list[Any] | None = None


def kind_of(category: str) -> Kind:
    if category.startswith("multi_turn"):
        return "multi_turn"
    if "irrelevance" in category:
        return "irrelevance"
    if "relevance" in category:
        return "relevance"
    return "ast"


def language_of(category: str) -> Language:
    if "java" in category and "javascript" not in category:
        return "java"
    if "javascript" in category:
        return "javascript"
    return "python"


def expand_categories(spec: str) -> list[str]:
    """`"simple,live"` -> the categories, in order, without duplicates; unknown names raise UsageError."""
    out: list[str] = []
    for raw in spec.split(","):
        name = raw.strip()
        if not name:
            continue
        members = GROUPS.get(name, [name] if name in ALL_CATEGORIES else None)
        if members is None:
            known = ", ".join([*GROUPS, *ALL_CATEGORIES])
            raise UsageError(f"unknown BFCL category {name!r} (known: {known})")
        out.extend(member for member in members if member not in out)
    if not out:
        raise UsageError("no BFCL category given")
    return out


@cache
def data_dir() -> Path:
    """`.../site-packages/bfcl_eval/data`; one clear line when the package is absent."""
    spec = importlib.util.find_spec(BFCL_PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    for location in locations:
        path = Path(location) / "data"
        if (path / f"{VERSION_PREFIX}_simple_python.json").is_file():
            return path
    raise BfclNotInstalled(f"BFCL data not found: install it with `{INSTALL_HINT}` (the data only, no dependencies)")


def installed_version() -> str | None:
    try:
        return importlib.metadata.version(BFCL_DIST)
    except importlib.metadata.PackageNotFoundError:
        return None


def _read_lines(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


@cache
def _load(category: str) -> tuple[BfclEntry, ...]:
    root = data_dir()
    prompts = _read_lines(root / f"{VERSION_PREFIX}_{category}.json")
    answers_path = root / "possible_answer" / f"{VERSION_PREFIX}_{category}.json"
    answers = _read_lines(answers_path) if answers_path.is_file() else None
    if answers is not None and len(answers) != len(prompts):
        raise UsageError(f"BFCL data is inconsistent: {category} has {len(prompts)} entries, {len(answers)} answers")
    entries = []
    for index, prompt in enumerate(prompts):
        entries.append(
            BfclEntry(
                id=prompt["id"],
                category=category,
                question=prompt["question"],
                functions=prompt.get("function", []),
                ground_truth=answers[index]["ground_truth"] if answers is not None else None,
            )
        )
    return tuple(entries)


def load_category(category: str, limit: int | None = None) -> list[BfclEntry]:
    """The entries of one category in file order (the first `limit` when given). Copies: callers may mutate."""
    if category not in ALL_CATEGORIES:
        raise UsageError(f"unknown BFCL category {category!r}")
    entries = _load(category)
    chosen = entries if limit is None else entries[:limit]
    return [entry.model_copy(deep=True) for entry in chosen]


def category_size(category: str) -> int:
    return len(_load(category))
