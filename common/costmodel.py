"""Cost model: measured per-unit costs multiplied out to the wall time of each study.

`make bench` measures the units on the machine it runs on (common/bench.py); `predict` counts
how many of each unit a preset's config needs and multiplies. Units, all in seconds:

    train_step[name]   one optimiser step of one model at the preset's batch size; name is
                       "<family>/<architecture>" (e.g. "ffg/standard", "ffg/large_decoder")
    ais_row            one leapfrog gradient evaluation of the decoder for one (chain, point) row
    qstar_row[family]  one q* step for one (point, sample) row, family ffg or flow
    iwae_row           one decoder forward for one (point, sample) row (L[q], IWAE, curves)

What cannot be known before running is an explicit assumption: `qstar_steps`, the mean number
of steps a q* fit takes under the preset's stopping rule (measured ones are in each gaps.csv,
column qstar_steps). Training counts one step per batch (train_step_stacked[name]: a model's
share of a stacked step, where measured); evaluation counts every split, the probe, the BDMC
(forward + reverse, once per decoder), the ffg q* behind every flow q*, and exp53's q* and AIS
once per decoder.
"""
import dataclasses
import math

from .families import GAUSSIAN, qstar_fits
from .presets import EXP52_VARIANTS, EXP55_MODELS, PRESETS

TRAIN_SIZE = 50_000                 # training split of both data sets
REFIT_SIZE = 10_000                 # set A of exp_refit (the corrupted validation split)


def _train_s(units, name, epochs, batch, n=TRAIN_SIZE, stacked=False):
    """Training time of one model; stacked: its share of a stacked run (common/stacked.py),
    when the units hold a measured stacked step for this architecture."""
    step = units.get("train_step_stacked", {}).get(name) if stacked else None
    return epochs * math.ceil(n / batch) * (step or units["train_step"][name])


def probe_steps(cfg, qstar_steps: float) -> float:
    """q* steps per probed point: a continued fit runs at least `patience` more checks (its
    extra steps only), a refit the whole fit with twice the budget (about twice the steps)."""
    return cfg.qstar_patience * cfg.qstar_check_every if cfg.qstar_probe_mode == "continue" \
        else 2 * qstar_steps


def _qstar_s(units, cfg, fits: list, n_points: int, qstar_steps: float) -> float:
    """q* fits of these families on n_points, the probe (on qstar_probe_points) and the IWAE of
    each q* and of each probed fit (k_eval)."""
    fit = sum(n_points * cfg.qstar_samples * qstar_steps * units["qstar_row"][f] for f in fits)
    probe = sum(cfg.qstar_probe_points * cfg.qstar_samples * probe_steps(cfg, qstar_steps)
                * units["qstar_row"][f] for f in fits)
    return fit + probe + len(fits) * (n_points + cfg.qstar_probe_points) * cfg.k_eval \
        * units["iwae_row"]


def ais_chain_moves(cfg) -> int:
    """HMC moves per point of one AIS run: every weighted chain's, plus what sets the step (a
    warm-up at beta = 0 from a proposal, a pilot sweep of PILOT_CHAINS from the prior, nothing
    with the paper's in-run adaptation)."""
    from .estimators import PILOT_CHAINS
    if cfg.ais_adapt:
        return cfg.ais_chains * cfg.ais_steps
    if cfg.ais_proposal == "prior":
        return (cfg.ais_chains + PILOT_CHAINS) * cfg.ais_steps
    return cfg.ais_chains * (cfg.ais_steps + cfg.ais_warmup)


def _ais_s(units, cfg, n_points: int) -> float:
    return n_points * ais_chain_moves(cfg) * cfg.ais_leapfrog * units["ais_row"]


def _fits(family: str) -> list:
    return qstar_fits(family)


def _eval_s(units, cfg, family: str, n_points: int, qstar_steps: float) -> float:
    """One evaluation of one model on n_points: L[q] (k_eval), q* (ffg, and flow from it) with
    its probe and IWAE, AIS of log p^."""
    return n_points * cfg.k_eval * units["iwae_row"] \
        + _qstar_s(units, cfg, _fits(family), n_points, qstar_steps) + _ais_s(units, cfg, n_points)


def _bdmc_s(units, cfg, qstar_steps: float, family: str = GAUSSIAN) -> float:
    n = cfg.bdmc_points
    fits = qstar_fits(family)
    fit = sum(n * cfg.qstar_samples * qstar_steps * units["qstar_row"][f] for f in fits) \
        if cfg.ais_proposal == "qstar" else 0.0
    return fit + 2 * _ais_s(units, cfg, n)


def _exp52_eval_s(units, c, family: str, qstar_steps: float) -> float:
    """exp52's evaluations of one model: every split it is evaluated on (the training split:
    Table 3's families, on c.points("train"))."""
    return sum(_eval_s(units, c, family, c.points(s), qstar_steps) for s in c.eval_splits
               if s != "train" or family in c.train_split_families)


def predict(units: dict, preset: str, qstar_steps: float, stacked: bool = False) -> dict:
    """Predicted seconds per study and phase for `preset`, and the total. stacked: exp52's
    models of one family train stacked over the datasets (its default on a GPU)."""
    out = {}
    c = PRESETS["exp52"][preset]
    stack = stacked and len(c.datasets) > 1
    out["exp52"] = {
        "train": sum(_train_s(units, f"{f}/standard", c.epochs, c.batch_size, stacked=stack)
                     for _ in c.datasets for f in c.families),
        "evaluate": sum(_exp52_eval_s(units, c, f, qstar_steps)
                        for _ in c.datasets for f in c.families)
        + sum(_bdmc_s(units, c, qstar_steps, f) for _ in c.datasets for f in c.families)}
    for variant, overrides in EXP52_VARIANTS.items():   # Table 3: as exp52's units (the
        if variant == "standard":                       # 500-500 trunk costs a little more)
            continue
        v = dataclasses.replace(c, **overrides)
        out[f"exp52_{variant}"] = {
            "train": sum(_train_s(units, f"{f}/standard", v.epochs, v.batch_size, stacked=stack)
                         for _ in v.datasets for f in v.families),
            "evaluate": sum(_exp52_eval_s(units, v, f, qstar_steps)
                            + _bdmc_s(units, v, qstar_steps, f)
                            for _ in v.datasets for f in v.families)}
    c = PRESETS["exp51"][preset]   # grids are seconds; q* (two ffg starts and a flow) dominate
    out["exp51"] = {"train": _train_s(units, "ffg/exp51", c.epochs, c.batch_size),
                    # Figure 2 fits the FFG and the flow q* by design
                    "evaluate": _eval_s(units, c, "flow", c.n_candidates, qstar_steps)}
    c = PRESETS["exp53"][preset]   # the base decoder is exp52's; per split: L[q] of every
    shared = sorted({f for fam in c.families for f in _fits(fam)})   # encoder, q* of each
    out["exp53"] = {                                  # family ONCE (SharedQstar), AIS once
        "train": sum(_train_s(units, f"{f}/{e}", c.epochs, c.batch_size)
                     for e in c.encoders for f in c.families),
        "evaluate": len(c.eval_splits) * (
            len(c.encoders) * len(c.families) * c.n_points * c.k_eval * units["iwae_row"]
            + _qstar_s(units, c, shared, c.n_points, qstar_steps) + _ais_s(units, c, c.n_points))
        + _bdmc_s(units, c, qstar_steps, c.families[0])}
    c = PRESETS["exp54"][preset]   # decoders of other depths counted as the standard one
    out["exp54"] = {
        "train": sum(_train_s(units, "ffg/standard", c.epochs, c.batch_size)
                     for n in c.decoder_layers if n != 2),
        "evaluate": sum(len(c.eval_splits) * _eval_s(units, c, GAUSSIAN, c.n_points, qstar_steps)
                        + _bdmc_s(units, c, qstar_steps) for _ in c.decoder_layers)}
    c = PRESETS["exp55"][preset]
    checkpoints = len(c.checkpoint_epochs())
    out["exp55"] = {
        "train": sum(_train_s(units, "/".join(EXP55_MODELS[m]), c.epochs, c.batch_size)
                     for m in c.models),
        "evaluate": sum(checkpoints * (2 * _eval_s(units, c, EXP55_MODELS[m][0], c.n_points,
                                                   qstar_steps)
                                     + _bdmc_s(units, c, qstar_steps, EXP55_MODELS[m][0]))
                        for m in c.models)}
    c = PRESETS["exp_refit"][preset]
    curve_rows = 2 * c.n_curve_points * c.iwae_k * (c.refit_epochs // c.eval_every + 1)
    out["exp_refit"] = {
        "train": len(c.noise) * _train_s(units, "ffg/standard", c.refit_epochs, c.refit_batch,
                                         REFIT_SIZE),
        "evaluate": len(c.noise) * (curve_rows * units["iwae_row"]
                                    + 2 * 2 * _eval_s(units, c, GAUSSIAN, c.qstar_points,
                                                      qstar_steps))}
    for study in out.values():
        study["total"] = study["train"] + study["evaluate"]
    out["all_s"] = sum(s["total"] for s in out.values())
    out["all_h"] = out["all_s"] / 3600
    return out
