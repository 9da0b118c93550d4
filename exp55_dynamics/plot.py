"""dynamics.png / .pdf: one panel per model and split; log p^, L[q*], L[q] over epochs with the
approximation gap (between log p^ and L[q*]) and the amortization gap (L[q*] to L[q]) shaded."""
import matplotlib.pyplot as plt
import seaborn as sns

from common.results.claims import truthy
from common.config import guarded
from common.runs.experiment import Experiment
from common.results.plots import AMORT_COLOR, APPROX_COLOR, save

from .config import MODELS



def main(argv=None):
    exp = Experiment("exp55", argv, __doc__)
    rows = exp.read_rows("gaps_over_epochs.csv", "exp55",
                         numeric=("epoch", "logpx", "L_qstar", "L_q"),
                         known={"model": tuple(MODELS), "split": ("train", "valid")})
    sns.set_theme(style="whitegrid")
    models = list(dict.fromkeys(r["model"] for r in rows))
    splits = list(dict.fromkeys(r["split"] for r in rows))
    fig, axes = plt.subplots(len(splits), len(models), figsize=(3.4 * len(models), 3.0 * len(splits)),
                             squeeze=False, sharey="col")
    for i, split in enumerate(splits):
        for j, model in enumerate(models):
            sel = sorted((r for r in rows if r["model"] == model and r["split"] == split),
                         key=lambda r: int(r["epoch"]))
            ep = [int(r["epoch"]) for r in sel]
            f = lambda k: [float(r[k]) for r in sel]  # noqa: E731
            ax = axes[i][j]
            ok = [truthy(r.get("certified")) for r in sel]
            for key, color, label in (("logpx", "k", "log p̂(x)"), ("L_qstar", APPROX_COLOR, "L[q*]"),
                                      ("L_q", AMORT_COLOR, "L[q]")):
                ax.plot(ep, f(key), "-", color=color, label=label)
                # filled: the checkpoint's estimates are certified; hollow: a certificate missed
                ax.scatter(ep, f(key), s=18, edgecolors=color, zorder=3,
                           facecolors=[color if c else "white" for c in ok])
            ax.fill_between(ep, f("L_qstar"), f("logpx"), color=APPROX_COLOR, alpha=0.25)
            ax.fill_between(ep, f("L_q"), f("L_qstar"), color=AMORT_COLOR, alpha=0.25)
            ax.set_xscale("log")
            ax.set_title(f"{model}, {split}", fontsize=10)
            if i == len(splits) - 1:
                ax.set_xlabel("epoch")
    axes[0][0].set_ylabel("nats")
    axes[0][0].legend(fontsize=8)
    fig.suptitle("filled markers: certified checkpoint; hollow: a certificate missed (see "
                 "gaps_over_epochs.csv, certificate_misses)", fontsize=9)
    save(fig, exp.out / "dynamics")
    print(f"[exp55] wrote {exp.out / 'dynamics.png'}")


if __name__ == "__main__":
    guarded(main)
