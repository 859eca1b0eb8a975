"""SFT data from rollout JSONL: filter by reward, de-duplicate, pick a coreset, mix in replay.

The input is the trajectory JSONL `rollouts.generate` writes (and judges score): the very records
GRPO later groups. Infra failures are never used (they say nothing about the model), unscored
records never pass a reward threshold, and two rollouts that produced the same conversation count
once (the higher reward is kept).

Coresets (`--coreset`, with a target size):
- `random`: a seeded sample.
- `loss_topk`: the examples the current model finds hardest (highest mean loss on assistant tokens);
  the losses come from a callable, `train.sft` computes them with the base model.
- `diversity`: greedy k-center over hashed bag-of-words features of the user question and the tool
  calls made, so near-duplicate questions do not crowd out the rest.
- `hybrid`: half by loss, the other half by diversity among the remaining examples.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import ValidationError

from common.cli import UsageError
from contracts import ModelJsonError, Trajectory, loads_model_json
from rollouts.export import export_messages
from rollouts.jsonl import JsonlFormatError, iter_jsonl

CoresetMethod = Literal["random", "loss_topk", "diversity", "hybrid"]
CORESET_METHODS: tuple[CoresetMethod, ...] = ("random", "loss_topk", "diversity", "hybrid")
_FEATURE_DIM = 512
_WORD = re.compile(r"[a-z0-9_]+")


class SFTDataError(UsageError):
    """The SFT data is unusable (not trajectories, nothing left after filtering)."""


# --------------------------------------------------------------------------- loading and filtering


def read_trajectories(path: str | Path) -> list[Trajectory]:
    """Every trajectory in a JSONL file; a line that is not one is an SFTDataError naming it."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(2, "no such file", str(path))
    records: list[Trajectory] = []
    try:
        for number, raw in enumerate(iter_jsonl(path), start=1):
            try:
                records.append(Trajectory.model_validate(raw))
            except ValidationError:
                raise SFTDataError(f"{path}: record {number} is not a trajectory") from None
    except JsonlFormatError as exc:
        raise SFTDataError(str(exc)) from None
    return records


def usable(traj: Trajectory, *, min_reward: float | None) -> bool:
    """Not an infra failure, has an assistant turn, and (with a threshold) scored at least `min_reward`."""
    if traj.is_infra_failure:
        return False
    if not any(message.get("role") == "assistant" for message in traj.messages):
        return False
    return min_reward is None or (traj.reward is not None and traj.reward >= min_reward)


def conversation_key(traj: Trajectory) -> str:
    """Identity of what SFT would learn from: the tools and the conversation (roles, text, calls)."""
    messages = [
        {
            "role": message.get("role"),
            "content": message.get("content") or "",
            "calls": [
                (call.get("function", {}).get("name"), _canonical_arguments(call.get("function", {}).get("arguments")))
                for call in message.get("tool_calls") or []
            ],
        }
        for message in export_messages(traj)
    ]
    tools = sorted(tool.get("function", tool).get("name", "") for tool in traj.tools)
    blob = json.dumps([tools, messages], sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(blob.encode()).hexdigest()


def _canonical_arguments(arguments: Any) -> Any:
    if isinstance(arguments, str):
        try:
            return json.dumps(loads_model_json(arguments), sort_keys=True)
        except ModelJsonError:
            return arguments
    return json.dumps(arguments, sort_keys=True)


def dedupe(trajs: Sequence[Trajectory]) -> list[Trajectory]:
    """One trajectory per distinct conversation (the highest reward wins), in first-seen order."""
    best: dict[str, Trajectory] = {}
    for traj in trajs:
        key = conversation_key(traj)
        kept = best.get(key)
        if kept is None or (traj.reward or 0.0) > (kept.reward or 0.0):
            best[key] = traj
    return list(best.values())


def load_sft_trajectories(
    path: str | Path,
    *,
    min_reward: float | None,
    env: str | None = None,
    success_only: bool = False,
    deduplicate: bool = True,
) -> list[Trajectory]:
    """The trajectories of `path` fit for SFT: filtered (see `usable`), of `env` when given, de-duplicated.

    Raises SFTDataError when nothing is left, saying what removed the records."""
    records = read_trajectories(path)
    if not records:
        raise SFTDataError(f"{path}: no trajectories in the file")
    if env is not None:
        envs_seen = sorted({traj.env for traj in records})
        records = [traj for traj in records if traj.env == env]
        if not records:
            raise SFTDataError(f"{path}: no trajectories of env {env!r} (found: {', '.join(envs_seen)})")
    kept = [traj for traj in records if usable(traj, min_reward=min_reward) and (traj.success or not success_only)]
    if not kept:
        infra = sum(traj.is_infra_failure for traj in records)
        raise SFTDataError(
            f"{path}: none of {len(records)} trajectories is usable for SFT "
            f"(min reward {min_reward}, {infra} infra failures)"
        )
    return dedupe(kept) if deduplicate else kept


# --------------------------------------------------------------------------- coresets


def features(traj: Trajectory) -> list[float]:
    """A unit vector of hashed words of the user turns and the names/arguments of the calls made."""
    words: list[str] = []
    for message in traj.messages:
        if message.get("role") == "user" and isinstance(message.get("content"), str):
            words += _WORD.findall(message["content"].lower())
        for call in message.get("tool_calls") or []:
            function = call.get("function", {})
            words.append(f"call:{function.get('name')}")
            words += [f"arg:{word}" for word in _WORD.findall(str(function.get("arguments", "")).lower())]
    vector = [0.0] * _FEATURE_DIM
    for word in words:
        digest = hashlib.blake2b(word.encode(), digest_size=8).digest()
        vector[int.from_bytes(digest[:4], "little") % _FEATURE_DIM] += 1.0 if digest[4] & 1 else -1.0
    norm = math.sqrt(sum(value * value for value in vector)) or 1.0
    return [value / norm for value in vector]


def k_center(vectors: Sequence[Sequence[float]], k: int, *, chosen: Sequence[int] = ()) -> list[int]:
    """Greedy k-center: start from `chosen` (or the first point), then repeatedly add the point
    farthest from everything picked so far."""
    picked = list(dict.fromkeys(chosen)) or [0]
    distance = [min(_distance(vector, vectors[index]) for index in picked) for vector in vectors]
    while len(picked) < min(k, len(vectors)):
        remaining = [i for i in range(len(vectors)) if i not in set(picked)]
        index = max(remaining, key=lambda i: (distance[i], -i))
        picked.append(index)
        for i, vector in enumerate(vectors):
            distance[i] = min(distance[i], _distance(vector, vectors[index]))
    return picked


def _distance(a: Sequence[float], b: Sequence[float]) -> float:
    return 1.0 - sum(x * y for x, y in zip(a, b, strict=True))


def select_coreset(
    trajs: Sequence[Trajectory],
    size: int,
    method: CoresetMethod,
    *,
    seed: int = 0,
    losses: Callable[[Sequence[Trajectory]], list[float]] | None = None,
) -> list[Trajectory]:
    """`size` trajectories chosen by `method` (all of them when there are no more than `size`)."""
    if size < 1:
        raise SFTDataError("coreset size must be at least 1")
    if len(trajs) <= size:
        return list(trajs)
    if method == "random":
        return random.Random(seed).sample(list(trajs), size)
    if method in ("loss_topk", "hybrid") and losses is None:
        raise ValueError(f"coreset {method!r} needs per-example losses")
    if method == "loss_topk":
        scores = losses(trajs)  # type: ignore[misc]
        order = sorted(range(len(trajs)), key=lambda i: (-scores[i], i))
        return [trajs[i] for i in sorted(order[:size])]
    vectors = [features(traj) for traj in trajs]
    if method == "diversity":
        return [trajs[i] for i in sorted(k_center(vectors, size))]
    if method == "hybrid":
        scores = losses(trajs)  # type: ignore[misc]
        by_loss = sorted(range(len(trajs)), key=lambda i: (-scores[i], i))[: max(1, size // 2)]
        picked = k_center(vectors, size, chosen=by_loss)
        return [trajs[i] for i in sorted(picked)]
    raise ValueError(f"unknown coreset method {method!r} (choose from {', '.join(CORESET_METHODS)})")


# --------------------------------------------------------------------------- replay


def mix_replay(
    new: Sequence[Trajectory], replay: Sequence[Trajectory], ratio: float, *, seed: int = 0
) -> tuple[list[Trajectory], int]:
    """`new` plus replayed examples making up `ratio` of the mix (as far as `replay` allows).

    Replay examples identical to a new one are skipped. Returns (mix, number replayed)."""
    if not 0.0 <= ratio < 1.0:
        raise SFTDataError(f"replay ratio must be in [0, 1), got {ratio}")
    if ratio == 0.0 or not replay:
        return list(new), 0
    seen = {conversation_key(traj) for traj in new}
    candidates = [traj for traj in dedupe(replay) if conversation_key(traj) not in seen]
    wanted = min(len(candidates), round(len(new) * ratio / (1.0 - ratio)))
    chosen = random.Random(seed).sample(candidates, wanted)
    return [*new, *chosen], wanted
