#!/usr/bin/env bash
# One prepared run on a lent GPU machine (see the device section of README.md):
#   1. the quick exp52 evaluation from carried checkpoints (certificates at the quick preset),
#   2. `make bench DEVICE=cuda` (GPU speed ratios),
#   3. the smoke preset of every experiment on cuda (`make all PRESET=smoke`).
# Each part has its own time limit so one slow part cannot take the others' time. Results go
# to $OUT as one tarball (no checkpoints) plus the logs. The machine has torch and the other
# packages in its system python3 and no network: the system python stands in for .venv, and
# data/raw travels with the tree. Run locally at tiny size with: DEVICE=cpu PARTS=smoke bash tools/device_check.sh
set -uo pipefail
OUT=${OUT:-/tmp/device_out}
DEVICE=${DEVICE:-cuda}
PARTS=${PARTS:-"eval bench smoke"}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
if ! .venv/bin/python -c "import torch" 2>/dev/null; then   # the system python as the venv
  # a wrapper, not a symlink: a symlinked interpreter would look for .venv/pyvenv.cfg and
  # lose the site-packages of the interpreter it points to
  rm -f .venv/bin/python; mkdir -p .venv/bin && printf '#!/bin/sh\nexec %s "$@"\n' "$(command -v python3)" > .venv/bin/python
  chmod +x .venv/bin/python
fi
touch .venv/.installed
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>/dev/null || echo "no GPU";
  .venv/bin/python -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)"; nproc; } \
  | tee "$OUT/machine.txt"
if [ -d .gpu/runs ]; then                    # carried checkpoints (model weights, no optimiser)
  mkdir -p results/exp52_testgap/runs && cp -r .gpu/runs/* results/exp52_testgap/runs/
fi
make data > "$OUT/data.log" 2>&1 || { echo "make data failed"; tail -5 "$OUT/data.log"; }
for part in $PARTS; do
  start=$(date +%s)
  case $part in
    eval)  timeout 280 make exp52 PRESET=quick DEVICE="$DEVICE" > "$OUT/exp52_quick.log" 2>&1 ;;
    # make bench's own command, with the per-point q* loop timed on 10 points (not 50)
    bench) timeout 170 .venv/bin/python -m common.bench --preset quick --device "$DEVICE" \
             --loop-points 10 > "$OUT/bench.log" 2>&1 ;;
    smoke) RESULTS_DIR=$PWD/results/smoke timeout 100 make all PRESET=smoke DEVICE="$DEVICE" \
             > "$OUT/smoke.log" 2>&1 ;;
  esac
  echo "$part: exit $? in $(( $(date +%s) - start )) s" | tee -a "$OUT/parts.txt"
done
tar czf "$OUT/results.tar.gz" --exclude='*.pt' results 2>/dev/null
ls -la "$OUT"
