#!/usr/bin/env bash
# make plan's figures for docs/cluster.md: make all PRESET=paper on 1, 8 and 64 GPUs (SHARDS=4:
# the paper preset's 1000 points are four chunks of 250), from the H200's cost units.
#   bash tools/plan_snapshot.sh   (then .venv/bin/python tools/sync_readmes.py)
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p docs/results/plan
for cluster in "1 1" "1 8" "8 8"; do
  set -- $cluster
  out="docs/results/plan/paper_$(( $1 * $2 ))gpu.md"
  { echo "\`make plan PRESET=paper DEVICE=cuda SHARDS=4 NODES=$1 GPUS_PER_NODE=$2\`:"; echo; echo '```'
    make -s --no-print-directory plan PRESET=paper DEVICE=cuda SHARDS=4 NODES="$1" GPUS_PER_NODE="$2"
    echo '```'; } > "$out"
  echo "wrote $out"
done
