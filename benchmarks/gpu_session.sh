#!/usr/bin/env bash
# The GPU measurements of the course, for a session that is lent a GPU
# through the device tool (about 15 minutes of device time in all, at most
# 10 minutes a call). Three calls, in this order, each its own part:
#
#   call                                          timeout_s  expected on an H100
#   1. bash benchmarks/gpu_session.sh smoke         200      ~2 min
#   2. bash benchmarks/gpu_session.sh record        570      ~6-8 min
#   3. bash benchmarks/gpu_session.sh speed         570      ~5-7 min (if time is left)
#
#   smoke   first: a fresh process on --device cuda:0, then every model for 30
#           steps with autocast and channels_last, then with torch.compile
#           (compiled runs start only in the first 75 s), each timed, with
#           torch.cuda.set_sync_debug_mode("warn") counting host syncs:
#           $OUT/smoke/<model>-<eager|compile>.json (benchmarks/gpu_smoke.py)
#   record  the report's recipe (5 epochs, full split), seeds 42 43 44, one
#           process per model (`cnnlab compare MODEL`):
#           $OUT/runs/<model>/<model>-cuda-seed<N>.json (RunResults with provenance)
#   speed   benchmarks/speed.py --ablate for 300 steps a variant (classic
#           DataLoader loop, cnnlab, without autocast, without channels_last,
#           with torch.compile), one process per model: $OUT/speed/<model>.json
#
# Nothing waits for the end to be saved: each run's JSON is written the
# moment it finishes, $OUT/<part>-status.tsv gets a line per model (ok, or
# failed with its exit code and last error line) and the next model goes
# on. No model starts after DEADLINE seconds (default: smoke 120, record
# and speed 420), and each is stopped (Ctrl-C, then kill) at LIMIT seconds
# (default: smoke 180, record and speed 550), under the call's timeout_s:
# a call cut short keeps every model it finished, says which it skipped,
# and those can be run in another call: MODELS="googlenet alexnet_large".
# $OUT/<part>-env.txt holds nvidia-smi and the versions, $OUT/<part>-log.txt
# the whole output.
#
# Back on the CPU machine: copy $OUT/runs/*/*-seed*.json into results/runs/
# and the speed JSONs to results/benchmarks/gpu-<card>-<model>.json; the
# JSONs carry their own provenance (device, torch version, date, commit).
# Then `make notebooks` re-executes the chapters so that they show them.
#
# The GPU machine has its own PyTorch (not the pinned one) and no internet:
# cnnlab runs from this checkout via PYTHONPATH, the MNIST files travel inside
# cnnlab/mnist, and the provenance records the torch version actually used.
#
# QUICK=1 is a dry run of the same steps and the same saving, on a CPU too
# (its numbers mean nothing): LeNet (MODELS to add others: each takes
# minutes on a CPU), 3 steps per run, compile with the quick aot_eager
# backend. DEVICE overrides the device (default: cuda where there is a GPU,
# else cpu).
#
#   QUICK=1 OUT=/tmp/out PY=.venv/bin/python bash benchmarks/gpu_session.sh record
set -uo pipefail  # not -e: one model's failure is recorded and the others go on

part=${1:-}
case "$part" in
  smoke|record|speed) ;;
  *) echo "usage: bash benchmarks/gpu_session.sh smoke|record|speed  (QUICK=1 for a dry run)" >&2
     exit 2 ;;
esac
OUT=${OUT:?set OUT to the folder the results should go to}
PY=${PY:-python3}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
mkdir -p "$OUT"
log="$OUT/$part-log.txt" status="$OUT/$part-status.tsv"

case "$part" in
  smoke) deadline=${DEADLINE:-120} limit=${LIMIT:-180} ;;
  *)     deadline=${DEADLINE:-420} limit=${LIMIT:-550} ;;
esac
quick=0; [[ "${QUICK:-0}" == 1 ]] && quick=1
if (( quick )); then
  default_models="lenet"  # the only model whose test pass is quick on a CPU
else
  default_models="lenet alexnet mobilenet_v1 resnet18 googlenet alexnet_large"  # cheap first
fi
read -r -a models <<< "${MODELS:-$default_models}"
device=${DEVICE:-$("$PY" -c 'import torch; print("cuda" if torch.cuda.is_available() else "cpu")')}

{
  date -u +%Y-%m-%dT%H:%M:%SZ
  git rev-parse HEAD 2>/dev/null || echo "no git"
  nvidia-smi 2>&1 || echo "no nvidia-smi"
  "$PY" -c 'import sys, torch; print(sys.version); print("torch", torch.__version__, "cuda", torch.cuda.is_available())'
  echo "part $part, device $device, models ${models[*]}, quick $quick, deadline $deadline s, limit $limit s"
} > "$OUT/$part-env.txt" 2>&1
printf 'model\toutcome\tseconds\n' > "$status"

# run_model NAME COMMAND...: run one model's command under the time limit,
# its output into the log, and its outcome into the status file at once.
run_model() {
  local name=$1; shift
  if (( SECONDS >= deadline )); then
    printf '%s\tskipped: past the %s s deadline; run it in another call (MODELS=...)\t0\n' \
      "$name" "$deadline" >> "$status"
    return
  fi
  local start=$SECONDS left=$(( limit - SECONDS ))
  echo "=== $name ($part, ${SECONDS} s into the call)" >> "$log"
  # --foreground: no process group of its own, so a kill of the call takes it too
  timeout --foreground --signal=INT --kill-after=20 "$left" "$@" >> "$log" 2>&1
  local code=$?
  local outcome=ok
  if (( code != 0 )); then
    outcome="failed (exit $code): $(grep -v '^\s*$' "$log" | tail -n 1 | tr '\t' ' ' | cut -c1-300)"
    (( code == 124 || code == 130 || code == 137 )) && outcome="stopped at the ${limit} s limit (exit $code)"
  fi
  printf '%s\t%s\t%s\n' "$name" "$outcome" "$(( SECONDS - start ))" >> "$status"
  echo "$name: $outcome ($(( SECONDS - start )) s)"
}

case "$part" in
  smoke)
    mkdir -p "$OUT/smoke"
    # A fresh process naming the GPU by number, as a learner would (--device cuda:0).
    named=$device; [[ "$device" == cuda ]] && named=cuda:0
    run_model "lenet@$named" "$PY" -m cnnlab train lenet --device "$named" --max-steps 5 \
      --quiet --out "$OUT/smoke/lenet-fresh-process.json"
    steps=30 backend=()
    (( quick )) && steps=3 backend=(--compile-backend aot_eager)
    # One process for every model: its rows are written one by one as they finish.
    run_model "all models" "$PY" benchmarks/gpu_smoke.py --out "$OUT/smoke" \
      --models "${models[@]}" --steps "$steps" --device "$device" \
      --budget $(( deadline * 5 / 8 )) "${backend[@]}"
    ;;
  record)
    budget=(); (( quick )) && budget=(--max-steps 3)
    for model in "${models[@]}"; do
      run_model "$model" "$PY" -m cnnlab compare "$model" --seeds 42 43 44 --quiet \
        --device "$device" --out "$OUT/runs/$model" "${budget[@]}"
    done
    ;;
  speed)
    steps=300 backend=()
    (( quick )) && steps=3 backend=(--compile-backend aot_eager)
    for model in "${models[@]}"; do
      run_model "$model" "$PY" benchmarks/speed.py --models "$model" --ablate \
        --max-steps "$steps" --device "$device" --json "$OUT/speed/$model.json" "${backend[@]}"
    done
    ;;
esac
echo "done: $status"
column -t -s $'\t' "$status" 2>/dev/null || cat "$status"
