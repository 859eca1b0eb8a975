"""BFCL multi-turn entries as mcpgym tasks, and the env's fixed train/test split.

A task carries its whole conversation: the first user message as `question`, the later user
turns as `follow_ups`, the entry's scenario as a `setup` call of the server's hidden
`bfcl_load_scenario` tool, and the tools offered at first: the functions of the entry's
involved APIs, less the ones `miss_func` holds out. A held-out turn (an empty user turn in the
data) becomes, as in the leaderboard's FC handler, the message "I have updated some more
functions you can choose from. What about now?" with the held-out functions added to the tools.

The split is by entry number and the same in every category: entries whose number is a
multiple of 4 are `test` (50 per category, 200 in all), the others `train` (600). The four
categories are variants of one set of 200 scenarios (entry n of each is scenario n), so a
scenario is never in both splits. `all` is every entry, for the leaderboard's full evaluation.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from contracts import FollowUp, SetupCall, Task

from . import data
from .server import SETUP_TOOL

SPLITS = ("train", "test", "all")
TEST_EVERY = 4


def entry_number(entry_id: str) -> int:
    return int(entry_id.rsplit("_", 1)[1])


def split_of(entry_id: str) -> str:
    return "test" if entry_number(entry_id) % TEST_EVERY == 0 else "train"


def _user_text(messages: list[dict[str, Any]], where: str) -> str:
    if len(messages) != 1 or messages[0].get("role") != "user":
        raise ValueError(f"{where}: expected one user message, got {[m.get('role') for m in messages]}")
    return str(messages[0]["content"])


def task_of(entry: dict[str, Any]) -> Task:
    """One entry (as `data.entries` gives it) -> its Task."""
    entry_id = entry["id"]
    missed: dict[str, list[str]] = entry.get("missed_function", {})
    held_out = {name for names in missed.values() for name in names}
    offered = [
        doc["name"]
        for class_name in entry["involved_classes"]
        for doc in data.func_docs(class_name)
        if doc["name"] not in held_out
    ]
    follow_ups = []
    for index, messages in enumerate(entry["question"][1:], start=1):
        if str(index) in missed:
            added = [{"role": "user", "content": data.ADDED_FUNCTIONS_PROMPT}]
            follow_ups.append(FollowUp(messages=added, add_tools=missed[str(index)]))
        else:
            follow_ups.append(FollowUp(messages=[dict(m) for m in messages]))
    return Task(
        id=entry_id,
        question=_user_text(entry["question"][0], entry_id),
        kind="multi_turn",
        split=split_of(entry_id),
        setup=[SetupCall(tool=SETUP_TOOL, arguments={"entry_id": entry_id})],
        tools=offered,
        follow_ups=follow_ups,
        metadata={
            "bfcl_id": entry_id,
            "category": data.category_of(entry_id),
            "involved_classes": list(entry["involved_classes"]),
            "user_turns": len(entry["question"]),
        },
    )


def load_tasks(categories: Iterable[str], split: str) -> list[Task]:
    """The tasks of the categories in one split, category by category in file order."""
    if split not in SPLITS:
        raise KeyError(split)
    out = []
    for category in categories:
        for entry in data.entries(category):
            if split == "all" or split_of(entry["id"]) == split:
                out.append(task_of(entry))
    return out


class TaskLoader:
    """The env's tasks argument: a loader by split that also lists its splits."""

    def __init__(self, categories: Iterable[str]) -> None:
        self.categories = list(categories)
        for category in self.categories:
            data.check_category(category)

    def splits(self) -> list[str]:
        return list(SPLITS)

    def __call__(self, split: str) -> list[Task]:
        return load_tasks(self.categories, split)
