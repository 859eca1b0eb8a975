"""Per-category accuracy and the leaderboard's aggregates (bfcl-eval's eval_runner_helper).

How the leaderboard folds categories into its columns:

- Non-Live overall: the unweighted mean of simple (itself the unweighted mean of
  simple_python, simple_java, simple_javascript), multiple, parallel and
  parallel_multiple;
- Live overall: the mean over the live AST categories weighted by entry count
  (live_simple, live_multiple, live_parallel, live_parallel_multiple);
- Irrelevance: the unweighted mean of irrelevance and live_irrelevance;
  Relevance: live_relevance;
- Multi-Turn overall: the unweighted mean of the four multi_turn categories;
- Overall: 10% Non-Live + 10% Live + 10% Irrelevance + 30% Multi-Turn + 40% Agentic.

A category that was not run counts as 0 with its full size (so weighted means
stay the leaderboard's), and every aggregate that includes one is shown as N/A,
exactly as the leaderboard does. With `--limit`, counts are those of the run.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from pydantic import BaseModel

NA = "N/A"


class CategoryScore(BaseModel):
    category: str
    correct: int
    total: int

    @property
    def accuracy(self) -> float:
        return self.correct / self.total if self.total else 0.0


class Score(BaseModel):
    """An accuracy with the count it stands on; `complete` is False when a member was not run (shown N/A)."""

    accuracy: float
    total: int
    complete: bool = True

    def display(self) -> str:
        return f"{100 * self.accuracy:.2f}" if self.complete else NA


def _weighted(parts: Sequence[Score]) -> Score:
    total = sum(part.total for part in parts)
    accuracy = sum(part.accuracy * part.total for part in parts) / total if total else 0.0
    return Score(accuracy=accuracy, total=total, complete=all(part.complete for part in parts))


def _unweighted(parts: Sequence[Score]) -> Score:
    return Score(
        accuracy=sum(part.accuracy for part in parts) / len(parts),
        total=sum(part.total for part in parts),
        complete=all(part.complete for part in parts),
    )


def _percentage(parts: Sequence[Score], weights: Sequence[float]) -> Score:
    norm = sum(weights)
    return Score(
        accuracy=sum(part.accuracy * weight / norm for part, weight in zip(parts, weights, strict=True)),
        total=sum(part.total for part in parts),
        complete=all(part.complete for part in parts),
    )


def leaderboard_summary(
    scores: dict[str, CategoryScore], size_of: Callable[[str], int] | None = None
) -> dict[str, Score]:
    """The leaderboard's columns from per-category scores. `size_of(category)` gives the full size of a
    category that was not run (0 when not given)."""

    def get(category: str) -> Score:
        if category in scores:
            return Score(accuracy=scores[category].accuracy, total=scores[category].total)
        return Score(accuracy=0.0, total=size_of(category) if size_of else 0, complete=False)

    simple = _unweighted([get("simple_python"), get("simple_java"), get("simple_javascript")])
    non_live_parts = [simple, get("multiple"), get("parallel"), get("parallel_multiple")]
    non_live = _unweighted(non_live_parts)
    live = _weighted([get("live_simple"), get("live_multiple"), get("live_parallel"), get("live_parallel_multiple")])
    irrelevance = _unweighted([get("irrelevance"), get("live_irrelevance")])
    multi_turn = _unweighted(
        [
            get("multi_turn_base"),
            get("multi_turn_miss_func"),
            get("multi_turn_miss_param"),
            get("multi_turn_long_context"),
        ]
    )
    agentic = Score(accuracy=0.0, total=0, complete=False)  # web search + memory: not run by mcpgym
    overall = _percentage([non_live, live, irrelevance, multi_turn, agentic], [10, 10, 10, 30, 40])
    return {
        "overall": overall,
        "non_live": non_live,
        "non_live_simple": simple,
        "live": live,
        "irrelevance": irrelevance,
        "relevance": get("live_relevance"),
        "multi_turn": multi_turn,
    }
