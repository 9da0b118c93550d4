"""posteriors.png / .pdf: Figure 2 of the paper. Columns: the four chosen training points;
rows: the true posterior (grid), the amortised FFG q, the optimal FFG q*, the optimal flow q*."""
import matplotlib.pyplot as plt
import torch

from common.config import CorruptFile, guarded
from common.runs.experiment import Experiment
from common.results.plots import save


ROWS = ("true posterior", "amortised FFG q", "optimal FFG q*", "optimal flow q*")


def main(argv=None):
    exp = Experiment("exp51", argv, __doc__)
    path = exp.out / "posteriors.pt"
    if not path.exists():
        raise CorruptFile(f"{path} is missing; run `make exp51` first")
    try:
        d = torch.load(path, weights_only=False)
    except Exception as err:  # noqa: BLE001 - any unpickling error means a bad file
        raise CorruptFile(f"{path} is unreadable ({type(err).__name__}); run `make exp51`") from None
    size, chosen = d["size"], d["chosen"]
    fig, axes = plt.subplots(len(ROWS) + 1, len(chosen), figsize=(2.6 * len(chosen), 2.5 * 5))
    for c, index in enumerate(chosen):
        axes[0][c].imshow(d["points"][c].view(28, 28), cmap="gray")
        axes[0][c].set_title(f"train #{index}\n{d['rules'][c]}", fontsize=8)
        axes[0][c].axis("off")
        z = d["z"][:, c].view(size, size, 2)
        for r, name in enumerate(ROWS, start=1):
            ax = axes[r][c]
            ax.contourf(z[..., 0], z[..., 1], d[name][:, c].view(size, size).exp(), levels=12,
                        cmap="Blues")
            ax.tick_params(labelsize=6)
            if c == 0:
                ax.set_ylabel(name, fontsize=9)
    fig.tight_layout()
    save(fig, exp.out / "posteriors")
    print(f"[exp51] wrote {exp.out / 'posteriors.png'}")


if __name__ == "__main__":
    guarded(main)
