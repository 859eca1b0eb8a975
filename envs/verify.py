"""The default verifier: is a final answer text right for a task with a checkable answer?

- a number: some number in the text equals it within `task.tolerance` (relative);
- a string: it appears in the text, ignoring case, spaces and punctuation;
- a dict or list: every value (recursively) is found in the text as above;
- a bool: "yes"/"true" or "no"/"false";
- `no_tool` tasks also fail if the policy called a tool: knowing when not to
  call is part of the task.

Numbers are read with thousands separators and signs ("1,234.5", "-162").
A text that lists very many numbers cannot pass by spraying guesses.
"""

from __future__ import annotations

import math
import re
from typing import Any

from contracts import Task, ToolCall, Verdict

_NUMBER = re.compile(r"(?<![\w.])[-+−]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:[eE][-+]?\d+)?")
MAX_EXTRA_NUMBERS = 12


def numbers_in(text: str) -> list[float]:
    found = []
    for match in _NUMBER.finditer(text):
        token = match.group().replace(",", "").replace("−", "-")
        try:
            found.append(float(token))
        except ValueError:
            continue
    return found


def _norm(text: str) -> str:
    return re.sub(r"[\W_]+", " ", text.lower()).strip()


def close(a: float, b: float, tolerance: float) -> bool:
    return math.isclose(a, b, rel_tol=tolerance, abs_tol=max(tolerance * 1e-3, 1e-9))


def _leaves(value: Any) -> list[Any]:
    if isinstance(value, dict):
        return [leaf for v in value.values() for leaf in _leaves(v)]
    if isinstance(value, list | tuple):
        return [leaf for v in value for leaf in _leaves(v)]
    return [value]


def _found(expected: Any, text: str, numbers: list[float], tolerance: float) -> bool:
    if isinstance(expected, bool):
        words = set(_norm(text).split())
        return bool(words & ({"yes", "true"} if expected else {"no", "false"}))
    if isinstance(expected, int | float):
        return any(close(n, float(expected), tolerance) for n in numbers)
    if expected is None:
        return True
    want = _norm(str(expected))
    if want and want in _norm(text):
        return True
    as_number = numbers_in(str(expected))
    return (
        len(as_number) == 1
        and _norm(str(expected)) == _norm(f"{as_number[0]:g}")
        and any(close(n, as_number[0], tolerance) for n in numbers)
    )


def verify_answer(task: Task, answer: str, calls: list[ToolCall]) -> Verdict:
    if task.answer is None:
        return Verdict(success=False, score=0.0, reason="open task: no checkable answer")
    text = answer or ""
    if task.kind == "no_tool" and calls:
        return Verdict(success=False, score=0.0, reason=f"no tool was needed, but {len(calls)} call(s) were made")
    leaves = _leaves(task.answer)
    numbers = numbers_in(text)
    if len(numbers) > len(leaves) + MAX_EXTRA_NUMBERS:
        return Verdict(success=False, score=0.0, reason=f"answer lists {len(numbers)} numbers: too many to check")
    hits = [_found(leaf, text, numbers, task.tolerance) for leaf in leaves]
    score = sum(hits) / len(hits) if hits else 0.0
    if all(hits):
        return Verdict(success=True, score=1.0, reason="answer matches")
    missing = [str(leaf) for leaf, hit in zip(leaves, hits, strict=True) if not hit]
    return Verdict(success=False, score=score, reason=f"answer lacks {', '.join(missing[:3])}")
