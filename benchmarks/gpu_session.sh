#!/usr/bin/env bash
# The GPU measurements of the course, prepared for a session that is lent a
# GPU through the device tool. Each part fits in one 10-minute call:
#
#   run(command="bash benchmarks/gpu_session.sh record", timeout_s=600)
#   run(command="bash benchmarks/gpu_session.sh speed",  timeout_s=600)
#
#   record  the report's recipe (5 epochs, full split), 3 seeds x 6 models,
#           as `make record` does: $OUT/runs.tar (RunResult JSONs with provenance)
#   speed   benchmarks/speed.py for all six models, classic DataLoader loop
#           against cnnlab, with --ablate: $OUT/speed.json
#
# Both also leave $OUT/<part>-env.txt (nvidia-smi, Python and torch versions)
# and $OUT/<part>-log.txt (the whole output). Back on the CPU machine, unpack
# runs.tar into results/runs/ and copy speed.json to
# results/benchmarks/gpu-<card>.json; the JSONs carry their own provenance
# (device, torch version, date, commit). Then `make notebooks` re-executes the
# chapters so that they show the recorded runs.
#
# The GPU machine has its own PyTorch (not the pinned one) and no internet:
# cnnlab runs from this checkout via PYTHONPATH, the MNIST files travel inside
# cnnlab/mnist, and the provenance records the torch version actually used.
#
# QUICK=1 runs the same steps for LeNet only, a few training steps per run:
# a smoke test of this script, on a CPU too (its numbers mean nothing).
set -euo pipefail

part=${1:-}
case "$part" in
  record|speed) ;;
  *) echo "usage: bash benchmarks/gpu_session.sh record|speed  (QUICK=1 for a smoke test)" >&2
     exit 2 ;;
esac
OUT=${OUT:?set OUT to the folder the results should go to}
PY=${PY:-python3}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
quick=() models=(all)
if [[ "${QUICK:-0}" == 1 ]]; then
  quick=(--max-steps 5) models=(lenet)
fi

{
  date -u +%Y-%m-%dT%H:%M:%SZ
  git rev-parse HEAD 2>/dev/null || echo "no git"
  nvidia-smi 2>&1 || echo "no nvidia-smi"
  "$PY" -c 'import sys, torch; print(sys.version); print("torch", torch.__version__, "cuda", torch.cuda.is_available())'
} > "$OUT/$part-env.txt" 2>&1

case "$part" in
  record)
    runs=$(mktemp -d)
    names=(); [[ "${models[0]}" == all ]] || names=("${models[@]}")  # compare: none = all six
    "$PY" -m cnnlab compare --seeds 42 43 44 --quiet --out "$runs" "${quick[@]}" "${names[@]}" \
      2>&1 | tee "$OUT/record-log.txt"
    tar -cf "$OUT/runs.tar" -C "$runs" .
    ;;
  speed)
    "$PY" benchmarks/speed.py --models "${models[@]}" --ablate --json "$OUT/speed.json" "${quick[@]}" \
      2>&1 | tee "$OUT/speed-log.txt"
    ;;
esac
