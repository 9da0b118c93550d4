"""LAUNCH=slurm against a real one-node Slurm (tools/slurm_local.sh: Debian's slurm-wlm and munge,
started here as root and stopped after): the sharded Slurm run finds the same per-point values
and gaps tables as the local unsharded smoke run, and a job cancelled mid-run is taken up again
by running the same command."""
import csv
import os
import subprocess
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def slurm_cluster():
    if os.geteuid() != 0:
        pytest.skip("a one-node Slurm needs root here (apt-get install slurm-wlm munge, "
                    "slurmctld, slurmd); CI runs as root")
    up = subprocess.run(["bash", "tools/slurm_local.sh", "start"], cwd=ROOT,
                        capture_output=True, text=True, timeout=600)
    if up.returncode == 2 and "apt-get install slurm-wlm munge failed" in up.stderr:
        pytest.skip("the packages slurm-wlm and munge cannot be installed here: " + up.stderr)
    assert up.returncode == 0, up.stdout + up.stderr
    yield
    subprocess.run(["bash", "tools/slurm_local.sh", "stop"], cwd=ROOT, capture_output=True,
                   timeout=120)


def slurm_make(data, results, *args, **popen):
    env = dict(os.environ, DATA_DIR=str(data), RESULTS_DIR=str(results))
    env.pop("OMP_NUM_THREADS", None)
    command = ["make", "--no-print-directory", *args, "LAUNCH=slurm", "PRESET=smoke",
               "SLURM_MEM_GB=1"]
    if popen:
        return subprocess.Popen(command, cwd=ROOT, env=env, text=True, **popen)
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=900)


def per_point_files(results: Path, folder: str) -> dict:
    """The smoke run's per-point files (other tests add other lengths' and seeds' runs to the
    shared local folder: only runs/smoke-seed0/ is the smoke run)."""
    return {p.relative_to(results): p.read_bytes()
            for p in sorted((results / folder / "runs" / "smoke-seed0").rglob("per_point.csv"))}


def table(path: Path) -> list:
    """A gaps table without its provenance columns (when and by which command)."""
    with open(path) as f:
        return [{k: v for k, v in row.items() if not k.startswith("computed_")}
                for row in csv.DictReader(f)]


def test_sharded_slurm_run_equals_the_local_unsharded_one(smoke, dirs, slurm_cluster,
                                                          tmp_path):
    data, local = dirs
    results = tmp_path / "slurm_results"
    run = slurm_make(data, results, "exp52", "SHARDS=2")
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "jobs ended well" in run.stdout
    # each shard was its own job, and both evaluated chunks of the same evaluation
    logs = list((results / "slurm").glob("exp52_evaluate_*of2/*_log.out"))
    assert len(logs) == 2
    assert all("[eval] points" in p.read_text() for p in logs), "a shard did no chunk"
    ours, theirs = per_point_files(results, "exp52_testgap"), per_point_files(local,
                                                                              "exp52_testgap")
    assert ours.keys() == theirs.keys() and len(ours) >= 8
    assert ours == theirs, [str(k) for k in ours if ours[k] != theirs[k]]
    assert table(results / "exp52_testgap/gaps.csv") == table(local / "exp52_testgap/gaps.csv")
    again = slurm_make(data, results, "exp52", "SHARDS=2")   # nothing left to submit
    assert again.returncode == 0 and "0 job(s) submitted" in again.stdout, again.stdout


def squeue_names() -> dict:
    out = subprocess.run(["squeue", "-h", "-o", "%i|%j|%T"], capture_output=True, text=True)
    return {name: (job, state) for job, name, state in
            (line.split("|") for line in out.stdout.splitlines())}


def test_a_cancelled_job_is_resumed_by_running_the_command_again(smoke, dirs, slurm_cluster,
                                                                 tmp_path):
    data, local = dirs
    results = tmp_path / "slurm_results"
    launcher = slurm_make(data, results, "exp55", stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE)
    deadline, victim = time.time() + 600, None
    while victim is None and time.time() < deadline and launcher.poll() is None:
        for name, (job, state) in squeue_names().items():
            if name.startswith("isvae exp55 evaluate") and state == "RUNNING":
                victim = job
        time.sleep(0.5)
    assert victim, "no exp55 evaluation job was seen running"
    time.sleep(2)   # mid-run: some of its evaluations done, others not
    subprocess.run(["scancel", victim], check=True)
    out, err = launcher.communicate(timeout=600)
    assert launcher.returncode != 0, out + err   # make: 2 when its recipe (the launcher: 1) failed
    assert "failed" in err and "run the same command again" in err and "_log.out" in err
    resumed = slurm_make(data, results, "exp55")
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    ours, theirs = per_point_files(results, "exp55_dynamics"), per_point_files(local,
                                                                               "exp55_dynamics")
    assert ours.keys() == theirs.keys() and ours == theirs
