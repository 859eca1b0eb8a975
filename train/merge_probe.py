"""The probe of `train.merge`: does the merged model answer like base+adapter?

The probe batch is a few chats in the shape the policy is trained on, taken from the env itself:
its system prompt and tool schemas (`episode.reset(task)`), a tool-calling conversation whose tool
results the env's own tools return, a bare question, and a plain answer. Their logits under
base+adapter (float32) are the reference the merge must reproduce, first in memory and then after
it was saved and loaded back.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from contracts import Task, ToolCall
from train.merge_inputs import MergeInputError

if TYPE_CHECKING:
    import torch

    from contracts import Environment, Episode

PROBE_SPLIT = "train"  # the chats the adapter was trained on look like these


class MergeVerificationError(RuntimeError):
    """The merged model does not reproduce base+adapter: exit 1, nothing published."""

    def __init__(self, message: str, max_abs_diff: float) -> None:
        super().__init__(message)
        self.max_abs_diff = max_abs_diff


class ProbeChat(BaseModel):
    """One chat of the probe, rendered with the chat template (with `tools` when given)."""

    messages: list[dict[str, Any]]
    tools: list[dict[str, Any]] | None = None


def load_env(spec: str) -> Environment:
    """The env whose chats make the probe (`envs.load`; a bad spec is one line, exit 2)."""
    import envs

    return envs.load(spec)


async def probe_chats(env: Environment, *, split: str = PROBE_SPLIT) -> list[ProbeChat]:
    """Three chats from the env's `split`: a tool-calling conversation with the tool schemas, then,
    without them to keep the probe short (it runs three times, on the CPU), a bare question and a
    question with a plain answer."""
    async with env:  # type: ignore[attr-defined]  # MCPEnv: connections for the episodes
        tasks = env.tasks(split)
        if not tasks:
            raise MergeInputError(f"env {env.name!r} has no tasks in split {split!r} to probe the merge with")
        tool_task = next((task for task in tasks if task.expected_calls), tasks[0])
        others = [task for task in tasks if task is not tool_task][:2]
        async with env.episode() as episode:
            chats = [await _tool_chat(episode, tool_task)]
        for index, task in enumerate(others):
            async with env.episode() as episode:
                messages = (await episode.reset(task)).messages
            if index == 1:
                messages = [*messages, {"role": "assistant", "content": _answer_text(task)}]
            chats.append(ProbeChat(messages=messages))
    return chats


async def _tool_chat(episode: Episode, task: Task) -> ProbeChat:
    """The task's expected calls, step by step, with what the env's tools return, then its answer."""
    obs = await episode.reset(task)
    messages = list(obs.messages)
    for step in sorted({call.step for call in task.expected_calls}):
        calls = [
            ToolCall(id=f"call_{len(messages)}_{index}", name=call.name, arguments=json.dumps(call.arguments))
            for index, call in enumerate(item for item in task.expected_calls if item.step == step)
        ]
        messages.append({"role": "assistant", "content": None, "tool_calls": [call.to_openai() for call in calls]})
        messages += (await episode.step(calls)).messages
    messages.append({"role": "assistant", "content": _answer_text(task)})
    return ProbeChat(messages=messages, tools=obs.tools)


def _answer_text(task: Task) -> str:
    return "" if task.answer is None else str(task.answer)


def probe_batch(tokenizer: Any, chats: list[ProbeChat]) -> dict[str, torch.Tensor]:
    """The probe: chat-templated, right-padded, with an attention mask."""
    texts = [tokenizer.apply_chat_template(chat.messages, tools=chat.tools, tokenize=False) for chat in chats]
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "right"
    batch = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
    return {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}


def logits(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    import torch

    device = next(model.parameters()).device
    with torch.no_grad():
        out = model(**{key: value.to(device) for key, value in batch.items()})
    mask = batch["attention_mask"].bool()
    return out.logits.float().cpu()[mask]  # only real tokens: padded positions are undefined


def max_abs_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max())


def check_in_memory(merged_logits: torch.Tensor, reference: torch.Tensor, *, tolerance: float) -> float:
    """The float32 merge, before any cast, against base+adapter; returns the max abs diff."""
    diff = max_abs_diff(merged_logits, reference)
    if diff > tolerance:
        raise MergeVerificationError(
            f"merge verification failed: in-memory float32 merge differs from base+adapter by "
            f"max abs diff {diff:.3g} > {tolerance:g}",
            diff,
        )
    return diff


def check_saved(
    saved_logits: torch.Tensor, reference: torch.Tensor, *, tolerance: float, dtype: str
) -> tuple[float, float]:
    """The saved folder, loaded back, against base+adapter: (max abs diff, top-1 agreement)."""
    diff = max_abs_diff(saved_logits, reference)
    agreement = float((saved_logits.argmax(-1) == reference.argmax(-1)).float().mean())
    if not diff <= tolerance:  # also catches NaN
        raise MergeVerificationError(
            f"merge verification failed: the saved {dtype} model differs from base+adapter by "
            f"max abs diff {diff:.3g} > tolerance {tolerance:g} (top-1 agreement {agreement:.1%})",
            diff,
        )
    return diff, agreement


def check_same_weights(reloaded: torch.nn.Module, merged: torch.nn.Module) -> None:
    """The saved folder must hold exactly the weights that were verified (nothing lost or re-tied)."""
    saved = reloaded.state_dict()
    for name, tensor in merged.state_dict().items():
        other = saved.get(name)
        if other is None or other.shape != tensor.shape or not other.equal(tensor.to(other.dtype)):
            raise MergeVerificationError(f"merge verification failed: the saved folder's {name} differs", float("inf"))
