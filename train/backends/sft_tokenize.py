"""SFT tokenisation without unsloth: ART's `tokenize_sft_batch`, with the label mask taken from the
chat template's `{% generation %}` blocks instead of unsloth's `train_on_responses_only`.

ART's own function imports unsloth (for `train_on_responses_only`, which finds assistant turns by
searching for the instruction/response marker strings). mcpgym's tool-aware template wraps exactly
what the assistant produces (text, `<tool_call>` blocks, `<|im_end|>`) in `{% generation %}`, so
`return_assistant_tokens_mask=True` marks the trainable tokens directly: tool outputs (rendered as a
user turn) and the prompt are never trained on. Message/tool normalisation is ART's
(`_messages_for_chat_template`, `_normalize_tools_for_chat_template`), and the result is ART's
`SFTBatch`, so the service's SFT loop reads the same structure unsloth's does.

Templates without generation blocks fall back to the marker strings ART detects
(`art.utils.model_config.get_instruction_response_parts`): every token after a response marker and
before the next instruction marker is trained.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from art import Trajectory
    from art.preprocessing.tokenize import SFTBatch
    from transformers import PreTrainedTokenizerBase


def has_generation_blocks(tokenizer: PreTrainedTokenizerBase) -> bool:
    template = getattr(tokenizer, "chat_template", None)
    return isinstance(template, str) and "{% generation %}" in template.replace("{%-", "{%").replace("-%}", "%}")


def tokenize_for_sft(
    tokenizer: PreTrainedTokenizerBase,
    trajectory: Trajectory,
    *,
    chat_template_kwargs: dict[str, Any] | None = None,
    markers: tuple[str, str] | None = None,
) -> tuple[list[int], list[int]]:
    """(input_ids, labels) for one trajectory; labels are -100 except on assistant tokens."""
    from art.preprocessing.tokenize import (
        _chat_template_kwargs,
        _messages_for_chat_template,
        _normalize_tools_for_chat_template,
    )

    messages = _messages_for_chat_template(tokenizer, trajectory.messages_and_choices)
    tools = _normalize_tools_for_chat_template(trajectory.tools)
    kwargs = _chat_template_kwargs(tokenizer, chat_template_kwargs)
    if markers is None:
        encoded = tokenizer.apply_chat_template(
            messages,
            tools=tools,
            tokenize=True,
            return_dict=True,
            return_assistant_tokens_mask=True,
            add_generation_prompt=False,
            **kwargs,
        )
        input_ids = list(encoded["input_ids"])
        mask = list(encoded["assistant_masks"])
    else:
        input_ids = list(
            tokenizer.apply_chat_template(
                messages, tools=tools, tokenize=True, return_dict=True, add_generation_prompt=False, **kwargs
            )["input_ids"]
        )
        mask = _marker_mask(tokenizer, input_ids, *markers)
    labels = [token if keep else -100 for token, keep in zip(input_ids, mask, strict=True)]
    return input_ids, labels


def _marker_mask(
    tokenizer: PreTrainedTokenizerBase, input_ids: list[int], instruction: str, response: str
) -> list[int]:
    """1 on tokens after each response marker up to the next instruction marker (the fallback path)."""
    instruction_ids = tokenizer.encode(instruction, add_special_tokens=False)
    response_ids = tokenizer.encode(response, add_special_tokens=False)
    mask = [0] * len(input_ids)
    training = False
    position = 0
    while position < len(input_ids):
        if input_ids[position : position + len(response_ids)] == response_ids:
            training = True
            position += len(response_ids)
            continue
        if input_ids[position : position + len(instruction_ids)] == instruction_ids:
            training = False
        mask[position] = int(training)
        position += 1
    return mask


def tokenize_sft_batch_cpu(
    trajectory_batch: list[Trajectory],
    learning_rate: float,
    tokenizer: PreTrainedTokenizerBase,
    *,
    chat_template_kwargs: dict[str, Any] | None = None,
    max_seq_length: int | None = None,
    markers: tuple[str, str] | None = None,
) -> SFTBatch:
    """ART's `tokenize_sft_batch` contract (drop over-long trajectories, count tokens) on the CPU."""
    import torch
    from art.preprocessing.tokenize import SFTBatch

    tensors: list[dict[str, torch.Tensor]] = []
    num_tokens = num_trainable = dropped = 0
    for trajectory in trajectory_batch:
        input_ids, labels = tokenize_for_sft(
            tokenizer, trajectory, chat_template_kwargs=chat_template_kwargs, markers=markers
        )
        if max_seq_length is not None and len(input_ids) > max_seq_length:
            dropped += 1
            continue
        tensors.append(
            {
                "input_ids": torch.tensor([input_ids], dtype=torch.long),
                "attention_mask": torch.ones((1, len(input_ids)), dtype=torch.long),
                "labels": torch.tensor([labels], dtype=torch.long),
            }
        )
        num_tokens += len(input_ids)
        num_trainable += sum(1 for label in labels if label != -100)
    return SFTBatch(
        trajectory_tensors=tensors,
        learning_rate=learning_rate,
        num_trajectories=len(tensors),
        num_tokens=num_tokens,
        num_trainable_tokens=num_trainable,
        num_dropped_trajectories=dropped,
    )
