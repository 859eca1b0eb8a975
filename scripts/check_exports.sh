#!/usr/bin/env bash
# Every export format loaded by its consumer's own code, on real trajectories.
#
#   scripts/check_exports.sh            # results table on stdout, details in $CHECK_DIR/results.jsonl
#
# 1. throwaway venvs under $CHECK_DIR (default $MCPGYM_HOME/check-exports, i.e.
#    ~/.cache/mcpgym/check-exports), reused when their stamp matches (delete the folder to start
#    over); the folder is created owner-only and refused unless it is a real folder of this user
#    that no one else can write (its venvs are executed), each with torch==2.13.0 pinned first
#    (an unpinned torch pulls gigabytes of CUDA wheels):
#      llamafactory/: llamafactory==$LLAMAFACTORY, then torchvision/torchaudio removed (pip picks builds
#                     made for another torch, which break `import transformers`; no torchaudio release
#                     matches torch 2.13.0) and a torchaudio stand-in written, since LLaMA-Factory
#                     imports it at module level only to read audio inputs
#      swift/:        ms-swift==$SWIFT on its own (with LLaMA-Factory's datasets<=4.0.0 it fails:
#                     it imports datasets.features.Json, which datasets 4.0.0 lacks)
#      trl/:          trl==$TRL and openai (current TRL needs newer transformers than LLaMA-Factory allows)
# 2. real trajectories: the energy env's oracle run against the env (scripts/_export_samples.py:
#    plain, thinking and talking beside its calls, cut by the turn limit), exported in every format
#    with this checkout's `python -m rollouts.export` (the project venv, .venv or $PYTHON);
# 3. scripts/_check_exports.py in each consumer venv: LLaMA-Factory's get_dataset with the written
#    dataset_info.json (template qwen3), ms-swift's load_dataset(strict) then its qwen3 template with
#    the hermes agent template, TRL's SFTTrainer (dataset prep and one step, assistant_only_loss),
#    OpenAI's cookbook format checks (reimplemented; the openai package has no file validator)
#    plus the openai package's request types. The tokenizer / model is the embedded SmolLM2 folder
#    (python -m train.models path), no hub access needed.
# Exit 1 when a consumer reports an issue or fails to run.
set -euo pipefail
cd "$(dirname "$0")/.."

CHECK_DIR=${CHECK_DIR:-${MCPGYM_HOME:-$HOME/.cache/mcpgym}/check-exports}
LLAMAFACTORY=${LLAMAFACTORY:-0.9.5}
SWIFT=${SWIFT:-4.5.2}
TRL=${TRL:-1.16.0}
TORCH=2.13.0
PY=${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}
BASE_PYTHON=${BASE_PYTHON:-python3}
export LITELLM_LOCAL_MODEL_COST_MAP=True HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1
export MODELSCOPE_OFFLINE=1 USE_MODELSCOPE_HUB=0 DISABLE_VERSION_CHECK=1 TOKENIZERS_PARALLELISM=false
export PYTHONWARNINGS=ignore

# Everything under $CHECK_DIR is executed: create it owner-only, and refuse a folder someone else
# could have planted (a link, another user's) or can write.
"$BASE_PYTHON" - "$CHECK_DIR" <<'EOF' || exit 2
import os, stat, sys
path = os.path.abspath(sys.argv[1])  # no trailing slash: lstat must see a link as a link
os.makedirs(os.path.dirname(path), exist_ok=True)
try:
    os.mkdir(path, 0o700)
except FileExistsError:
    pass
info = os.lstat(path)
if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.geteuid() or info.st_mode & 0o022:
    sys.exit(f"error: {path} is not a folder of this user that only it can write; refusing to run venvs from it")
EOF
venv() {  # venv NAME PACKAGE...: create or reuse $CHECK_DIR/NAME with torch pinned, then the packages
  local name=$1 dir="$CHECK_DIR/$1"; shift
  local want="torch==$TORCH $*"
  if [ -f "$dir/.stamp" ] && [ "$(cat "$dir/.stamp")" = "$want" ]; then return; fi
  echo "installing into $dir: $want" >&2
  rm -rf "$dir"
  "$BASE_PYTHON" -m venv "$dir"
  "$dir/bin/pip" install -q --disable-pip-version-check "torch==$TORCH" >&2
  "$dir/bin/pip" install -q --disable-pip-version-check "torch==$TORCH" "$@" >&2
  if [ "$name" = llamafactory ]; then
    "$dir/bin/pip" uninstall -y -q torchvision torchaudio >&2
    local site; site=$("$dir/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
    mkdir -p "$site/torchaudio"
    cat > "$site/torchaudio/__init__.py" <<'PY'
"""Stand-in written by mcpgym's scripts/check_exports.sh: no torchaudio release matches torch 2.13.0,
and LLaMA-Factory imports it at module level only to read audio inputs, which text data never has."""


def __getattr__(name):
    raise ImportError(f"torchaudio.{name}: torchaudio is a stand-in here (no release matches torch 2.13.0)")
PY
  fi
  echo "$want" > "$dir/.stamp"
}
venv llamafactory "llamafactory==$LLAMAFACTORY"
venv swift "ms-swift==$SWIFT"
venv trl "trl==$TRL" openai

# This checkout's packages first (a venv's editable install may point at another checkout).
project() { PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" "$PY" "$@"; }
if ! project -c 'import envs, rollouts, train' 2>/dev/null; then
  echo "error: $PY cannot import mcpgym's packages (set PYTHON=/path/to/the/project/venv/bin/python)" >&2
  exit 2
fi
MODEL=$(project -m train.models path)
DATA="$CHECK_DIR/data"
rm -rf "$DATA" && mkdir -p "$DATA"
echo "trajectories: $(project scripts/_export_samples.py "$DATA/trajectories.jsonl")"
echo '{"someone_elses": {"file_name": "theirs.json"}}' > "$DATA/dataset_info.json"  # must survive the merge
for fmt in llamafactory swift trl openai; do
  project -m rollouts.export --format "$fmt" "$DATA/trajectories.jsonl" --out "$DATA/energy_$fmt.jsonl"
done
"$PY" - "$DATA/dataset_info.json" <<'EOF'
import json, sys
info = json.load(open(sys.argv[1]))
assert set(info) == {"someone_elses", "energy_llamafactory"}, info
print("dataset_info.json: merged, entries", sorted(info))
EOF

results="$CHECK_DIR/results.jsonl" controls="$CHECK_DIR/controls.jsonl"
: > "$results"; : > "$controls"
run() {  # run OUT LABEL VENV ARGS...: one consumer check, its JSON line (labelled) appended to OUT
  local out=$1 label=$2 venv=$3; shift 3
  local log="$CHECK_DIR/${label// /_}.log"
  if "$CHECK_DIR/$venv/bin/python" scripts/_check_exports.py "$@" > "$log.out" 2> "$log"; then
    tail -n 1 "$log.out" | "$PY" scripts/_check_exports.py label "$label" >> "$out"
  else
    "$PY" scripts/_check_exports.py raised "$label" "$log" >> "$out"
  fi
}
run "$results" llamafactory llamafactory llamafactory "$DATA" energy_llamafactory "$MODEL"
run "$results" swift swift swift "$DATA/energy_swift.jsonl" "$MODEL"
run "$results" trl trl trl "$DATA/energy_trl.jsonl" "$MODEL"
run "$results" openai trl openai "$DATA/energy_openai.jsonl"

# Controls: inputs the issue found broken, which the same checks must flag (else they prove nothing).
mkdir -p "$DATA/minimal"
cp "$DATA/energy_llamafactory.jsonl" "$DATA/minimal/"
echo '{"minimal": {"file_name": "energy_llamafactory.jsonl", "formatting": "sharegpt"}}' > "$DATA/minimal/dataset_info.json"
run "$controls" "llamafactory file, minimal dataset_info entry" llamafactory llamafactory "$DATA/minimal" minimal "$MODEL"
run "$controls" "llamafactory file read by ms-swift" swift swift "$DATA/energy_llamafactory.jsonl" "$MODEL"
run "$controls" "trl file sent to OpenAI" trl openai "$DATA/energy_trl.jsonl"

"$PY" scripts/_check_exports.py table "$results" "$controls"
