"""Refit only the encoder of the base MNIST ffg VAE on corrupted validation images (set A),
measuring IWAE and L[q] on A and on corrupted test images (set B) every few epochs.

Set A: the first n_refit validation images with exactly NOISE flipped pixels each; set B: the
first n_refit test images, flipped the same way with another seed. Both are reproducible from
corruption_seed. Writes runs/<preset>-seed<seed>/noise_<n>/curves.csv per noise level.
"""
import math

import torch

from common.data import flip_pixels
from common.experiment import Experiment, base_ffg_model, base_run_dir, trained_epochs
from common.config import fail
from common.tables import read_csv, write_csv
from common.train import RunMismatch, TrainConfig, check_identity, load_model, run_identity, train

FOLDER = "exp_refit"
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


def refit(exp: Experiment, noise: int) -> list:
    cfg = exp.config
    run = exp.runs / f"noise_{noise}"
    set_a, set_b = corrupted_sets(exp, noise)
    curve_a, curve_b = set_a[:cfg.n_curve_points], set_b[:cfg.n_curve_points]
    curves_path = run / "curves.csv"
    done = trained_epochs(run)
    rows = [r for r in read_csv(curves_path) if int(r["epoch"]) <= done] \
        if curves_path.exists() else []
    train_cfg = dict(batch_size=cfg.refit_batch, lr=cfg.refit_lr, warmup_epochs=0,
                     n_valid_monitor=cfg.n_curve_points, freeze_decoder=True, constant_lr=True)
    data = {"noise": noise, "corruption_seed": cfg.corruption_seed, "n_refit": cfg.n_refit}
    if done:
        model = load_model(run / "last.pt", exp.device)
        state = torch.load(run / "last.pt", map_location="cpu", weights_only=False)
        try:
            check_identity(state, run_identity(model.config, TrainConfig(epochs=done, **train_cfg),
                                               exp.seed, data), run / "last.pt")
        except RunMismatch as err:
            fail(str(err))
    else:
        model = load_model(base_run_dir(exp.preset, exp.seed, "mnist") / "last.pt", exp.device)
    if not rows:
        rows = [{"noise": noise, "epoch": 0, "set": s, **curve_point(model, x, cfg.iwae_k)}
                for s, x in (("A", curve_a), ("B", curve_b))]
    for epoch in range(done + cfg.eval_every - done % cfg.eval_every, cfg.refit_epochs + 1,
                       cfg.eval_every):
        try:
            train(model, set_a, set_b, TrainConfig(epochs=epoch, **train_cfg), run, exp.seed,
                  resume=True, extra_config={"noise": noise, "refit": cfg},
                  log_prefix=f"[refit noise {noise}] ", data_identity=data)
        except RunMismatch as err:
            fail(str(err))
        rows += [{"noise": noise, "epoch": epoch, "set": s, **curve_point(model, x, cfg.iwae_k)}
                 for s, x in (("A", curve_a), ("B", curve_b))]
        write_csv(curves_path, rows, CURVE_FIELDS)
        a, b = rows[-2], rows[-1]
        print(f"[refit noise {noise}] epoch {epoch}: IWAE A {a['iwae']:.2f}  B {b['iwae']:.2f}",
              flush=True)
    write_csv(curves_path, rows, CURVE_FIELDS)
    return rows


def main(argv=None):
    exp = Experiment("exp_refit", FOLDER, argv, __doc__)
    base_ffg_model(exp.preset, exp.seed, "mnist", exp.device)
    for noise in exp.config.noise:
        refit(exp, noise)
    exp.write_provenance("train_provenance.json")


if __name__ == "__main__":
    main()
