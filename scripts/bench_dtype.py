"""Benchmark: the trainer's forward and forward+backward in float32 against bfloat16, on this CPU.

    python scripts/bench_dtype.py                      # the embedded SmolLM2-135M, 1,200 tokens, 2 threads
    python scripts/bench_dtype.py --tokens 600 --repeats 5 --out runs/bench/dtype.json

bfloat16 pays only where the CPU has native bf16 arithmetic (x86 `avx512_bf16` or `amx_bf16`);
elsewhere PyTorch emulates it and it is slower than float32. The trainer's default dtype is the
faster one *measured on the machines this project runs on*, so this script prints which flags the
CPU has next to the timings. The model is the trainer's: base weights in the dtype under test, a
LoRA of rank 8 on every projection kept in float32 (its gradients and AdamW state stay exact),
packed attention off (a plain causal sequence). Median of `--repeats` after one warm-up. A table on
stdout, JSON to `--out`. Not a pass/fail test.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as a plain script: make the repo's packages importable
    sys.path.insert(0, str(REPO))


def cpu_flags() -> list[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return []
    line = next((line for line in text.splitlines() if line.startswith("flags")), "")
    return sorted(flag for flag in line.split() if "bf16" in flag or flag.startswith(("avx512f", "amx")))


def measure(dtype_name: str, *, tokens: int, repeats: int, threads: int) -> dict[str, Any]:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from train.backends.compat import fix_transformers_mask_patch
    from train.backends.settings import DEFAULT_TARGET_MODULES
    from train.models import ensure_base_model

    fix_transformers_mask_patch()
    torch.set_num_threads(threads)
    dtype = getattr(torch, dtype_name)
    base = AutoModelForCausalLM.from_pretrained(str(ensure_base_model()), dtype=dtype)
    model = get_peft_model(base, LoraConfig(r=8, lora_alpha=16, target_modules=list(DEFAULT_TARGET_MODULES)))
    for name, param in model.named_parameters():
        if "lora_" in name:
            param.data = param.data.float()  # LoRA weights (and so their grads and Adam state) in float32
    ids = torch.randint(5, 40_000, (1, tokens), generator=torch.Generator().manual_seed(0))

    def forward() -> None:
        with torch.no_grad():
            model(input_ids=ids, logits_to_keep=1)

    def forward_backward() -> None:
        model.zero_grad(set_to_none=True)
        logits = model(input_ids=ids, logits_to_keep=64).logits.float()
        logits.logsumexp(-1).mean().backward()

    out: dict[str, Any] = {"dtype": dtype_name}
    for name, fn in (("forward_s", forward), ("forward_backward_s", forward_backward)):
        fn()  # warm-up
        times = []
        for _ in range(repeats):
            started = time.perf_counter()
            fn()
            times.append(time.perf_counter() - started)
        out[name] = statistics.median(times)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tokens", type=int, default=1200, help="sequence length (the energy prompt is ~1.2k)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "bench" / "dtype.json")
    args = parser.parse_args()
    flags = cpu_flags()
    print(f"CPU flags: {' '.join(flags) or 'no avx512/amx/bf16 flags'}; {args.threads} threads, {args.tokens} tokens")
    print(f"{'dtype':<10} {'forward s':>10} {'fwd+bwd s':>10}", flush=True)
    rows = []
    for name in ("float32", "bfloat16"):  # each row as it is measured: emulated bf16 can take minutes
        row = measure(name, tokens=args.tokens, repeats=args.repeats, threads=args.threads)
        rows.append(row)
        print(f"{row['dtype']:<10} {row['forward_s']:>10.2f} {row['forward_backward_s']:>10.2f}", flush=True)
    speedup = rows[0]["forward_backward_s"] / rows[1]["forward_backward_s"]
    print(f"bfloat16 forward+backward is {speedup:.2f}x float32's speed")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"cpu_flags": flags, "threads": args.threads, "tokens": args.tokens, "rows": rows}))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
