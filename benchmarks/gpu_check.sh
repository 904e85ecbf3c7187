#!/usr/bin/env bash
# One prepared check of rnaret on one CUDA GPU, in under 8 minutes, from a copy of the repository.
#
#   benchmarks/gpu_check.sh [--published-repo PATH] [--out DIR]
#   benchmarks/gpu_check.sh --dry-run-cpu      # the same steps, tiny and on the CPU (no GPU needed)
#
# Prints, each step under its own time limit (a step that fails or runs out of time is reported
# and the next one runs; the exit status is 1 if any failed):
#   1. fp32/bf16 agreement on CUDA (benchmarks/precision_check.py: bf16 and TF32 against exact
#      float32, CUDA against CPU float32; outputs and gradients, both retention forms, Transformer);
#   2. (a) the real length mix and (b) 2k/8k/32k/100k single sequences of the encoder benchmark
#      with --device cuda, against the published code when a checkout is found;
#   3. pretraining tokens/s and peak memory at paper size, ours against the published way (and
#      the published code), fp32 (TF32) and bf16, on 32 sequences;
#   4. one fine-tuning step of each task (interaction, coding, structure) on the bundled data;
#   5. the compiled path: torch.compile (inductor) of the encoder against eager on the length mix
#      (benchmarks/encoder.py --parts d): compile time, speed-up, output difference;
#   6. the peers benchmark (benchmarks/peers.py): ours, the published code, RNA-FM and RiNALMo
#      (when multimolecule is installed or installable) per-nt time and memory against length;
#   7. the Hugging Face export, when this checkout has it (`rnaret export-hf`): the step-4
#      encoder exported, loaded back with transformers on the device, its outputs against ours.
# The published checkout is --published-repo, else $RNARET_PUBLISHED_REPO, else the first of
# shared/RNAret, shared/published/RNAret, ../published/RNAret that holds retnet.py.
# The limits add up to 7 min 50 s, the environment check and installs come on top.
# What it needs from PyPI (torch with CUDA, the project's dependencies, torchscale/fairscale for the
# published code) is installed only when it cannot be imported; an existing CUDA torch is kept.
set -uo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
PUBLISHED=${RNARET_PUBLISHED_REPO:-}
OUT=""
DRY=0
while [ $# -gt 0 ]; do
  case "$1" in
    --published-repo) PUBLISHED=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    --dry-run-cpu) DRY=1; shift ;;
    -h|--help) sed -n '2,27p' "$0"; exit 0 ;;
    *) echo "gpu_check: unknown argument $1" >&2; exit 2 ;;
  esac
done
OUT=${OUT:-$(mktemp -d /tmp/rnaret-gpu-check-XXXX)}
mkdir -p "$OUT"
PY=$(command -v python3 || command -v python) || { echo "gpu_check: no python3 on PATH" >&2; exit 2; }
export PYTHONPATH=$ROOT${PYTHONPATH:+:$PYTHONPATH}
START=$(date +%s)
FAILED=()

say() { printf '\n=== %s (%ds so far)\n' "$*" $(( $(date +%s) - START )); }

# ---------------------------------------------------------------- what is needed, installed if missing
say "environment"
if ! "$PY" -c "import torch" 2>/dev/null; then
  echo "torch is not installed: installing torch==2.13.0 from PyPI (its Linux wheel is the CUDA build)"
  "$PY" -m pip install --quiet "torch==2.13.0" || { echo "gpu_check: could not install torch" >&2; exit 2; }
fi
"$PY" - <<'EOF'
import torch
print(f"torch {torch.__version__}, CUDA build {torch.version.cuda}, cuda available: {torch.cuda.is_available()}")
EOF
if [ "$DRY" = 0 ] && ! "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
  echo "gpu_check: torch finds no CUDA device on $(hostname) (CUDA_VISIBLE_DEVICES=${CUDA_VISIBLE_DEVICES-unset})." >&2
  echo "gpu_check: run it on a GPU node, or use --dry-run-cpu to check the script on the CPU." >&2
  exit 2
fi
if ! "$PY" -c "import numpy, safetensors, pyfastx, Bio, sklearn, tqdm, yaml, matplotlib, jsonschema" 2>/dev/null; then
  echo "installing the project's dependencies (the installed torch kept)"
  keep=$(mktemp)
  grep -v '^torch==' constraints.txt > "$keep"
  "$PY" -c "import torch; print('torch==' + torch.__version__)" >> "$keep"
  "$PY" -m pip install --quiet -c "$keep" -e . || { echo "gpu_check: could not install the dependencies" >&2; exit 2; }
fi
if [ -z "$PUBLISHED" ]; then
  for candidate in shared/RNAret shared/published/RNAret ../published/RNAret; do
    if [ -f "$candidate/retnet.py" ]; then PUBLISHED=$candidate; break; fi
  done
fi
PUB_ARGS=()
if [ -n "$PUBLISHED" ]; then
  PUBLISHED=$(cd "$PUBLISHED" && pwd)
  PUB_ARGS=(--published-repo "$PUBLISHED" --published-deps "$OUT/published-deps")
  echo "published code: $PUBLISHED"
else
  echo "no published checkout found: our model run the published way stands in"
fi
if command -v nvidia-smi >/dev/null; then nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader; fi

if [ "$DRY" = 1 ]; then
  DEVICE=cpu; PRESET=tiny
  ENC=(--device cpu --sample 16 --published-batches 1 --lengths 1000,2000 --parts ab)
  PRE=(--device cpu --preset tiny --batch 2)
  FT_SET=(--set preset=laptop --set max_steps=1 --set valid_max_examples=4 --set eval_max_tokens=4096)
  COMPILE=(--device cpu --sample 4 --precisions fp32 --lengths 1000 --parts d)
  PEERS=(--device cpu --lengths 256 --models ours --max-seconds 240)
else
  DEVICE=cuda; PRESET=paper
  ENC=(--device cuda --sample 300 --published-batches 4 --lengths 2000,8000,32000,100000 --parts ab)
  # 32 published rows of 2,000 (not the published 100): its fp32 (L, L) matrices for 100 rows
  # would not fit in one GPU's memory with the backward pass
  PRE=(--device cuda --preset paper --batch 32 --warmup 1)
  FT_SET=(--set max_steps=1 --set valid_max_examples=16)
  COMPILE=(--device cuda --sample 100 --precisions fp32,bf16 --lengths 1000 --parts d)
  PEERS=(--device cuda --lengths 256,1022,8192,100000 --max-seconds 50 --peers-deps "$OUT/peers-deps")
fi

SLOW=1
[ "$DRY" = 1 ] && SLOW=5  # the CPU dry run is slower; it only checks that every step runs

step() {  # step NAME SECONDS command...
  local name=$1 limit=$(( $2 * SLOW )); shift 2
  say "$name (limit ${limit}s)"
  timeout --kill-after=10 "$limit" "$@"
  local rc=$?
  if [ $rc -ne 0 ]; then
    [ $rc -eq 124 ] && echo "gpu_check: $name ran out of its ${limit}s" || echo "gpu_check: $name failed (exit $rc)"
    FAILED+=("$name")
  fi
}

# ---------------------------------------------------------------- 1. agreement
step "1. fp32/bf16 agreement on $DEVICE" 45 "$PY" benchmarks/precision_check.py --device "$DEVICE" --preset "$PRESET"

# ---------------------------------------------------------------- 2. encoder benchmark (a), (b)
step "2. encoder benchmark, (a) length mix and (b) single sequences" 130 \
  "$PY" benchmarks/encoder.py "${ENC[@]}" --precisions fp32,bf16 "${PUB_ARGS[@]}"

# ---------------------------------------------------------------- 3. pretraining step
step "3. pretraining step, $PRESET size" 100 "$PY" benchmarks/pretrain.py "${PRE[@]}" --precisions fp32,bf16 "${PUB_ARGS[@]}"

# ---------------------------------------------------------------- 4. one fine-tuning step per task
say "4. one fine-tuning step per task"
"$PY" - "$OUT/encoder-k1" "$OUT/encoder-k5" "$PRESET" <<'EOF'
import sys, torch
from rnaret.checkpoint import save_encoder
from rnaret.model import build_encoder
from rnaret.train.config import preset
for path, k in ((sys.argv[1], 1), (sys.argv[2], 5)):
    torch.manual_seed(0)
    save_encoder(build_encoder(preset(sys.argv[3], k).encoder_config()), path)
print("initial encoders (random weights, the step's time does not depend on them) written")
EOF
for spec in "interaction mirtar encoder-k5" "coding mouse encoder-k5" "structure bprna encoder-k1"; do
  set -- $spec
  step "4. finetune $1 ($2), one step, bf16" 40 "$PY" -m rnaret finetune --task "$1" --init "$OUT/$3" \
    --dataset-config config.yaml --dataset "$2" --out "$OUT/finetune-$1" --device "$DEVICE" --precision bf16 \
    --quiet "${FT_SET[@]}"
done

# ---------------------------------------------------------------- 5. compiled path
step "5. torch.compile against eager, length mix" 70 "$PY" benchmarks/encoder.py "${COMPILE[@]}"

# ---------------------------------------------------------------- 6. peers
step "6. peers benchmark" 60 "$PY" benchmarks/peers.py "${PEERS[@]}" "${PUB_ARGS[@]}" --markdown "$OUT/peers.md"

# ---------------------------------------------------------------- 7. Hugging Face export
if "$PY" -m rnaret export-hf --help >/dev/null 2>&1; then
  step "7. Hugging Face export, loaded back on $DEVICE" 25 bash -c '
    "$0" -m rnaret export-hf "$1/encoder-k1" "$1/hf-k1" || exit 1
    "$0" - "$1" "$2" <<"EOF"
import sys, torch
from transformers import AutoModel
from rnaret.checkpoint import load_encoder
out, device = sys.argv[1], sys.argv[2]
theirs = AutoModel.from_pretrained(f"{out}/hf-k1", trust_remote_code=True).to(device).eval()
ours = load_encoder(f"{out}/encoder-k1").to(device).eval()
tokens = torch.randint(6, 10, (2, 700), device=device)
with torch.no_grad():
    got = theirs(input_ids=tokens).last_hidden_state.float()
    mine = ours(tokens)
diff = (got - mine.last_inner_state.float()).abs().max().item()  # last_hidden_state: before the final norm
print(f"exported model on {device}: last_hidden_state differs from our last_inner_state by at most {diff:.1e}")
sys.exit(0 if diff < 1e-3 else 1)
EOF' "$PY" "$OUT" "$DEVICE"
else
  say "7. Hugging Face export: not in this checkout (no rnaret export-hf), skipped"
fi

say "done"
echo "outputs in $OUT"
if [ ${#FAILED[@]} -gt 0 ]; then
  printf 'gpu_check: FAILED: %s\n' "${FAILED[@]}"
  exit 1
fi
echo "gpu_check: every step ran"
