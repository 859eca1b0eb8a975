"""Benchmark: what this machine allows, and how close the trainer and the server come to it.

    python scripts/bench_limits.py                                  # peaks, bounds, the trainer's rate
    python scripts/bench_limits.py --serve-report runs/bench/agent/bench.json   # + a serve.bench run's ratio
    python scripts/bench_limits.py --no-trainer --out runs/bench/limits.json

Measured here, in this run (ratios are only meaningful within one run on one machine):
- the float32 matmul peak (torch, all cores) at the shapes the trainer and the server multiply:
  a training window (2,048 tokens) and a prefill chunk (512) through the model's linear layers and
  LM head, and decode batches of 1 and 16 sequences; the peak is the fastest of them;
- memory bandwidth: a 512 MB tensor copy, bytes read + written per second.

Derived from the embedded model's config (SmolLM2-135M-Instruct unless --model-dir):
- forward FLOPs per token = 2 x (linear weights + LM head) + 4 x layers x attention width x the
  context the token attends to (QK^T and AV); the trainer's forward + backward with a frozen base
  is 2 x the forward (activation gradients only; the LoRA's own are negligible at rank 8);
- prefill bound (tokens/s) = peak / forward FLOPs per token at half the prompt as context;
- decode bound at B sequences (tokens/s) = B / max(weight bytes / bandwidth, B x forward FLOPs / peak):
  every decode step reads all weights once, whatever the batch.

Achieved rates, as ratios to those limits:
- the trainer: forward + backward of the embedded model with a rank-8 LoRA (peft, float32, the
  trainer's settings) over one window of --train-tokens tokens; useful GFLOP/s / matmul peak;
- the server (with --serve-report): a `serve.bench` run's generated tokens/s at each concurrency
  / the decode bound there (a floor on the server's efficiency: prefill work is not counted).

A table on stdout, JSON to --out. Not a pass/fail test.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as a plain script: make the repo's packages importable
    sys.path.insert(0, str(REPO))


def timed(fn: Any, *, min_s: float = 0.5, warmup: int = 2) -> float:
    """Seconds per call of `fn`, repeated until `min_s` has passed."""
    for _ in range(warmup):
        fn()
    calls, started = 0, time.perf_counter()
    while True:
        fn()
        calls += 1
        elapsed = time.perf_counter() - started
        if elapsed >= min_s:
            return elapsed / calls


def matmul_rates(config: dict[str, Any]) -> dict[str, float]:
    """GFLOP/s of float32 matmuls at the model's shapes, name -> rate."""
    import torch

    d, ff, vocab = config["hidden_size"], config["intermediate_size"], config["vocab_size"]
    shapes = {
        "train 2048 x d x ff": (2048, d, ff),
        "train 2048 x ff x d": (2048, ff, d),
        "train 2048 x d x vocab": (2048, d, vocab),
        "prefill 512 x d x ff": (512, d, ff),
        "decode 16 x d x ff": (16, d, ff),
        "decode 1 x d x ff": (1, d, ff),
    }
    rates = {}
    for name, (m, k, n) in shapes.items():
        a, b = torch.randn(m, k), torch.randn(k, n)
        seconds = timed(lambda a=a, b=b: torch.matmul(a, b), min_s=0.3)
        rates[name] = 2 * m * k * n / seconds / 1e9
    return rates


def bandwidth_gbs(megabytes: int = 512) -> float:
    import torch

    src = torch.empty(megabytes * 2**20 // 4, dtype=torch.float32).fill_(1.0)
    dst = torch.empty_like(src)
    seconds = timed(lambda: dst.copy_(src), min_s=0.5, warmup=1)
    return 2 * src.numel() * 4 / seconds / 1e9


def model_costs(config: dict[str, Any]) -> dict[str, float]:
    """Parameter counts and per-token FLOPs of a Llama-shaped config (module docstring)."""
    d, ff, layers = config["hidden_size"], config["intermediate_size"], config["num_hidden_layers"]
    heads, kv_heads = config["num_attention_heads"], config["num_key_value_heads"]
    head_dim = config.get("head_dim") or d // heads
    attention = d * heads * head_dim + 2 * d * kv_heads * head_dim + heads * head_dim * d
    linear = layers * (attention + 3 * d * ff)
    head = d * config["vocab_size"]
    return {
        "linear_params": linear,
        "lm_head_params": head,
        "weight_bytes_fp32": 4 * (linear + head),  # the LM head is tied: read once as the embedding too
        "attention_flops_per_context_token": 4 * layers * heads * head_dim,
        "forward_flops_no_context": 2 * (linear + head),
    }


def forward_flops(costs: dict[str, float], context: int) -> float:
    return costs["forward_flops_no_context"] + costs["attention_flops_per_context_token"] * context


def trainer_rate(model_dir: Path, tokens: int) -> dict[str, float]:
    """Seconds of one forward + backward of the model with a rank-8 LoRA over `tokens` tokens."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    targets = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    model = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, target_modules=targets, lora_dropout=0.0))
    model.train()
    ids = torch.randint(0, model.config.vocab_size, (1, tokens))

    def step() -> None:
        out = model(input_ids=ids, labels=ids)
        out.loss.backward()
        model.zero_grad(set_to_none=True)

    return {"seconds": timed(step, min_s=3.0, warmup=1), "tokens": tokens}


def serve_ratios(report_path: Path, bound: Any) -> list[dict[str, Any]]:
    from serve.bench_report import load_report

    report = load_report(report_path)
    rows = []
    for level in report.results:
        limit = bound(level.concurrency)
        rows.append(
            {
                "workload": level.workload,
                "concurrency": level.concurrency,
                "output_tokens_per_s": level.output_tokens_per_s,
                "decode_bound_tokens_per_s": limit,
                "ratio": level.output_tokens_per_s / limit,
            }
        )
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-dir", type=Path, default=None, help="model folder (default: the embedded model)")
    parser.add_argument("--prompt-tokens", type=int, default=1200, help="prompt length of the agent workload")
    parser.add_argument("--concurrency", default="1,16,32", help="decode batch sizes to bound")
    parser.add_argument("--train-tokens", type=int, default=1536, help="tokens in the trainer's measured window")
    parser.add_argument("--no-trainer", action="store_true", help="skip the trainer's measurement")
    parser.add_argument("--serve-report", type=Path, default=None, help="a serve.bench bench.json to rate")
    parser.add_argument("--out", type=Path, default=Path("runs/bench/limits.json"))
    args = parser.parse_args(argv)

    import torch

    from train.models import ensure_base_model

    model_dir = args.model_dir or Path(ensure_base_model())
    config = json.loads((model_dir / "config.json").read_text())
    costs = model_costs(config)
    rates = matmul_rates(config)
    peak = max(rates.values())
    bandwidth = bandwidth_gbs()
    prefill_flops = forward_flops(costs, args.prompt_tokens // 2)
    decode_flops = forward_flops(costs, args.prompt_tokens)

    def decode_bound(batch: int) -> float:
        step_s = max(costs["weight_bytes_fp32"] / (bandwidth * 1e9), batch * decode_flops / (peak * 1e9))
        return batch / step_s

    result: dict[str, Any] = {
        "machine": {"processor": platform.processor() or platform.machine(), "threads": torch.get_num_threads()},
        "cpu_count": os.cpu_count(),
        "matmul_gflops": rates,
        "matmul_peak_gflops": peak,
        "bandwidth_gbs": bandwidth,
        "model": {"dir": str(model_dir), **costs},
        "prefill_bound_tokens_per_s": peak * 1e9 / prefill_flops,
        "decode_bound_tokens_per_s": {b: decode_bound(b) for b in map(int, args.concurrency.split(","))},
    }
    print(f"machine: {result['machine']['processor']}, torch threads {result['machine']['threads']}")
    print(f"{'float32 matmul':<28}{'GFLOP/s':>10}")
    for name, rate in rates.items():
        print(f"{name:<28}{rate:>10.1f}")
    print(f"memory bandwidth (copy): {bandwidth:.1f} GB/s")
    print(f"prefill bound: {result['prefill_bound_tokens_per_s']:.0f} tokens/s ({prefill_flops / 1e9:.2f} GFLOP/token)")
    for batch, bound in result["decode_bound_tokens_per_s"].items():
        print(f"decode bound at {batch:>3} sequences: {bound:.0f} tokens/s")
    if not args.no_trainer:
        measured = trainer_rate(model_dir, args.train_tokens)
        useful = 2 * forward_flops(costs, args.train_tokens // 2) * args.train_tokens
        achieved = useful / measured["seconds"] / 1e9
        result["trainer"] = measured | {"useful_gflops": achieved, "ratio_to_peak": achieved / peak}
        print(
            f"trainer fwd+bwd, {args.train_tokens} tokens: {measured['seconds']:.2f} s, "
            f"{achieved:.1f} GFLOP/s = {achieved / peak:.0%} of the matmul peak"
        )
    if args.serve_report:
        result["serve"] = serve_ratios(args.serve_report, decode_bound)
        for row in result["serve"]:
            print(
                f"serve {row['workload']} at {row['concurrency']}: {row['output_tokens_per_s']:.1f} tokens/s "
                f"= {row['ratio']:.0%} of the decode bound {row['decode_bound_tokens_per_s']:.0f}"
            )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
