"""gaps.png / gaps.pdf: gap bars per family (one panel per split), encoder size on the labels."""
import seaborn as sns

from common.config import guarded
from common.runs.experiment import Experiment
from common.results.plots import gap_bars, panels_by_split, save

from .evaluate import NAMES


def main(argv=None):
    exp = Experiment("exp53", argv, __doc__)
    rows = exp.read_rows("gaps.csv", "exp53")
    sns.set_theme(style="whitegrid")

    def draw(ax, split, sel):
        labels = [f"{NAMES[r['model']]}{' lin.' if r.get('encoder') == 'linear_encoder' else ''}"
                  f"\n{int(r['encoder_params']):,} params" for r in sel]
        gap_bars(ax, sel, labels, f"frozen {sel[0]['dataset']} decoder, {split} "
                 f"({sel[0]['n_points']} points)")
    fig = panels_by_split(rows, 6.4, draw)
    save(fig, exp.out / "gaps")
    print(f"[exp53] wrote {exp.out / 'gaps.png'}")


if __name__ == "__main__":
    guarded(main)
