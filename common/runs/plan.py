"""`make plan`: what make all would take on a cluster of NODES x GPUS_PER_NODE GPUs, from the cost
model, before anything is submitted.

The jobs are LAUNCH=slurm's (common/runs/units.py), each holding one GPU (or one node's share of
CPUs) for the cost model's seconds; they are scheduled as Slurm would start them with every
dependency met, longest remaining path first (list scheduling). Printed: the wall time, the
critical path (the longest chain of dependent jobs: no cluster finishes sooner), the number of
jobs and the GPU-hours they hold.

    python -m common.runs.plan all --preset paper --device cuda --nodes 8 --gpus-per-node 8 --shards 4
"""
import argparse
import heapq
import json
from pathlib import Path

from ..config import ConfigError, fail, guarded
from .units import ALL_STUDIES, graph

ROOT = Path(__file__).resolve().parents[2]
# the units a plan uses when none is named: the lent H200's (make bench on it) for a GPU, else
# this machine's latest make bench, else the committed CPU one
GPU_UNITS = ROOT / "docs/results/gpu_h200/bench.json"
CPU_UNITS = ROOT / "docs/results/bench_cpu/bench.json"


def default_units_path(device: str, results_dir: Path) -> Path:
    if device == "cuda":
        return GPU_UNITS
    local = results_dir / "bench" / "bench.json"
    return local if local.exists() else CPU_UNITS


def load_units(path: Path) -> tuple:
    """(units, paper-rule q* steps, a line saying where they come from, the unit names filled
    in from another: a bench file made before a model or family existed lacks its unit; a
    missing architecture takes its family's standard step, a missing family's q* row the
    flow's)."""
    if not path.exists():
        raise ConfigError(f"UNITS={path} does not exist; run make bench (it writes "
                          f"results/bench/bench.json) or give UNITS=path/to/bench.json")
    bench = json.loads(path.read_text())
    if "cost_units" not in bench:
        raise ConfigError(f"UNITS={path} holds no cost_units; give a bench.json made by make bench")
    units = {k: (dict(v) if isinstance(v, dict) else v) for k, v in bench["cost_units"].items()}
    filled = []
    for name in sorted(_model_names()):
        if name not in units["train_step"]:
            family = name.split("/")[0]
            like = f"{family}/standard" if f"{family}/standard" in units["train_step"] \
                else "ffg/standard"
            units["train_step"][name] = units["train_step"][like]
            filled.append(f"{name} as {like}")
    for family in ("ffg", "flow", "af"):
        if family not in units["qstar_row"]:
            units["qstar_row"][family] = units["qstar_row"]["flow"]
            filled.append(f"q* row of {family} as flow's")
    prov = bench.get("provenance", {})
    source = (f"{path.relative_to(ROOT) if path.is_relative_to(ROOT) else path} (make bench on "
              f"{prov.get('device', '?')}, commit {prov.get('git_commit', '?')}, "
              f"{prov.get('time', '?')})")
    return units, bench.get("cost_qstar_steps_paper_rule", 3000), source, filled


def _model_names() -> set:
    from ..studies import studies
    names = set()
    for study in studies().values():
        if study.models is not None:
            for preset in study.presets:
                names |= set(study.models(preset))
    return names


def schedule(units: list, slots: int) -> dict:
    """Start and end time of every unit on `slots` GPUs: whenever a slot is free, the ready unit
    with the longest path to the end starts on it (a unit is ready when its dependencies have
    ended). Returns {name: (start, end)}."""
    by_name = {u.name: u for u in units}
    order = {u.name: i for i, u in enumerate(units)}
    users = {u.name: [] for u in units}
    for u in units:
        for d in u.deps:
            users[d].append(u.name)
    rank = {}
    for u in reversed(units):   # units come after their dependencies
        rank[u.name] = u.seconds + max((rank[v] for v in users[u.name]), default=0.0)
    waiting = {u.name: len(u.deps) for u in units}
    ready = [(-rank[u.name], i, u.name) for i, u in enumerate(units) if not u.deps]
    heapq.heapify(ready)
    running, times, free, now = [], {}, slots, 0.0
    while ready or running:
        while ready and free:
            _, _, name = heapq.heappop(ready)
            end = now + by_name[name].seconds
            times[name] = (now, end)
            heapq.heappush(running, (end, name))
            free -= 1
        now, name = heapq.heappop(running)
        free += 1
        for v in users[name]:
            waiting[v] -= 1
            if not waiting[v]:
                heapq.heappush(ready, (-rank[v], order[v], v))
    return times


def critical_path(units: list) -> list:
    """The longest chain of dependent units (by seconds), first to last."""
    best = {}
    for u in units:
        prev = max(u.deps, key=lambda d: best[d][0], default=None)
        best[u.name] = ((best[prev][0] if prev else 0.0) + u.seconds, prev)
    name = max(best, key=lambda n: best[n][0])
    chain = []
    while name:
        chain.append(name)
        name = best[name][1]
    return chain[::-1]


def hours(s: float) -> str:
    return f"{s / 3600:.1f} h" if s >= 3600 else f"{s / 60:.1f} min"


def plan_text(goals, preset, device, nodes, gpus_per_node, shards, units_path,
              studies=ALL_STUDIES) -> str:
    units, qstar_steps, source, filled = load_units(units_path)
    jobs = graph(goals, preset, shards, units, qstar_steps, stacked=device == "cuda",
                 studies=studies)
    slots = nodes * gpus_per_node
    times = schedule(jobs, slots)
    wall = max(end for _, end in times.values())
    chain = critical_path(jobs)
    by_name = {u.name: u for u in jobs}
    kinds = {}
    for u in jobs:
        kinds[u.kind] = kinds.get(u.kind, 0) + 1
    held = sum(u.seconds for u in jobs)
    lines = [
        f"plan: make all PRESET={preset} DEVICE={device} SHARDS={shards} on {nodes} node(s) x "
        f"{gpus_per_node} GPU(s) = {slots} job slot(s), "
        + ("one GPU per job" if device == "cuda" else "a GPU's place taken by a CPU job"),
        f"units: {source}; q* steps per fit {qstar_steps:.0f} (paper's rule)"
        + (f"; filled in: {', '.join(filled)}" if filled else ""),
        f"jobs: {len(jobs)} ({', '.join(f'{n} {k}' for k, n in kinds.items())}); "
        f"GPU-hours held: {held / 3600:.1f}",
        f"wall time: {hours(wall)} (the critical path alone: "
        f"{hours(sum(by_name[n].seconds for n in chain))})",
        "critical path: " + " -> ".join(f"{n} ({hours(by_name[n].seconds)})" for n in chain
                                       if by_name[n].seconds > 0),
        "longest jobs: " + ", ".join(
            f"{u.name} {hours(u.seconds)}"
            for u in sorted(jobs, key=lambda u: -u.seconds)[:6]),
    ]
    return "\n".join(lines)


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("goals", nargs="+", help="make goals (all, a study, ...)")
    p.add_argument("--preset", default="paper")
    p.add_argument("--device", default="cuda", choices=("auto", "cpu", "cuda"))
    p.add_argument("--nodes", type=int, default=1)
    p.add_argument("--gpus-per-node", type=int, default=1)
    p.add_argument("--shards", type=int, default=1)
    p.add_argument("--units", type=Path, default=None,
                   help="a make bench file (default: the H200's for cuda, else this machine's)")
    p.add_argument("--studies", default=" ".join(ALL_STUDIES),
                   help="the studies of make all (make's STUDIES)")
    return p.parse_args(argv)


def main(argv=None):
    import os
    a = parse_args(argv)
    for flag, v in (("NODES", a.nodes), ("GPUS_PER_NODE", a.gpus_per_node), ("SHARDS", a.shards)):
        if v < 1:
            fail(f"{flag}={v} is not allowed; use a whole number >= 1")
    device = "cuda" if a.device == "cuda" else "cpu"
    path = a.units or default_units_path(device, Path(os.environ.get("RESULTS_DIR",
                                                                     ROOT / "results")))
    print(plan_text(a.goals, a.preset, device, a.nodes, a.gpus_per_node, a.shards, path,
                    tuple(a.studies.split())))


if __name__ == "__main__":
    guarded(main)
