"""The work of some make goals as a graph of jobs: what LAUNCH=slurm submits
(common/runs/slurm.py) and what `make plan` schedules (common/runs/plan.py).

Each unit is one make call on a study's target with STEP= (train | evaluate | plot) and, for a
training part, TRAIN_ARGS= (e.g. "--families flow"): the Makefile stays the one place that says
how a step runs. A study's training is cut into the parts its cost model lists (a family, a
model, a decoder depth), which may run at once (each run folder is locked while it trains); its
evaluate step runs as SHARDS jobs of the same command that share the chunks of points
(common/runs/shards.py), except where the study's evaluation is not sharded (exp51, exp66,
exp_refit: one job); then its plot step. The seconds are the cost model's
(common/speed/costmodel.py, from a `make bench` file).
"""
from dataclasses import dataclass, field

from ..config import ConfigError
from ..speed.costmodel import evaluate_wall_s, predict

# make all's studies (Makefile: ALL_STUDIES), the ones reading the shared `base`, and what reads
# other studies' results
ALL_STUDIES = ("exp52", "exp55", "exp66", "exp52_large_encoder", "exp52_no_annealing", "exp53",
               "exp_refit", "exp54", "exp51")
BASE_USERS = ("exp52", "exp53", "exp54", "exp_refit")
VARIANTS = ("exp52_large_encoder", "exp52_no_annealing")
GOALS = ("all", "studies", "base") + ALL_STUDIES + ("exp52_variants", "exp_gradients",
                                                    "exp52_compare", "report")


@dataclass
class Unit:
    name: str                  # e.g. "exp52 train --families flow", "exp55 evaluate 2/4"
    goal: str                  # the make target
    variables: dict            # make variables of this unit (STEP, TRAIN_ARGS)
    deps: list = field(default_factory=list)   # names of units that must end well first
    seconds: float = 0.0       # the cost model's wall time of this unit
    kind: str = "train"        # data | train | evaluate | plot | finish

    def make_args(self) -> list:
        return [self.goal] + [f"{k}={v}" for k, v in self.variables.items()]


def expand_goals(goals, all_studies=ALL_STUDIES) -> tuple:
    """(studies, report, compare, base): the studies the goals name (all and studies: make's
    STUDIES, `all_studies`), and whether the report, the variants' comparison and the base
    model are among them."""
    unknown = [g for g in goals if g not in GOALS]
    if unknown:
        raise ConfigError(f"{' '.join(unknown)}: not a goal LAUNCH=slurm runs; use some of: "
                          f"{' '.join(GOALS)}")
    studies = []
    for g in goals:
        named = {"all": all_studies, "studies": all_studies, "exp52_variants": VARIANTS,
                 "base": ()}.get(g, (g,) if g not in ("report", "exp52_compare") else ())
        studies += [s for s in named if s not in studies]
    if any(g in ("all", "studies") for g in goals) and "exp55" in studies:
        studies.append("exp_gradients")
    report = any(g in ("all", "report") for g in goals)
    compare = any(g in ("all", "studies", "exp52_compare") for g in goals) and \
        any(v in studies for v in VARIANTS)
    return tuple(studies), report, compare, "base" in goals


def graph(goals, preset: str, shards: int, units: dict, qstar_steps: float,
          stacked: bool = False, studies: tuple = ALL_STUDIES) -> list:
    """The units of `goals` in an order where each comes after its dependencies (`studies`:
    make's STUDIES, what all and studies run)."""
    studies, report, compare, base_goal = expand_goals(goals, studies)
    costs = predict(units, preset, qstar_steps, stacked)
    out = [Unit("data", "data", {}, kind="data")]
    needs_base = base_goal or any(s in BASE_USERS for s in studies)
    if needs_base:
        exp52 = costs.get("exp52")
        ffg = dict((a, s) for a, s in exp52["train_parts"]).get("--families ffg", 0.0) \
            if exp52 else 0.0
        out.append(Unit("base", "base", {}, ["data"], ffg / 2, "train"))  # MNIST of the two
    trains = {}
    for study in studies:
        if study == "exp_gradients":   # reads exp55's runs: trains them where exp55 is not here
            if "exp55" not in studies:
                out += _train_units("exp55", costs.get("exp55"), [])
            trains[study] = [u.name for u in out if u.name.startswith("exp55 train")]
            continue
        deps = ["base"] if study in BASE_USERS else []
        made = _train_units(study, costs.get(study), deps)
        out += made
        trains[study] = [u.name for u in made]
    plots = []
    for study in studies:
        cost = costs.get(study)
        n = shards if cost and cost["shardable"] else 1
        wall = evaluate_wall_s(cost, n) if cost else 0.0
        names = [f"{study} evaluate" + (f" {k}/{n}" if n > 1 else "") for k in range(1, n + 1)]
        out += [Unit(name, study, {"STEP": "evaluate"}, trains[study], wall, "evaluate")
                for name in names]
        out.append(Unit(f"{study} plot", study, {"STEP": "plot"}, names, 0.0, "plot"))
        plots.append(f"{study} plot")
    if compare:
        out.append(Unit("exp52_compare", "exp52_compare", {},
                        [p for p in plots if p.startswith("exp52")], 0.0, "finish"))
    if report:
        out.append(Unit("report", "report", {}, plots + (["exp52_compare"] if compare else []),
                        0.0, "finish"))
    return out


def _train_units(study: str, cost, deps: list) -> list:
    parts = cost["train_parts"] if cost else [("", 0.0)]
    deps = ["data"] + deps
    return [Unit(f"{study} train" + (f" {args}" if args else ""), study,
                 {"STEP": "train", **({"TRAIN_ARGS": args} if args else {})}, deps, seconds)
            for args, seconds in parts]
