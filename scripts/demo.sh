#!/usr/bin/env bash
# The README's main-job command: set up .venv, fetch the embedded model, then run mcpgym's main job
# on the embedded default (SmolLM2-135M-Instruct on the CPU): warm start, GRPO, evaluation before and
# after, a before/after table at the end. Extra arguments go to `python -m train.grpo`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_venv.sh
bash scripts/setup_system.sh
# shellcheck disable=SC1091
source .venv/bin/activate
export LITELLM_LOCAL_MODEL_COST_MAP=True  # litellm (under ART) would fetch a price list from the internet
python -m train.models fetch
exec python -m train.grpo --env energy "$@"
