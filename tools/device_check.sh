#!/usr/bin/env bash
# One prepared run on a lent GPU machine (see the GPU section of README.md). Parts (PARTS=...):
#   bench    `make bench DEVICE=cuda`'s command: speed ratios, the stacked-training step
#            (alone vs x2 / x4) and the cost model's paper-preset prediction (issue 16);
#   compile  one MNIST ffg model, 2 quick epochs, eager then --compile on: the per-epoch wall
#            time of each (epoch 2 is the steady state; epoch 1 of the compiled run includes
#            compiling);
#   tf32     tools/tf32_check.py: the change of log p^ (IWAE) under TF32 matmuls;
#   smoke    the smoke preset of every experiment on cuda (`make all PRESET=smoke`);
#   eval     the quick exp52 evaluation from carried checkpoints (certificates; measured once).
# Each part has its own time limit so one slow part cannot take the others' time; the default
# parts fit one 10-minute command. Results go to $OUT as one tarball (no checkpoints) plus the
# logs. The machine has torch and the other packages in its system python3 and no network: the
# system python stands in for .venv, and data/raw travels with the tree. Run locally at tiny
# size with: DEVICE=cpu PARTS="tf32 smoke" bash tools/device_check.sh
set -uo pipefail
OUT=${OUT:-/tmp/device_out}
DEVICE=${DEVICE:-cuda}
PARTS=${PARTS:-"bench compile tf32 smoke"}
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
    bench) timeout 230 .venv/bin/python -m common.speed.bench --preset quick --device "$DEVICE" \
             --loop-points 10 > "$OUT/bench.log" 2>&1 ;;
    smoke) RESULTS_DIR=$PWD/results/smoke timeout 100 make all PRESET=smoke DEVICE="$DEVICE" \
             > "$OUT/smoke.log" 2>&1 ;;
    compile) for c in off on; do
               RESULTS_DIR=$PWD/results/compile_$c timeout 110 .venv/bin/python -m \
                 exp52_testgap.train --preset quick --device "$DEVICE" --families ffg \
                 --datasets mnist --epochs 2 --compile $c > "$OUT/compile_$c.log" 2>&1
             done ;;
    tf32)  timeout 60 .venv/bin/python tools/tf32_check.py --device "$DEVICE" \
             > "$OUT/tf32.log" 2>&1 ;;
  esac
  echo "$part: exit $? in $(( $(date +%s) - start )) s" | tee -a "$OUT/parts.txt"
done
tar czf "$OUT/results.tar.gz" --exclude='*.pt' results 2>/dev/null
ls -la "$OUT"
