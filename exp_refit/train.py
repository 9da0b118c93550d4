"""Refit only the encoder of the base MNIST ffg VAE on corrupted validation images (set A),
measuring IWAE and L[q] on A and on corrupted test images (set B) every few epochs.

Set A: the first n_refit validation images with exactly NOISE flipped pixels each; set B: the
first n_refit test images, flipped the same way with another seed. Both are reproducible from
corruption_seed. Writes runs/<preset>-seed<seed>/noise_<n>/curves.csv per noise level.
"""
import math
from pathlib import Path

import torch

from common.config import CorruptFile, guarded
from common.data import flip_pixels
from common.runs.experiment import Experiment, trained_epochs
from exp52_testgap.base import base_ffg_model, load_base_model
from common.results.tables import read_csv, write_csv
from common.runs.train import (TrainConfig, check_identity, model_from_state,
                          read_checkpoint, run_identity, train)

CURVE_FIELDS = ["noise", "epoch", "set", "n_points", "iwae", "iwae_sem", "elbo", "elbo_sem"]
EVAL_SEED = 777  # the same evaluation draws at every epoch


def corrupted_sets(exp: Experiment, noise: int):
    cfg = exp.config
    a = flip_pixels(exp.data("mnist", "valid", cfg.n_refit), noise, cfg.corruption_seed + 2 * noise)
    b = flip_pixels(exp.data("mnist", "test", cfg.n_refit), noise,
                    cfg.corruption_seed + 2 * noise + 1)
    return a, b


def curve_point(model, x, k: int):
    """IWAE (k samples) and L[q] (mean over the same k samples): means and sems over points."""
    torch.manual_seed(EVAL_SEED)
    elbo, iwae = model.bounds(x, k)
    sem = lambda v: (v.std() / math.sqrt(len(v))).item()  # noqa: E731
    return {"n_points": len(x), "iwae": iwae.mean().item(), "iwae_sem": sem(iwae),
            "elbo": elbo.mean().item(), "elbo_sem": sem(elbo)}


def curve_epochs(cfg) -> list:
    """The epochs at which a refit curve is measured: 0 (the base encoder), then every eval_every."""
    return list(range(0, cfg.refit_epochs + 1, cfg.eval_every))


def check_curve(rows: list, noise: int, upto: int, cfg, path) -> None:
    """Refuse a curve with a hole: every epoch of curve_epochs up to `upto`, on A and on B."""
    for name in ("A", "B"):
        got = sorted(int(r["epoch"]) for r in rows if int(r["noise"]) == noise and r["set"] == name)
        want = [e for e in curve_epochs(cfg) if e <= upto]
        if got != want:
            missing = sorted(set(want) - set(got)) or sorted(set(got) - set(want))
            raise CorruptFile(f"{path}: the noise-{noise} curve on {name} is incomplete or has "
                              f"extra epochs ({missing[:5]}); delete {Path(path).parent} and run "
                              f"`make exp_refit` to remeasure it")


def refit(exp: Experiment, noise: int) -> list:
    cfg = exp.config
    run = exp.runs / f"noise_{noise}"
    set_a, set_b = corrupted_sets(exp, noise)
    curve_a, curve_b = set_a[:cfg.n_curve_points], set_b[:cfg.n_curve_points]
    curves_path = run / "curves.csv"
    done = trained_epochs(run)
    rows = [r for r in read_csv(curves_path, CURVE_FIELDS) if int(r["epoch"]) <= done] \
        if curves_path.exists() else []
    train_cfg = dict(batch_size=cfg.refit_batch, lr=cfg.refit_lr, warmup_epochs=0,
                     n_valid_monitor=cfg.n_curve_points, freeze_decoder=True, constant_lr=True)
    data = {**exp.data_identity("mnist"), "noise": noise, "corruption_seed": cfg.corruption_seed,
            "n_refit": cfg.n_refit}
    base = load_base_model(exp.preset, exp.seed, "mnist", exp.device)
    measure = lambda model, epoch: [  # noqa: E731
        {"noise": noise, "epoch": epoch, "set": s, **curve_point(model, x, cfg.iwae_k)}
        for s, x in (("A", curve_a), ("B", curve_b))]
    if not any(int(r["epoch"]) == 0 for r in rows):
        rows = measure(base, 0) + rows
    if done:
        state = read_checkpoint(run / "last.pt", exp.device)
        check_identity(state, run_identity(base.config, TrainConfig(epochs=done, **train_cfg),
                                           exp.seed, data), run / "last.pt")
        model = model_from_state(state, exp.device)
        if not any(int(r["epoch"]) == done for r in rows):
            # killed after the checkpoint, before its curve point was written: measure it now
            print(f"[refit noise {noise}] measuring the missing curve point of epoch {done}",
                  flush=True)
            rows += measure(model, done)
        check_curve(rows, noise, done, cfg, curves_path)
    else:
        model = base
    write_csv(curves_path, rows, CURVE_FIELDS)
    for epoch in range(done + cfg.eval_every - done % cfg.eval_every, cfg.refit_epochs + 1,
                       cfg.eval_every):
        train(model, set_a, set_b, TrainConfig(epochs=epoch, **train_cfg), run, exp.seed,
              resume=True, extra_config={"noise": noise, "refit": cfg},
              log_prefix=f"[refit noise {noise}] ", data_identity=data)
        rows += measure(model, epoch)
        write_csv(curves_path, rows, CURVE_FIELDS)
        a, b = rows[-2], rows[-1]
        print(f"[refit noise {noise}] epoch {epoch}: IWAE A {a['iwae']:.2f}  B {b['iwae']:.2f}",
              flush=True)
    return rows


def main(argv=None):
    exp = Experiment("exp_refit", argv, __doc__, stage="train")
    base_ffg_model(exp.preset, exp.seed, "mnist", exp.device)
    for noise in exp.config.noise:
        refit(exp, noise)
    exp.write_provenance("train_provenance.json")


if __name__ == "__main__":
    guarded(main)
