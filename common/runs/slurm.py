"""LAUNCH=slurm: the goals' units (common/runs/units.py) as Slurm jobs through submitit.

    make all LAUNCH=slurm PRESET=paper DEVICE=cuda SHARDS=4 SLURM_PARTITION=gpu

Each unit is one sbatch job that runs `make <study> STEP=... LAUNCH=local` in this folder (so
RESULTS_DIR, DATA_DIR and this checkout must be on a file system every node sees, with working
flock: run folders and evaluation chunks are locked there); a unit starts after the units it
depends on ended well (afterok). Requests: one GPU per job where DEVICE=cuda, SLURM_CPUS cores
(default: 8 with a GPU, else 1) and SLURM_MEM_GB, and a time limit of twice the cost model's
seconds plus 15 minutes. The command waits, printing one line when a job changes state and
every PROGRESS_EVERY_S (pending / running / done / failed, ETA from the cost model); the first
failed job ends it, naming the unit and its log, after cancelling the jobs it submitted; so does
Ctrl-C. Run again, it submits only the units that have not ended well (RESULTS_DIR/slurm/
state.json, per unit's command), and attaches to its jobs still queued or running.

State: squeue tells which jobs are queued or running (sacct needs Slurm's accounting database,
which a small cluster may lack); a job that left the queue ended well where submitit wrote its
result as a success.
"""
import argparse
import getpass
import importlib.util
import json
import os
import pickle
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

from ..config import ConfigError, atomic_write_text, fail, guarded
from .plan import default_units_path, hours, load_units
from .units import ALL_STUDIES, graph

ROOT = Path(__file__).resolve().parents[2]
POLL_S = 5.0               # squeue every so often
PROGRESS_EVERY_S = 60.0    # a progress line at least this often
LOST_AFTER_S = 30.0        # a job out of the queue without a result file after this is lost


def job_command(unit, run_vars: dict) -> list:
    """What the job runs: make on this checkout, the unit's step, the run's variables; one
    process per job (SHARDS=1: a shard is a job; JOBS=1)."""
    return ["make", "--no-print-directory", "-C", str(ROOT), *unit.make_args(),
            *[f"{k}={v}" for k, v in run_vars.items()], "LAUNCH=local", "SHARED_BUILT=1",
            "JOBS=1", "SHARDS=1"]


def sbatch_parameters(unit, a, cpus: int, after: list) -> dict:
    params = {"job_name": f"isvae {unit.name}"[:100], "cpus_per_task": cpus,
              "mem": f"{a.mem_gb}GB", "time": int(2 * unit.seconds / 60) + 15,
              "signal_delay_s": 60}
    if a.device == "cuda":
        params["gpus_per_node"] = 1
    if a.partition:
        params["partition"] = a.partition
    if a.account:
        params["account"] = a.account
    if after:
        params["dependency"] = "afterok:" + ":".join(after)
    extra = parse_slurm_args(a.slurm_args)
    if extra:
        params["additional_parameters"] = extra
    return params


def parse_slurm_args(text: str) -> dict:
    """SLURM_ARGS='--qos=high --constraint=h100' -> {"qos": "high", "constraint": "h100"}."""
    out = {}
    for word in shlex.split(text or ""):
        if not word.startswith("--") or "=" not in word:
            raise ConfigError(f"SLURM_ARGS: {word!r} is not an sbatch option of the form "
                              f"--name=value; give e.g. SLURM_ARGS='--qos=high --constraint=h100'")
        name, value = word[2:].split("=", 1)
        out[name.replace("-", "_")] = value
    return out


def queued(ids) -> dict:
    """{job id: state} of the given jobs still known to squeue (PENDING, RUNNING, ...)."""
    if not ids:
        return {}
    proc = subprocess.run(["squeue", "-h", "-o", "%i %T %r", "-u", getpass.getuser()],
                          capture_output=True, text=True)
    if proc.returncode:
        raise RuntimeError(f"squeue failed: {proc.stderr.strip()}")
    out = {}
    for line in proc.stdout.splitlines():
        job, state, reason = (line.split(None, 2) + ["", ""])[:3]
        if job in ids:
            out[job] = (state, reason)
    return out


def outcome(folder: Path, job_id: str):
    """("success", None), ("error", message) from submitit's result file, or None if none."""
    from submitit.core.utils import JobPaths
    path = JobPaths(folder, job_id, 0).result_pickle
    if not path.exists():
        return None
    with open(path, "rb") as f:
        status, payload = pickle.load(f)
    return status, (None if status == "success" else str(payload).strip().splitlines()[-1:])


def cancel(ids):
    if ids:
        subprocess.run(["scancel", *ids], capture_output=True)


class Launch:
    def __init__(self, a, units):
        self.a, self.units = a, units
        self.by_name = {u.name: u for u in units}
        self.folder = Path(a.results_dir) / "slurm"
        self.state_path = self.folder / "state.json"
        self.state = json.loads(self.state_path.read_text()) if self.state_path.exists() else {}
        self.cpus = a.cpus or (8 if a.device == "cuda" else 1)
        self.run_vars = {"PRESET": a.preset, "DEVICE": a.device, "SEED": a.seed,
                         **({"EPOCHS": a.epochs} if a.epochs else {}), **a.make_vars}
        self.jobs = {}   # unit name -> job id, this launch's (submitted or attached)

    def key(self, unit) -> str:
        return shlex.join(job_command(unit, self.run_vars) + [f"cpus={self.cpus}"])

    def unit_folder(self, unit) -> Path:
        return self.folder / unit.name.replace(" ", "_").replace("/", "of").replace("-", "")

    def save(self):
        self.folder.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.state_path, json.dumps(self.state, indent=1, sort_keys=True))

    def submit_all(self):
        import submitit
        from submitit.helpers import CommandFunction
        live = queued({s["job"] for s in self.state.values() if s.get("job")})
        for unit in self.units:
            old = self.state.get(unit.name, {})
            if old.get("key") == self.key(unit) and old.get("done"):
                continue
            if old.get("key") == self.key(unit) and old.get("job") in live:
                self.jobs[unit.name] = old["job"]    # still queued or running: attach
                continue
            after = [self.jobs[d] for d in unit.deps if d in self.jobs]
            ex = submitit.SlurmExecutor(folder=self.unit_folder(unit))
            ex.update_parameters(**sbatch_parameters(unit, self.a, self.cpus, after))
            env = {**os.environ, "OMP_NUM_THREADS": str(self.cpus)}   # torch: the job's cores
            job = ex.submit(CommandFunction(job_command(unit, self.run_vars), cwd=str(ROOT),
                                            env=env))
            self.jobs[unit.name] = job.job_id
            self.state[unit.name] = {"key": self.key(unit), "job": job.job_id, "done": False}
            self.save()
        done_before = len(self.units) - len(self.jobs)
        print(f"[slurm] {len(self.jobs)} job(s) submitted or still queued, {done_before} unit(s) "
              f"ended well before; logs in {self.folder}/<unit>/", flush=True)

    def log_of(self, name) -> Path:
        from submitit.core.utils import JobPaths
        return JobPaths(self.unit_folder(self.by_name[name]), self.jobs[name], 0).stdout

    def eta_s(self, finished: set, started: dict) -> float:
        """The cost model's longest remaining chain, with running units' elapsed time off."""
        now, best = time.time(), {}
        for u in self.units:
            if u.name not in self.jobs or u.name in finished:
                best[u.name] = 0.0
                continue
            own = max(0.0, u.seconds - (now - started[u.name])) if u.name in started \
                else u.seconds
            best[u.name] = own + max((best[d] for d in u.deps), default=0.0)
        return max(best.values(), default=0.0)

    def wait(self) -> int:
        finished, started, lost_since, last, last_print = set(), {}, {}, None, 0.0
        while len(finished) < len(self.jobs):
            q = queued(set(self.jobs.values()))
            for name, job in self.jobs.items():
                if name in finished:
                    continue
                if job in q:
                    if q[job][0] == "RUNNING":
                        started.setdefault(name, time.time())
                    if q[job][0] == "PENDING" and "DependencyNeverSatisfied" in q[job][1]:
                        return self.failed(name, "a unit it depends on failed")
                    continue
                result = outcome(self.unit_folder(self.by_name[name]), job)
                if result is None:
                    if time.time() - lost_since.setdefault(name, time.time()) > LOST_AFTER_S:
                        return self.failed(name, "it ended without a result (cancelled, "
                                                 "timed out or killed)")
                    continue
                if result[0] != "success":
                    return self.failed(name, " ".join(result[1]) or "the job failed")
                finished.add(name)
                self.state[name]["done"] = True
                self.save()
            counts = (sum(1 for j in self.jobs.values() if q.get(j, ("",))[0] == "PENDING"),
                      sum(1 for j in self.jobs.values() if q.get(j, ("",))[0] == "RUNNING"),
                      len(finished))
            if counts != last or time.time() - last_print >= PROGRESS_EVERY_S:
                print(f"[slurm] {len(self.jobs)} jobs: {counts[0]} pending, {counts[1]} "
                      f"running, {counts[2]} done, 0 failed; ETA "
                      f"{hours(self.eta_s(finished, started))} (cost model)", flush=True)
                last, last_print = counts, time.time()
            if len(finished) < len(self.jobs):
                time.sleep(POLL_S)
        print(f"[slurm] all {len(self.jobs)} jobs ended well", flush=True)
        return 0

    def failed(self, name, why) -> int:
        self.cancel_rest()
        print(f"error: unit '{name}' (job {self.jobs[name]}) failed: {why}; its log: "
              f"{self.log_of(name)}; run the same command again to go on from there",
              file=sys.stderr, flush=True)
        return 1

    def cancel_rest(self):
        cancel([j for n, j in self.jobs.items() if not self.state.get(n, {}).get("done")])


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("goals", nargs="+")
    p.add_argument("--studies", default=" ".join(ALL_STUDIES))
    p.add_argument("--preset", default="quick")
    p.add_argument("--device", default="auto")
    p.add_argument("--seed", default="0")
    p.add_argument("--epochs", default="")
    p.add_argument("--shards", type=int, default=1)
    p.add_argument("--units", type=Path, default=None)
    p.add_argument("--cpus", default="")
    p.add_argument("--mem-gb", type=int, default=16)
    p.add_argument("--partition", default="")
    p.add_argument("--account", default="")
    p.add_argument("--slurm-args", default="")
    p.add_argument("--make-vars", default="", help="NAME=value ... passed to every job's make")
    a = p.parse_args(argv)
    a.cpus = int(a.cpus) if a.cpus else 0
    a.make_vars = dict(w.split("=", 1) for w in shlex.split(a.make_vars) if w.split("=", 1)[1])
    a.results_dir = os.environ.get("RESULTS_DIR", str(ROOT / "results"))
    return a


def main(argv=None) -> int:
    a = parse_args(argv)
    for tool in ("sbatch", "squeue", "scancel"):
        if shutil.which(tool) is None:
            fail(f"LAUNCH=slurm needs Slurm's {tool} on PATH, and there is none here; run on a "
                 f"Slurm login node (or make slurm-local for a one-node Slurm on this machine)")
    if importlib.util.find_spec("submitit") is None:
        fail("LAUNCH=slurm needs submitit; run make setup (it is in requirements.txt)")
    parse_slurm_args(a.slurm_args)
    device = "cuda" if a.device == "cuda" else "cpu"
    units, qstar_steps, source, _ = load_units(a.units or default_units_path(
        device, Path(a.results_dir)))
    jobs = graph(a.goals, a.preset, a.shards, units, qstar_steps, stacked=device == "cuda",
                 studies=tuple(a.studies.split()))
    launch = Launch(a, jobs)
    try:
        launch.submit_all()
        return launch.wait()
    except KeyboardInterrupt:
        launch.cancel_rest()
        print("\n[slurm] interrupted: the jobs this command submitted were cancelled; run the "
              "same command again to go on from there", file=sys.stderr, flush=True)
        return 130


if __name__ == "__main__":
    sys.exit(guarded(main))
