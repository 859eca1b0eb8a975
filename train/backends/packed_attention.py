"""Attention over packed sequences without their S x S mask.

A packed sequence (ART's RL packing, and `pack_shared_prefix` for SFT) holds prompts and
completions side by side: a prompt sees itself causally, a completion sees its parent prompt and
itself causally, nothing else. The dense additive mask (`packed_attention_mask`) states this
exactly, but SDPA then scores every query against every key and throws most scores away, and a
mask keeps it off its causal fast path. Here each prompt runs as plain causal attention and each
completion's queries score only its parent's keys and its own: the same outputs and gradients
(the tests compare both ways). For an energy SFT batch (a 1.2k-token prompt and 8 completions)
one forward + backward of the real model takes 14% less time (docs/benchmarks.md).

`PackedLayout.from_ids` reads the layout off the group and parent ids; the model runs with
`attn_implementation=ATTENTION` and gets the layout as the `packed_layout` keyword, which
transformers hands through to every attention call. Without it the attention is plain SDPA.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

ATTENTION = "mcpgym_packed"


@dataclass(frozen=True)
class Segment:
    start: int
    end: int
    parent: tuple[int, int] | None  # [start, end) of the prompt this completion sees; None: a prompt
    mask: torch.Tensor | None  # [end - start, parent + own] bool: all of the parent, own tokens causally


@dataclass(frozen=True)
class PackedLayout:
    segments: tuple[Segment, ...]

    @classmethod
    def from_ids(cls, group_ids: torch.Tensor, parent_ids: torch.Tensor) -> PackedLayout | None:
        """The layout of one packed sequence ([1, S] ids, as ART packs them), or None when it is not
        contiguous runs of prompts and completions that follow their prompt (then use the dense mask)."""
        if group_ids.dim() != 2 or group_ids.shape[0] != 1:
            return None
        groups, parents = group_ids[0].tolist(), parent_ids[0].tolist()
        runs: dict[int, tuple[int, int]] = {}
        segments: list[Segment] = []
        start = 0
        for index in range(1, len(groups) + 1):
            if index < len(groups) and groups[index] == groups[start]:
                continue
            group, parent = groups[start], parents[start]
            if group in runs or any(p != parent for p in parents[start:index]):
                return None
            runs[group] = (start, index)
            if parent == group:
                segments.append(Segment(start, index, None, None))
            elif parent in runs:
                parent_run = runs[parent]
                size = index - start
                own = torch.ones(size, size, dtype=torch.bool).tril()
                mask = torch.cat([torch.ones(size, parent_run[1] - parent_run[0], dtype=torch.bool), own], dim=1)
                segments.append(Segment(start, index, parent_run, mask))
            else:
                return None
            start = index
        return cls(tuple(segments))


def packed_attention(
    module: Any,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    packed_layout: PackedLayout | None = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """transformers' attention interface: [B, H, S, D] in, [B, S, H, D] out."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    if packed_layout is None:
        return sdpa_attention_forward(
            module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, **kwargs
        )
    sdpa = torch.nn.functional.scaled_dot_product_attention
    gqa = query.shape[1] != key.shape[1]
    outputs = []
    for segment in packed_layout.segments:
        own = slice(segment.start, segment.end)
        keys, values = key[:, :, own], value[:, :, own]
        if segment.parent is not None:
            parent = slice(*segment.parent)
            keys = torch.cat([key[:, :, parent], keys], dim=2)
            values = torch.cat([value[:, :, parent], values], dim=2)
        outputs.append(
            sdpa(
                query[:, :, own], keys, values, attn_mask=segment.mask, dropout_p=dropout, scale=scaling,
                is_causal=segment.parent is None, enable_gqa=gqa,
            )
        )  # fmt: skip
    return torch.cat(outputs, dim=2).transpose(1, 2).contiguous(), None


def uses_packed_attention(model: Any) -> bool:
    """Whether `model` (or the model a PEFT wrapper holds) runs its attention through here; any other
    attention would ignore a layout and let every token see every earlier one."""
    return getattr(getattr(model, "config", None), "_attn_implementation", None) == ATTENTION


def register() -> str:
    """Make ATTENTION known to transformers (idempotent); its masks are SDPA's."""
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, AttentionMaskInterface

    AttentionInterface.register(ATTENTION, packed_attention)
    AttentionMaskInterface.register(ATTENTION, ALL_MASK_ATTENTION_FUNCTIONS["sdpa"])
    return ATTENTION
