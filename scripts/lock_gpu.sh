#!/usr/bin/env bash
# Rewrite constraints/gpu.txt: the gpu and dev extras resolved for the GPU box (CPython 3.11,
# manylinux_2_35 x86_64) by uv against PyPI, wheels only. Metadata only: nothing is downloaded or installed.
# tests/test_gpu_install.py re-resolves with the lock as constraints and checks the key versions.
set -euo pipefail
cd "$(dirname "$0")/.."
UV=${UV:-uv}
{
  echo "# The GPU install (scripts/grpo_gpu.sh: pip install -e '.[gpu,dev]' -c constraints/gpu.txt)."
  echo "# Resolved by scripts/lock_gpu.sh (uv pip compile: CPython 3.11, glibc 2.35+ x86_64); rerun after"
  echo "# changing the gpu extra. ART's vLLM runtime is not in here: ART locks it itself (docs/gpu.md)."
  "$UV" pip compile pyproject.toml --extra gpu --extra dev \
    --python-version 3.11 --python-platform x86_64-manylinux_2_35 \
    --no-build --no-header --no-annotate --quiet
} > constraints/gpu.txt
echo "wrote constraints/gpu.txt ($(grep -c '==' constraints/gpu.txt) pins)"
