"""Evaluation sharded by points (common/runs/shards.py, make's SHARDS=N): every chunk of points
is computed once over the processes that share an evaluation, a chunk whose process died is
computed by another, and the merged result is the same bits as one process's."""
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from common.runs import shards

ROOT = Path(__file__).resolve().parents[1]

# one tiny flow model (ffg and flow q*, probe, BDMC, AIS) evaluated on 20 points in chunks of 6
EVALUATE = """
import sys, torch
from common.inference.gaps import EvalConfig
from common.models.vae import VAE, model_config
from common.runs.experiment import evaluate_one
torch.manual_seed(0)
model = VAE(model_config(family="flow", z_dim=4, enc_hidden=(16,), dec_hidden=(16,),
                         flow_hidden=8, context_dim=3))
g = torch.Generator().manual_seed(1)
x = torch.bernoulli(torch.rand(4, 784, generator=g)[torch.randint(0, 4, (20,), generator=g)],
                    generator=g)
cfg = EvalConfig(n_points=20, k_eval=20, qstar_samples=2, qstar_lr=1e-2, qstar_check_every=5,
                 qstar_patience=1, qstar_max_steps=30, ais_chains=2, ais_steps=5, ais_leapfrog=2,
                 ais_warmup=2, bdmc_points=4, qstar_probe_points=4, ais_budget_cap=1,
                 point_chunk=6)
evaluate_one(model, x, cfg, 0, sys.argv[1])
"""


def run(args, **kw):
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    return subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, **kw)


def test_two_shards_compute_each_chunk_once_and_equal_one_process_bit_for_bit(tmp_path):
    script = tmp_path / "evaluate.py"
    script.write_text(EVALUATE)
    alone = run([sys.executable, str(script), str(tmp_path / "alone" / "eval")])
    assert alone.returncode == 0, alone.stderr[-2000:]
    sharded = run([sys.executable, "-m", "common.runs.shards", "2", "--", sys.executable,
                   str(script), str(tmp_path / "sharded" / "eval")])
    assert sharded.returncode == 0, sharded.stdout[-2000:] + sharded.stderr[-2000:]
    # 4 chunks (points 0-5, 6-11, 12-17, 18-19), each computed by one of the two processes
    done = [line for line in sharded.stdout.splitlines() if "[eval] points " in line]
    assert sorted(line.split("[eval] points ")[1].split(" of")[0] for line in done) == \
        ["0-5", "12-17", "18-19", "6-11"]
    assert {line.split("]")[0] for line in sharded.stdout.splitlines()} >= {"[shard 1/2",
                                                                             "[shard 2/2"}
    assert sum("[eval] BDMC (" in line for line in sharded.stdout.splitlines()) == 1
    a = (tmp_path / "alone" / "eval" / "per_point.csv").read_bytes()
    b = (tmp_path / "sharded" / "eval" / "per_point.csv").read_bytes()
    assert a == b and len(a.splitlines()) == 21
    # a rerun reads every chunk back: the evaluation is cached
    again = run([sys.executable, str(script), str(tmp_path / "sharded" / "eval")])
    assert "[eval] cached: model" in again.stdout


def test_chunks_in_order_each_computed_once_and_read_back(tmp_path):
    calls = []

    def compute(start):
        calls.append(start)
        return {"values": torch.arange(start, start + 3, dtype=torch.float32)}

    sizes = {0: 3, 3: 3, 6: 3}
    first = shards.computed_chunks(tmp_path, {"k": 1}, sizes, compute)
    assert calls == [0, 3, 6] and [r["values"][0].item() for r in first] == [0, 3, 6]
    shards.computed_chunks(tmp_path, {"k": 1}, sizes, compute)
    assert calls == [0, 3, 6]                     # read back, not recomputed
    shards.computed_chunks(tmp_path, {"k": 2}, sizes, compute)
    assert calls == [0, 3, 6] * 2                 # another key: computed again
    (tmp_path / "chunk_0000003.pt").write_bytes(b"torn")
    shards.computed_chunks(tmp_path, {"k": 2}, sizes, compute)
    assert calls[-1] == 3                         # an unreadable chunk is recomputed


def test_a_chunk_held_by_a_process_that_dies_is_computed_here(tmp_path):
    hold = run([sys.executable, "-c", "import sys; print('ok')"])   # warm the interpreter
    assert hold.returncode == 0
    holder = subprocess.Popen(
        [sys.executable, "-c", "import fcntl, sys, time\n"
         f"f = open({str(tmp_path / 'chunk_0000000.lock')!r}, 'a+')\n"
         "fcntl.flock(f, fcntl.LOCK_EX); print('held', flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    killer = subprocess.Popen([sys.executable, "-c", f"import os, time; time.sleep(1); "
                                                     f"os.kill({holder.pid}, 9)"])
    t0 = time.time()
    out = shards.computed_chunks(tmp_path, {"k": 1}, {0: 2},
                                 lambda start: {"v": torch.zeros(2)})
    killer.wait()
    holder.wait()
    assert time.time() - t0 >= 0.5 and out[0]["v"].tolist() == [0.0, 0.0]


def test_launcher_fails_with_the_shards_status_and_refuses_bad_counts():
    failed = run([sys.executable, "-m", "common.runs.shards", "2", "--", sys.executable, "-c",
                  "import sys; print('working'); sys.exit(3)"])
    assert failed.returncode == 3
    assert "[shard 1/2] working" in failed.stdout and "rerun the same command" in failed.stderr
    bad = run([sys.executable, "-m", "common.runs.shards", "0", "--", "true"])
    assert bad.returncode == 2 and "SHARDS >= 1" in bad.stderr


@pytest.mark.parametrize("shard_count, cores, threads", [(1, 2, 2), (2, 2, 1), (4, 2, 1),
                                                         (2, 16, 8)])
def test_threads_per_shard_never_oversubscribe(shard_count, cores, threads):
    assert shards.threads_per_shard(shard_count, cores) == threads


def test_each_shard_starts_on_its_own_share_of_the_units_and_visits_all(monkeypatch):
    """exp55's units (a checkpoint and split) are one chunk each: shards that took them in the
    same order would wait on each other; rotated, shard k of n starts at the k-th n-th, and
    every shard still visits every unit once. Alone, the order is the list's."""
    units = list(range(7))
    assert shards.my_order(units) == units
    monkeypatch.setenv("SHARD_COUNT", "2")
    orders = []
    for k in (0, 1):
        monkeypatch.setenv("SHARD_INDEX", str(k))
        orders.append(shards.my_order(units))
    assert orders[0] == units and orders[1] == [3, 4, 5, 6, 0, 1, 2]
    assert all(sorted(o) == units for o in orders)
    assert shards.my_order([]) == []
    # the launcher tells each process its index and the count
    out = run([sys.executable, "-m", "common.runs.shards", "2", "--", sys.executable, "-c",
               "import os; print('shard', os.environ['SHARD_INDEX'], os.environ['SHARD_COUNT'])"])
    assert out.returncode == 0
    assert "[shard 1/2] shard 0 2" in out.stdout and "[shard 2/2] shard 1 2" in out.stdout
