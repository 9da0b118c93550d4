"""bounds.png / .pdf (Figure 5): per family, L[q], IWAE and AIS over training epochs, on the
training points (solid) and test points (dashed); hollow markers where BDMC missed its target."""
import matplotlib.pyplot as plt
import seaborn as sns

from common.results.claims import truthy
from common.config import guarded
from common.runs.experiment import Experiment
from common.results.plots import save

LINES = (("L_q", "ELBO of q", "C0"), ("iwae", "IWAE", "C1"), ("ais", "AIS", "C2"))


def main(argv=None):
    exp = Experiment("exp66", argv, __doc__)
    rows = exp.read_rows("bounds.csv", "exp66")
    sns.set_theme(style="whitegrid")
    families = list(dict.fromkeys(r["family"] for r in rows))
    fig, axes = plt.subplots(1, len(families), figsize=(5 * len(families), 3.6), squeeze=False,
                             sharey=True)
    for ax, family in zip(axes[0], families):
        for split, style in (("train", "-"), ("test", "--")):
            sel = sorted((r for r in rows if r["family"] == family and r["split"] == split),
                         key=lambda r: int(r["epoch"]))
            ep = [int(r["epoch"]) for r in sel]
            for key, label, color in LINES:
                ys = [float(r[key]) for r in sel]
                ax.plot(ep, ys, style, color=color, label=f"{label} ({split})")
                ax.scatter(ep, ys, s=12, color=color, zorder=3,
                           facecolors=[color if truthy(r["certified"]) else "white" for r in sel])
        ax.set_xscale("log")
        ax.set_xlabel("epoch")
        ax.set_title(f"{family.upper() if family == 'ffg' else family.capitalize()}, "
                     f"{exp.config.n_small} training points")
    axes[0][0].set_ylabel("nats")
    axes[0][-1].legend(fontsize=7, loc="lower right")
    save(fig, exp.out / "bounds")
    print(f"[exp66] wrote {exp.out / 'bounds.png'}")


if __name__ == "__main__":
    guarded(main)
