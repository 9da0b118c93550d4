"""gaps.png / .pdf: approximation and amortization gaps against decoder depth (Table 5)."""
import seaborn as sns

from common.config import guarded
from common.runs.experiment import Experiment
from common.results.plots import gap_bars, panels_by_split, save

from .evaluate import label


def main(argv=None):
    exp = Experiment("exp54", argv, __doc__)
    rows = exp.read_rows("gaps.csv", "exp54")
    sns.set_theme(style="whitegrid")

    def draw(ax, split, sel):
        sel = sorted(sel, key=lambda r: int(r["decoder_layers"]))
        gap_bars(ax, sel, [label(r["decoder_layers"]) for r in sel],
                 f"FFG VAEs, {sel[0]['dataset']} {split} ({sel[0]['n_points']} points)")
    fig = panels_by_split(rows, 5, draw)
    save(fig, exp.out / "gaps")
    print(f"[exp54] wrote {exp.out / 'gaps.png'}")


if __name__ == "__main__":
    guarded(main)
