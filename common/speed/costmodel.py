"""Cost model: measured per-unit costs multiplied out to the wall time of each study.

`make bench` measures the units on the machine it runs on (common/speed/bench.py); `predict` counts
how many of each unit a preset's config needs and multiplies. Units, all in seconds:

    train_step[name]   one optimiser step of one model at the preset's batch size; name is
                       "<family>/<architecture>" (e.g. "ffg/standard", "ffg/large_decoder")
    ais_row            one leapfrog gradient evaluation of the decoder for one (chain, point) row
    qstar_row[family]  one q* step for one (point, sample) row of a local family (ffg, flow,
                       ...: common/models/families.py)
    iwae_row           one decoder forward for one (point, sample) row (L[q], IWAE, curves)

What cannot be known before running is an explicit assumption: `qstar_steps`, the mean number
of steps a q* fit takes under the preset's stopping rule (measured ones are in each gaps.csv,
column qstar_steps). Training counts one step per batch (train_step_stacked[name]: a model's
share of a stacked step, where measured); evaluation counts every split, the probe, the BDMC
(forward + reverse, once per decoder), the ffg q* behind every flow q*, and exp53's q* and AIS
once per decoder.
"""
import math

from ..models.families import GAUSSIAN, qstar_fits

TRAIN_SIZE = 50_000                 # training split of both data sets


def train_s(units, name, epochs, batch, n=TRAIN_SIZE, stacked=False):
    """Training time of one model; stacked: its share of a stacked run (common/runs/stacked.py),
    when the units hold a measured stacked step for this architecture."""
    step = units.get("train_step_stacked", {}).get(name) if stacked else None
    return epochs * math.ceil(n / batch) * (step or units["train_step"][name])


def probe_steps(cfg, qstar_steps: float) -> float:
    """q* steps per probed point: a continued fit runs at least `patience` more checks (its
    extra steps only), a refit the whole fit with twice the budget (about twice the steps)."""
    return cfg.qstar_patience * cfg.qstar_check_every if cfg.qstar_probe_mode == "continue" \
        else 2 * qstar_steps


def qstar_s(units, cfg, fits: list, n_points: int, qstar_steps: float,
            shared: bool = False) -> float:
    """q* fits of these families on n_points, the probe (on qstar_probe_points of every chunk of
    point_chunk points; of the first chunk only for a q* shared by encoders, exp53's; an
    extension where a probe misses is not counted) and the IWAE of each q* and the probe's two
    scores of each probed fit (k_eval)."""
    chunks = 1 if shared else math.ceil(n_points / cfg.point_chunk)
    probed = chunks * min(cfg.qstar_probe_points, n_points)
    fit = sum(n_points * cfg.qstar_samples * qstar_steps * units["qstar_row"][f] for f in fits)
    probe = sum(probed * cfg.qstar_samples * probe_steps(cfg, qstar_steps)
                * units["qstar_row"][f] for f in fits)
    return fit + probe + len(fits) * (n_points + 2 * probed) * cfg.k_eval * units["iwae_row"]


def ais_chain_moves(cfg) -> int:
    """HMC moves per point of one AIS run: every weighted chain's, plus what sets the step (a
    warm-up at beta = 0 from a proposal, a pilot sweep of PILOT_CHAINS from the prior, nothing
    with the paper's in-run adaptation)."""
    from ..inference.estimators import PILOT_CHAINS
    if cfg.ais_adapt:
        return cfg.ais_chains * cfg.ais_steps
    if cfg.ais_proposal == "prior":
        return (cfg.ais_chains + PILOT_CHAINS) * cfg.ais_steps
    return cfg.ais_chains * (cfg.ais_steps + cfg.ais_warmup)


def ais_s(units, cfg, n_points: int) -> float:
    return n_points * ais_chain_moves(cfg) * cfg.ais_leapfrog * units["ais_row"]


def fits_of(family: str, cfg=None) -> list:
    """The q* fits of one model: the Gaussian (unless cfg.qstar_ffg_fit is off for a
    non-Gaussian family) and its own family's."""
    fits = qstar_fits(family)
    return fits[1:] if len(fits) > 1 and cfg is not None and not cfg.qstar_ffg_fit else fits


def eval_s(units, cfg, family: str, n_points: int, qstar_steps: float) -> float:
    """One evaluation of one model on n_points: L[q] (k_eval), q* (ffg, and flow from it) with
    its probe and IWAE, AIS of log p^."""
    return n_points * cfg.k_eval * units["iwae_row"] \
        + qstar_s(units, cfg, fits_of(family, cfg), n_points, qstar_steps) + ais_s(units, cfg, n_points)


def bdmc_s(units, cfg, qstar_steps: float, family: str = GAUSSIAN) -> float:
    n = cfg.bdmc_points
    fits = fits_of(family, cfg)
    fit = sum(n * cfg.qstar_samples * qstar_steps * units["qstar_row"][f] for f in fits) \
        if cfg.ais_proposal == "qstar" else 0.0
    return fit + 2 * ais_s(units, cfg, n)


def evaluation(work_s: float, bdmc_s: float, n_points: int) -> dict:
    """One evaluation of an evaluate step: its work over points (shared between SHARDS), the
    BDMC it runs first (per decoder, one process: 0 where another evaluation of the same decoder
    made it) and its points (chunks of point_chunk bound the shards that help)."""
    return {"work_s": work_s, "bdmc_s": bdmc_s, "n_points": n_points}


def study_cost(train_parts: list, evaluations: list, point_chunk: int,
               shardable: bool = True) -> dict:
    """A study's (or results folder's) cost as the launcher runs it: `train_parts`, pairs
    (the train step's flags that train that part alone, e.g. "--families flow", or "" for the
    whole step; seconds), which may train at once; then the evaluate step, its `evaluations`
    one after the other, each cut into chunks of `point_chunk` points that SHARDS processes
    share (where `shardable`: the studies whose evaluate step uses
    common/runs/experiment.evaluate_decoder_family)."""
    return {"train": sum(s for _, s in train_parts),
            "evaluate": sum(e["work_s"] + e["bdmc_s"] for e in evaluations),
            "train_parts": [list(p) for p in train_parts], "evaluations": evaluations,
            "point_chunk": point_chunk, "shardable": shardable}


def evaluate_wall_s(study: dict, shards: int) -> float:
    """Wall time of a study's evaluate step run as `shards` processes: each evaluation's BDMC
    by one of them, its chunks spread over min(shards, chunks) (a chunk is never split)."""
    if not study["shardable"]:
        shards = 1
    return sum(e["bdmc_s"] + e["work_s"] / max(1, min(shards, -(-e["n_points"] // study["point_chunk"])))
               for e in study["evaluations"])


def predict(units: dict, preset: str, qstar_steps: float, stacked: bool = False) -> dict:
    """Predicted seconds per study (and per results folder, exp52's variants apart) and phase
    for `preset`, and the total: each study's folder declares its own count (Study.cost) of
    the units above. stacked: models of one family train stacked where the study stacks them
    (exp52, over its data sets; its default on a GPU). Studies without this preset are left
    out."""
    from ..studies import studies
    out = {}
    for study in studies().values():
        if study.cost is not None and preset in study.presets:
            out.update(study.cost(units, preset, qstar_steps, stacked))
    for study in out.values():
        study["total"] = study["train"] + study["evaluate"]
    out["all_s"] = sum(s["total"] for s in out.values())
    out["all_h"] = out["all_s"] / 3600
    return out
