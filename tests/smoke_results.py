"""The smoke results every end-to-end test reads: each experiment run once through the Makefile
on the smoke preset, on synthetic data in the real on-disk format (no network). The fixtures
`dirs` and `smoke` are declared in conftest.py (session scope: made once per test run)."""
import csv
import os
import subprocess
from pathlib import Path

import torch

from common.data import checksum_path, sha256_of

ROOT = Path(__file__).resolve().parent.parent


def synthetic_split(n, gen, prototypes):
    labels = torch.randint(0, len(prototypes), (n,), generator=gen)
    return torch.bernoulli(prototypes[labels], generator=gen).to(torch.uint8), labels


def make_dirs(tmp_path_factory):
    data = tmp_path_factory.mktemp("data")
    gen = torch.Generator().manual_seed(0)
    for name in ("mnist", "fashion"):
        prototypes = torch.rand(10, 784, generator=gen) ** 3
        splits = {s: synthetic_split(n, gen, prototypes)
                  for s, n in (("train", 1200), ("valid", 300), ("test", 300))}
        path = data / f"{name}_binary.pt"
        torch.save(splits, path)   # with its checksum, as `make data` writes it
        checksum_path(path).write_text(sha256_of(path) + "\n")
    return data, tmp_path_factory.mktemp("results")


def make(target, dirs, *variables, check=True):
    data, results = dirs
    env = dict(os.environ, DATA_DIR=str(data), RESULTS_DIR=str(results))
    proc = subprocess.run(["make", "--no-print-directory", target, *variables], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)
    if check and proc.returncode != 0:
        raise AssertionError(f"make {target} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


def run_smoke(dirs):
    """Every experiment run once on the smoke preset, two at a time as `make all JOBS=2` runs
    them (one torch thread each: a make -j of the study targets, which builds the shared `base`
    once), then exp_gradients alone (its own output is checked: it retrains nothing); each test
    checks one of them, so any test can run alone. Returns each target's stdout (the studies
    run together share one)."""
    studies = ("exp52", "exp55", "exp66", "exp53", "exp_refit", "exp54", "exp51")
    together = make(studies[0], dirs, *studies[1:], "-j", "2", "JOBS=2", "PRESET=smoke",
                    "NOISE=50").stdout
    runs = dict.fromkeys(studies, together)
    runs["exp_gradients"] = make("exp_gradients", dirs, "PRESET=smoke").stdout
    return runs


def rows(path):
    with open(path) as f:
        return list(csv.DictReader(f))
