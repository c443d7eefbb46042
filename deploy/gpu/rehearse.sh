#!/usr/bin/env bash
# CPU rehearsal of the bring-your-own-GPU-teacher path (deploy/gpu/README.md), end to end and
# small (a few minutes on 2 cores): tokenizer + tiny GPT-2 base, `icld ict export --config`, the
# teacher tuned by train_teacher.py under torchrun with 2 CPU processes (DDP over gloo), the
# study with that teacher as teacher.path, and an icld-trained student evaluated in PyTorch by
# eval_student.py against icld's own numbers. Not CI: it needs a Python with torch + transformers.
#   VENV=/path/to/venv bash deploy/gpu/rehearse.sh [--reference]
# --reference also runs the study as icld would alone (icld tunes the same base on the same data).
# Everything goes under /tmp/icld-gpu (the rehearsal configs name it), which is made anew.
set -euo pipefail
cd "$(dirname "$0")/../.."
VENV=${VENV:-/tmp/icld-gpu-venv}
ROOT=/tmp/icld-gpu
PY=$VENV/bin/python
ICLD="node dist/src/cli/main.js"
export OMP_NUM_THREADS=1
if ! "$PY" -c 'import torch, transformers' 2>/dev/null; then
  echo "rehearse.sh: $PY lacks torch/transformers; make it with: python3 -m venv $VENV && $VENV/bin/pip install torch transformers accelerate" >&2
  exit 2
fi
[ -f dist/src/cli/main.js ] || { echo "rehearse.sh: build first (npx tsc -p tsconfig.json)" >&2; exit 2; }
rm -rf "$ROOT"; mkdir -p "$ROOT"
step() { echo; echo "== $*"; }

step "1. a tokenizer (icld) and a tiny GPT-2 base with it (PyTorch): the stand-in for gpt2-large"
"$PY" - "$ROOT/tok-text.txt" <<'PYEOF'
import json, sys, glob
with open(sys.argv[1], "w") as out:
    for t in ["google_wellformed_query", "kilt_fever", "emo", "poem_sentiment", "superglue-copa"]:
        for f in sorted(glob.glob(f"data/tasks/crossfit/{t}/*_train.jsonl")):
            for line in open(f):
                e = json.loads(line); out.write(e["input"] + "\n" + e["output"] + "\n")
PYEOF
$ICLD tokenizer train --vocab-size 2000 --out "$ROOT/tok" "$ROOT/tok-text.txt"
"$PY" deploy/gpu/tiny_base.py --tokenizer "$ROOT/tok/tokenizer.json" --out "$ROOT/base" --n-positions 256 --n-embd 64 --n-layer 2 --n-head 4

step "2. the study's teacher-stage ICT instances, in the study's prompt format"
$ICLD ict export --config deploy/gpu/rehearsal-study.json --out "$ROOT/ict.jsonl"

step "3. the teacher tuned by PyTorch: torchrun, 2 processes (DDP, gloo on CPU), global batch 2 x 4 = teacher.ict.batch_size 8, in the export's order"
"$VENV/bin/torchrun" --nproc_per_node 2 deploy/gpu/train_teacher.py --model "$ROOT/base" --data "$ROOT/ict.jsonl" --out "$ROOT/teacher" \
  --steps 100 --batch-size 4 --lr 0.003 --warmup 10 --cpu --logging-steps 50 --in-order 2>&1 | grep -E "teacher:|Error|error" || true
test -f "$ROOT/teacher/model.safetensors"
ls "$ROOT/teacher"

step "4. the study with teacher.path = that teacher (no teacher.ict: used as it is)"
$ICLD study --config deploy/gpu/rehearsal-study-byo.json --out "$ROOT/study-byo" 2>&1 | grep -E "^teacher|^ICT|^ICL-D|^Majority|^Copy|results"
if [ "${1:-}" = --reference ]; then
  step "4b. reference: the same study with icld tuning the same base on the same instances itself"
  $ICLD study --config deploy/gpu/rehearsal-study.json --out "$ROOT/study-ref" 2>&1 | grep -E "^teacher|^ICT|^ICL-D|results"
  # Same base, instances, order, optimizer and schedule, no dropout: the two teachers must agree.
  "$PY" - "$ROOT" <<'PYEOF'
import json, sys
from safetensors.torch import load_file
r = sys.argv[1]
pt = [h["loss"] for h in json.load(open(f"{r}/teacher/teacher_training.json"))["log_history"] if "loss" in h]
ic = [h["loss"] for h in json.load(open(f"{r}/study-ref/teacher/trainer_state.json"))["log_history"]]
a, b = load_file(f"{r}/teacher/model.safetensors"), load_file(f"{r}/study-ref/teacher/model.safetensors")
dw = max((a[k] - b[k]).abs().max().item() for k in b)
ea = json.load(open(f"{r}/study-byo/teacher-eval.json"))["100"]["average"]
eb = json.load(open(f"{r}/study-ref/teacher-eval.json"))["100"]["average"]
print(f"teacher ICT loss per 50 steps: PyTorch {[round(x, 5) for x in pt]}, icld {[round(x, 5) for x in ic]}; max |weight diff| {dw:.2e}; eval {ea} vs {eb}")
ok = len(pt) == len(ic) and max(abs(x - y) for x, y in zip(pt, ic)) < 1e-3 and dw < 1e-2 and ea == eb
sys.exit(0 if ok else "rehearse.sh: the PyTorch teacher differs from the one icld tunes itself")
PYEOF
fi

step "5. the ICL-D student trained here, evaluated in PyTorch on the prompts icld scored, and its perplexity"
S="$ROOT/study-byo/cells/icl-d/100/run"
$ICLD icl eval --model "$S" --tasks poem_sentiment superglue-copa --k 4 --seeds 100 13 --test-limit 40 \
  --items "$ROOT/items.jsonl" --predictions "$ROOT/preds.jsonl" --json > "$ROOT/icl-eval.json"
"$PY" -c "import json; j = json.load(open('$ROOT/icl-eval.json')); print('icld icl eval:', json.dumps({t: v['mean'] for t, v in j['tasks'].items()}), 'average', json.dumps(j['average']))"
$ICLD eval-lm --model "$S" --text-file "$ROOT/tok-text.txt" --json | tee "$ROOT/eval-lm.json"
"$PY" deploy/gpu/eval_student.py --model "$S" --items "$ROOT/items.jsonl" --predictions "$ROOT/preds.jsonl" \
  --text-file "$ROOT/tok-text.txt" --eval-lm "$ROOT/eval-lm.json" 2>/dev/null
echo; echo "rehearsal passed: the PyTorch numbers agree with icld's"
