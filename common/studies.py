"""Studies as units: a study is its folder. Each <folder>/config.py declares

    STUDY = Study(name="exp52", folder="exp52_testgap", presets=..., ...)

and nothing in common/ lists studies: the report, the cost model, the benchmarks and the step
times find them here, by their one name (the make target, the preset key, the prefix of their
step times). A new study touches its folder, the Makefile and the README.
"""
import importlib
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Results:
    """One results folder of a study, as the report shows it."""
    folder: str               # under RESULTS_DIR (and docs/results in a snapshot)
    title: str                # the report's heading
    claim: str                # the paper's claim it tests, in words
    figures: tuple = ()       # figure stems (PNG/PDF) in the folder
    step_tag: str = ""        # its make steps end with _<tag> (exp52's variants)


@dataclass(frozen=True)
class Study:
    name: str                 # make target, preset key, step-time prefix
    folder: str               # the package (train / evaluate / plot) and its results folder
    presets: dict             # preset name -> config (common/presets.presets)
    results: tuple = ()       # Results, in the report's order (default: the study's folder)
    cost: object = None       # cost(units, preset, qstar_steps, stacked) -> {results name: {
                              # "train": s, "evaluate": s}} (common/speed/costmodel.py's units)
    models: object = None     # models(preset) -> {"<family>/<architecture>"} it trains
    variants: dict = field(default_factory=dict)   # exp52's Table-3 variants: name -> overrides


def discover() -> dict:
    """{name: Study} of every folder at the repository root with a config.py declaring STUDY,
    in folder order."""
    out = {}
    for path in sorted(ROOT.glob("*/config.py")):
        module = importlib.import_module(f"{path.parent.name}.config")
        study = getattr(module, "STUDY", None)
        if isinstance(study, Study):
            if study.name in out:
                raise ValueError(f"two studies are named {study.name}: {out[study.name].folder} "
                                 f"and {study.folder}")
            out[study.name] = study
    return out


_STUDIES = {}


def studies() -> dict:
    if not _STUDIES:
        _STUDIES.update(discover())
    return _STUDIES


def study(name: str) -> Study:
    found = studies()
    if name not in found:
        raise ValueError(f"unknown study {name!r}; the studies are: {', '.join(found)}")
    return found[name]


def results_of(s: Study) -> tuple:
    return s.results or (Results(s.folder, s.name, ""),)


def steps_of(results_folder: str, steps: dict, provenance: dict = None) -> dict:
    """The step_times.json entries of one results folder's make steps: its study's name as the
    prefix, and the folder's own tag (exp52's variants) or no variant's. With the provenance of
    one length or seed of the folder (a rung of the ladder, a seed's folder), only the runs made
    for it: their --preset, --seed and --epochs (absent: the preset's) are its own."""
    for s in studies().values():
        for r in results_of(s):
            if r.folder != results_folder:
                continue
            tags = tuple(f"_{x.step_tag}" for x in results_of(s) if x.step_tag)
            mine = {k: v for k, v in steps.items() if k.startswith(f"{s.name}_") and
                    (k.endswith(f"_{r.step_tag}") if r.step_tag else not k.endswith(tags))}
            if provenance is None:
                return mine
            made_for = {k: [run for run in runs if _made_for(run, s, provenance)]
                        for k, runs in mine.items()}
            return {k: runs for k, runs in made_for.items() if runs}
    return {}


def _made_for(run: dict, s: Study, provenance: dict) -> bool:
    """Whether a step's run (its command) made the results of this provenance."""
    args = str(run.get("command", "")).split()
    flag = lambda name: args[args.index(name) + 1] if name in args[:-1] else None  # noqa: E731
    config = provenance.get("config")
    preset, epochs = provenance.get("preset"), config.get("epochs") if isinstance(config, dict) \
        else None
    if flag("--preset") != preset or flag("--seed") not in (None, str(provenance.get("seed"))):
        return False
    given = flag("--epochs")
    default = getattr(s.presets.get(preset), "epochs", None)
    return (int(given) if given and given.isdigit() else default) == epochs
