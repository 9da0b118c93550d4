"""gaps.png / .pdf: approximation and amortization gaps against decoder depth (Table 5)."""
import matplotlib.pyplot as plt
import seaborn as sns

from common.config import guarded
from common.experiment import Experiment
from common.plots import gap_bars, save

from .evaluate import label
from .train import FOLDER


def main(argv=None):
    exp = Experiment("exp54", FOLDER, argv, __doc__)
    rows = exp.read_rows("gaps.csv", "exp54")
    sns.set_theme(style="whitegrid")
    splits = list(dict.fromkeys(r["split"] for r in rows))
    fig, axes = plt.subplots(1, len(splits), figsize=(5 * len(splits), 3.8), squeeze=False)
    for ax, split in zip(axes[0], splits):
        sel = sorted((r for r in rows if r["split"] == split), key=lambda r: int(r["decoder_layers"]))
        gap_bars(ax, sel, [label(r["decoder_layers"]) for r in sel],
                 f"FFG VAEs, {sel[0]['dataset']} {split} ({sel[0]['n_points']} points)")
    axes[0][0].legend()
    save(fig, exp.out / "gaps")
    print(f"[exp54] wrote {exp.out / 'gaps.png'}")


if __name__ == "__main__":
    guarded(main)
