"""The Berkeley Function Calling Leaderboard (BFCL v4) as a ready evaluation: data, tools, checker, scores.

Pure functions, no policy calls (the runner that asks a model is `train.bfcl`):

    from judges.bfcl import load_category, to_openai_tools, check_reply
    entry = load_category("simple_python", limit=1)[0]
    tools = to_openai_tools(entry.functions, entry.category)
    verdict = check_reply(entry, [{"calculate_triangle_area": '{"base": 10, "height": 5}'}])

The data comes from the installed `bfcl-eval` wheel (`pip install --no-deps bfcl-eval==2026.3.23`).
"""

from .checker import CheckResult, Reply, check_reply, decode_reply, reply_from_calls
from .data import (
    ALL_CATEGORIES,
    GROUPS,
    LIVE,
    MULTI_TURN,
    NON_LIVE,
    SINGLE_TURN,
    BfclEntry,
    BfclNotInstalled,
    category_size,
    data_dir,
    expand_categories,
    installed_version,
    kind_of,
    language_of,
    load_category,
)
from .scores import CategoryScore, leaderboard_summary
from .tools import openai_name, to_openai_tools, with_language_hints

__all__ = [
    "ALL_CATEGORIES",
    "GROUPS",
    "LIVE",
    "MULTI_TURN",
    "NON_LIVE",
    "SINGLE_TURN",
    "BfclEntry",
    "BfclNotInstalled",
    "CategoryScore",
    "CheckResult",
    "Reply",
    "category_size",
    "check_reply",
    "data_dir",
    "decode_reply",
    "expand_categories",
    "installed_version",
    "kind_of",
    "language_of",
    "leaderboard_summary",
    "load_category",
    "openai_name",
    "reply_from_calls",
    "to_openai_tools",
    "with_language_hints",
]
