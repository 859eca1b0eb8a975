#!/usr/bin/env bash
# The main job on a CUDA GPU: ART's LocalBackend (unsloth LoRA training + vLLM) and a Qwen3 base.
#   bash scripts/grpo_gpu.sh                                   # Qwen/Qwen3-4B-Instruct-2507
#   BASE_MODEL=/models/Qwen3-1.7B bash scripts/grpo_gpu.sh --steps 20
# The model is read from the Hugging Face hub (or a local folder). Extra arguments go to train.grpo.
# Not exercised by CI (no GPU there); tests/test_gpu_install.py resolves its install, and the CPU
# path runs the same loop with --backend torch.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv-gpu/bin/python ]; then
  "$PYTHON" -m venv .venv-gpu
fi
# The gpu extra under its lock (constraints/gpu.txt: torch 2.10 CUDA, unsloth, ART's pins). vLLM is
# not installed here: on first use ART builds its own vLLM runtime venv with uv (docs/gpu.md).
.venv-gpu/bin/python -m pip install -q -e ".[gpu,dev]" -c constraints/gpu.txt
# shellcheck disable=SC1091
source .venv-gpu/bin/activate
export LITELLM_LOCAL_MODEL_COST_MAP=True
exec python -m train.grpo --env energy --backend local \
  --base-model "${BASE_MODEL:-Qwen/Qwen3-4B-Instruct-2507}" \
  --steps 10 --groups-per-step 8 --group-size 8 --lr 1e-5 --max-tokens 512 --concurrency 32 \
  --eval-tasks 0 --val-tasks 40 --name "${NAME:-qwen3-gpu}" "$@"
