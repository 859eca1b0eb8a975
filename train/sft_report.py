"""What SFT needs around the training loop: per-example losses (for `loss_topk`/`hybrid` coresets)
and the loss-curve PNG."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from contracts import Trajectory


def load_sft_tokenizer(base_model: str, *, mcpgym_template: bool) -> Any:
    """The tokenizer training uses: the folder's own, with mcpgym's template on the torch path."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(base_model)
    if mcpgym_template:
        from train.models import chat_template

        tokenizer.chat_template = chat_template()
    return tokenizer


def example_losses(
    base_model: str, trajs: Sequence[Trajectory], *, max_length: int, mcpgym_template: bool = True
) -> list[float]:
    """Mean cross-entropy of each trajectory's assistant tokens under the base model (no LoRA).

    Over-long examples are scored on their first `max_length` tokens."""
    import torch
    from transformers import AutoModelForCausalLM

    from train.art_adapter import instruction_response_markers, to_sft_trajectory
    from train.backends.compat import fix_transformers_mask_patch
    from train.backends.sft_tokenize import has_generation_blocks, tokenize_for_sft

    fix_transformers_mask_patch()
    tokenizer = load_sft_tokenizer(base_model, mcpgym_template=mcpgym_template)
    markers = None
    if not has_generation_blocks(tokenizer):
        markers = instruction_response_markers(base_model, tokenizer)
    model = AutoModelForCausalLM.from_pretrained(base_model, dtype=torch.float32).eval()
    losses: list[float] = []
    with torch.no_grad():
        for traj in trajs:
            input_ids, labels = tokenize_for_sft(tokenizer, to_sft_trajectory(traj), markers=markers)
            ids = torch.tensor([input_ids[:max_length]])
            target = torch.tensor(labels[:max_length])
            logits = model(input_ids=ids).logits[0, :-1]
            loss = torch.nn.functional.cross_entropy(logits.float(), target[1:], ignore_index=-100)
            losses.append(float(loss) if torch.isfinite(loss) else 0.0)
    return losses


def plot_losses(losses: Sequence[float], path: Path, *, batches_per_epoch: int, title: str) -> Path:
    """Training loss per batch, epoch boundaries dashed; written with matplotlib's Agg backend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(7, 4), dpi=100)
    try:
        axis.plot(range(1, len(losses) + 1), list(losses), marker="." if len(losses) < 50 else None)
        for boundary in range(batches_per_epoch, len(losses), max(1, batches_per_epoch)):
            axis.axvline(boundary + 0.5, color="grey", linestyle="--", linewidth=0.8)
        axis.set_xlabel("batch")
        axis.set_ylabel("loss (assistant tokens)")
        axis.set_title(title)
        axis.grid(alpha=0.3)
        figure.tight_layout()
        path.parent.mkdir(parents=True, exist_ok=True)
        figure.savefig(path)
    finally:
        plt.close(figure)
    return path
