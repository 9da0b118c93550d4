"""refit.png / .pdf: IWAE on A (refit set) and B (independent set) against refit epoch, one panel
per noise level, as the gain over epoch 0 (the same points and evaluation draws at every epoch,
so the gain is paired; the s.e.m. of the absolute level, in curves.csv, is much wider)."""
import matplotlib.pyplot as plt
import numpy as np
import seaborn as sns

from common.config import guarded
from common.runs.experiment import Experiment
from common.results.plots import save

from .train import check_curve


def main(argv=None):
    exp = Experiment("exp_refit", argv, __doc__)
    rows = exp.read_rows("curves.csv", "exp_refit")
    for noise in sorted({int(r["noise"]) for r in rows}):
        check_curve(rows, noise, exp.config.refit_epochs, exp.config, exp.out / "curves.csv")
    sns.set_theme(style="whitegrid")
    levels = sorted({int(r["noise"]) for r in rows})
    fig, axes = plt.subplots(1, len(levels), figsize=(4.2 * len(levels), 3.6), squeeze=False)
    for ax, noise in zip(axes[0], levels):
        for name, color in (("A", "#4C72B0"), ("B", "#C44E52")):
            sel = sorted((r for r in rows if int(r["noise"]) == noise and r["set"] == name),
                         key=lambda r: int(r["epoch"]))
            ep = np.array([int(r["epoch"]) for r in sel])
            iw = np.array([float(r["iwae"]) for r in sel])
            # curves relative to epoch 0 so A and B share one axis
            ax.plot(ep, iw - iw[0], "-o", ms=3, color=color,
                    label=f"{name} ({'refit' if name == 'A' else 'held out'}), start {iw[0]:.1f}")
        ax.set_title(f"{noise} flipped pixels", fontsize=10)
        ax.set_xlabel("refit epoch")
        ax.legend(fontsize=8)
    axes[0][0].set_ylabel("IWAE gain over epoch 0 (nats)")
    save(fig, exp.out / "refit")
    print(f"[exp_refit] wrote {exp.out / 'refit.png'}")


if __name__ == "__main__":
    guarded(main)
