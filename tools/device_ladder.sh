#!/usr/bin/env bash
# The 300-epoch rung of the ladder (exp52 and exp55, long preset) on a lent GPU machine, in ONE
# call of the device tool, for a session whose CPU cannot train it (about 8 h of 2-core CPU):
#
#   run: bash tools/device_ladder.sh      (carry data/raw; the machine's python3 has the packages)
#
# exp52's four families (each family's MNIST and Fashion models stacked, --stack on) and exp55's
# six models train as ten processes at once, torch.compile'd (CUDA graphs); each process goes on
# to its own evaluation when its training ends. At DEADLINE seconds whatever still runs is
# stopped (training checkpoints every epoch, evaluation caches per model) and the results come
# back under $OUT: results.tgz.part* (cat them, then tar xzf) and logs.tgz. The finished runs'
# checkpoints travel without Adam's moments (the transfer holds 64 MiB; the weights are what
# evaluation and a rerun of the train step read; the run is complete, so nothing resumes from
# them), marked "optimizer_state_dropped", and last.pt is left out where epoch_<EPOCHS>.pt holds
# the same state (on arrival: cp epoch_<EPOCHS>.pt last.pt); an unfinished run's last.pt comes
# back whole, to resume, the furthest first while there is room. Ten processes saturate the H200
# (measured: about 4 model-epochs/s together; the rung is 4200), so one 10-minute call trains
# part of the rung: EXP52_FAMILIES="ffg flow" EXP55_MODELS="large_encoder" pick a part (either
# may be empty).
# Locally, tiny: PRESET=smoke EPOCHS=2 DEVICE=cpu COMPILE=off DEADLINE=120 OUT=/tmp/o bash ...
set -u
PRESET=${PRESET:-long}; EPOCHS=${EPOCHS:-300}; DEVICE=${DEVICE:-cuda}; COMPILE=${COMPILE:-on}
DEADLINE=${DEADLINE:-470}; PY=${PY:-python3}; OUT=${OUT:?set OUT to the folder that comes back}
export OMP_NUM_THREADS=1 TORCHINDUCTOR_COMPILE_THREADS=1 PYTHONUNBUFFERED=1
export RESULTS_DIR=${RESULTS_DIR:-$PWD/results}
start=$SECONDS
logs=$(mktemp -d)
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
  $PY -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)"
  nproc; git rev-parse HEAD; } > "$OUT/machine.txt" 2>&1
$PY -m common.data mnist fashion || exit 1

ARGS="--preset $PRESET --device $DEVICE --seed 0 --epochs $EPOCHS"
pids=()
launch() {  # name, then the shell line; one process group each, so that it can be stopped whole
  setsid bash -c "$2" > "$logs/$1.log" 2>&1 &
  pids+=($!)
}
for f in ${EXP52_FAMILIES-ffg flow cflow af}; do
  launch "exp52_$f" "$PY -m exp52_testgap.train $ARGS --variant standard --families $f --stack on \
    --compile $COMPILE && $PY -m exp52_testgap.evaluate $ARGS --variant standard --families $f"
done
for m in ${EXP55_MODELS-ffg flow cflow af large_encoder large_decoder}; do
  launch "exp55_$m" "$PY -m exp55_dynamics.train $ARGS --models $m --compile $COMPILE && \
    $PY -m exp55_dynamics.evaluate $ARGS --models $m"
done

alive() { for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null && return 0; done; return 1; }
while alive && (( SECONDS - start < DEADLINE )); do
  sleep 20
  echo "--- $((SECONDS - start)) s, GPU $(nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader 2>/dev/null)"
  for l in "$logs"/*.log; do
    printf '%-18s %s\n' "$(basename "$l" .log)" "$(tr '\r' '\n' < "$l" | grep -v '^\s*$' | tail -1 | cut -c1-110)"
  done
done
for p in "${pids[@]}"; do kill -TERM -- "-$p" 2>/dev/null; done
sleep 3
for p in "${pids[@]}"; do kill -KILL -- "-$p" 2>/dev/null; done
echo "stopped at $((SECONDS - start)) s"

# finished runs: every checkpoint without Adam's moments; unfinished runs: their last.pt whole
# (resumable: carry it to the next machine, or train on here), the furthest first, while the
# transfer has room (KEEP_MB), else left behind and said so
$PY - "$EPOCHS" "${KEEP_MB:-58}" <<'EOF'
import sys, torch
from pathlib import Path
from common.config import results_dir
epochs, room = int(sys.argv[1]), float(sys.argv[2]) * 2**20
runs = []
for last in sorted(results_dir().glob("*/runs/*/*/last.pt")):
    state = torch.load(last, map_location="cpu", weights_only=False)
    runs.append((state["epoch"] >= epochs, state["epoch"], last))
for done, epoch, last in sorted(runs, key=lambda r: (not r[0], -r[1])):
    run = last.parent
    if done:
        if (run / f"epoch_{epochs}.pt").exists():
            last.unlink()   # the same state as epoch_<EPOCHS>.pt: copied back on arrival
        for pt in run.glob("*.pt"):
            s = torch.load(pt, map_location="cpu", weights_only=False)
            s["optimizer"]["state"] = {}
            s["optimizer_state_dropped"] = "finished run; Adam's moments left on the device machine"
            torch.save(s, pt)
    else:
        for pt in run.glob("epoch_*.pt"):
            pt.unlink()   # kept checkpoints of an unfinished run: rewritten when it resumes
    size = sum(pt.stat().st_size for pt in run.glob("*.pt"))
    keep = size <= room
    room -= size if keep else 0
    if not keep:
        for pt in run.glob("*.pt"):
            pt.unlink()
    print(f"{run.relative_to(results_dir())}: epoch {epoch}/{epochs}, "
          f"{'finished' if done else 'unfinished'}, checkpoints "
          f"{f'packed ({size / 2**20:.1f} MiB)' if keep else 'left behind: no room'}")
EOF
tar czf "$OUT/logs.tgz" -C "$logs" .
tar czf - -C "$RESULTS_DIR/.." "$(basename "$RESULTS_DIR")" | split -b 15M - "$OUT/results.tgz.part"
ls -la "$OUT"
echo "packed at $((SECONDS - start)) s"
