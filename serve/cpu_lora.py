"""Faster LoRA on vLLM's CPU path: a vLLM general plugin (entry point `vllm.general_plugins`).

vLLM's CPU punica ops (`vllm/lora/ops/torch_ops`) gather a private copy of the adapter weights for
every token (`lora_weights[token_lora_indices]`, then a batched einsum). For SmolLM2-135M at rank 8
that gather is most of the work. Measured on 2 cores (`scripts/bench_lora_ops.py`), one layer's
LoRA ops take 4.4 ms for a 40-sequence decode step (1.7 ms grouped) and 236 ms for a 1.7k-token
prefill (12 ms grouped), so a served checkpoint generated 2-4x slower than the base model.

`register()` swaps the ops that `PunicaWrapperCPU` calls for ones with the same contract that group
the tokens by adapter and run one matmul per adapter in the batch (usually one). Tokens whose index
is negative (no adapter) get no LoRA delta, as on the GPU kernels. vLLM loads general plugins in
each of its processes; only the CPU wrapper's module is touched, so GPU serving is unaffected. Set
`VLLM_PLUGINS` to a list without `mcpgym_cpu_lora` to turn it off.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


def lora_matmul(inputs: torch.Tensor, weights: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
    """Row t of the result is `inputs[t] @ weights[indices[t]].T` (zeros where indices[t] < 0).

    `weights` is vLLM's stacked adapter tensor, [max_loras, out, in] or [max_loras, 1, out, in]."""
    import torch

    if weights.dim() == 4:
        weights = weights.squeeze(1)
    dtype = inputs.dtype
    adapters = torch.unique(indices).tolist()
    if len(adapters) == 1 and adapters[0] >= 0:
        return inputs @ weights[adapters[0]].to(dtype).T
    out = inputs.new_zeros(inputs.shape[0], weights.shape[1])
    for adapter in adapters:
        if adapter < 0:
            continue
        rows = (indices == adapter).nonzero().squeeze(-1)
        out[rows] = inputs[rows] @ weights[adapter].to(dtype).T
    return out


def bgmv_shrink(
    inputs: torch.Tensor,
    lora_a_weights: torch.Tensor,
    output_tensor: torch.Tensor,
    lora_indices_tensor: torch.Tensor,
    scaling: float = 1.0,
) -> None:
    outputs = lora_matmul(inputs.to(output_tensor.dtype), lora_a_weights, lora_indices_tensor)
    output_tensor[:, : outputs.shape[1]] = scaling * outputs


def bgmv_expand(
    inputs: torch.Tensor,
    lora_b_weights: torch.Tensor,
    output_tensor: torch.Tensor,
    lora_indices_tensor: torch.Tensor,
    add_inputs: bool = True,
) -> None:
    outputs = lora_matmul(inputs.to(output_tensor.dtype), lora_b_weights, lora_indices_tensor)
    limit = 1 if outputs.shape[0] == 1 and output_tensor.shape[0] != 1 else output_tensor.shape[0]
    # the adapter and the model may pad their output dimension differently
    width = min(outputs.shape[1], output_tensor.shape[1])
    if add_inputs:
        output_tensor[:, :width] += outputs[:limit, :width]
    else:
        output_tensor[:, :width] = outputs[:limit, :width]


def bgmv_expand_slice(
    inputs: torch.Tensor,
    lora_b_weights: torch.Tensor,
    output_tensor: torch.Tensor,
    lora_indices_tensor: torch.Tensor,
    slice_offset: int,
    slice_size: int,
    add_inputs: bool = True,
) -> None:
    outputs = lora_matmul(inputs.to(output_tensor.dtype), lora_b_weights, lora_indices_tensor)
    if add_inputs:
        output_tensor[:, slice_offset : slice_offset + slice_size] += outputs
    else:
        output_tensor[:, slice_offset : slice_offset + slice_size] = outputs


def _per_token(lora_indices_tensor: torch.Tensor, seq_len_tensor: torch.Tensor) -> torch.Tensor:
    """The prefill ops get one adapter index per sequence; the token ops want one per token."""
    import torch

    return torch.repeat_interleave(lora_indices_tensor, seq_len_tensor)


def sgmv_shrink(
    inputs: torch.Tensor,
    lora_a_weights: torch.Tensor,
    output_tensor: torch.Tensor,
    b_seq_start_loc: torch.Tensor,
    seq_len_tensor: torch.Tensor,
    lora_indices_tensor: torch.Tensor,
    batches: int,
    max_seq_length: int,
    token_nums: int,
    scaling: float,
) -> None:
    bgmv_shrink(inputs, lora_a_weights, output_tensor, _per_token(lora_indices_tensor, seq_len_tensor), scaling)


def sgmv_expand(
    inputs: torch.Tensor,
    lora_b_weights: torch.Tensor,
    output_tensor: torch.Tensor,
    b_seq_start_loc: torch.Tensor,
    seq_len_tensor: torch.Tensor,
    lora_indices_tensor: torch.Tensor,
    batches: int,
    max_seq_length: int,
    token_nums: int,
    add_inputs: bool = False,
) -> None:
    bgmv_expand(inputs, lora_b_weights, output_tensor, _per_token(lora_indices_tensor, seq_len_tensor), add_inputs)


def sgmv_expand_slice(
    inputs: torch.Tensor,
    lora_b_weights: torch.Tensor,
    output_tensor: torch.Tensor,
    b_seq_start_loc: torch.Tensor,
    seq_len_tensor: torch.Tensor,
    lora_indices_tensor: torch.Tensor,
    batches: int,
    max_seq_length: int,
    token_nums: int,
    slice_offset: int,
    slice_size: int,
    add_inputs: bool = False,
) -> None:
    indices = _per_token(lora_indices_tensor, seq_len_tensor)
    bgmv_expand_slice(inputs, lora_b_weights, output_tensor, indices, slice_offset, slice_size, add_inputs)


OPS = {
    "bgmv_shrink": bgmv_shrink,
    "bgmv_expand": bgmv_expand,
    "bgmv_expand_slice": bgmv_expand_slice,
    "sgmv_shrink": sgmv_shrink,
    "sgmv_expand": sgmv_expand,
    "sgmv_expand_slice": sgmv_expand_slice,
}


def register() -> None:
    """vLLM's plugin hook: point the CPU punica wrapper at the grouped ops (idempotent)."""
    try:
        from vllm.lora.punica_wrapper import punica_cpu
    except ImportError:  # a vLLM without the CPU wrapper: nothing to speed up
        return
    for name, op in OPS.items():
        if hasattr(punica_cpu, name):
            setattr(punica_cpu, name, op)
