"""gaps.png / gaps.pdf: per dataset, stacked approximation and amortization gaps per family; for
a Table-3 variant also table_vs_standard.md/.tex (compare.py)."""
import matplotlib.pyplot as plt
import seaborn as sns

from common.config import guarded
from common.data import DATASETS
from common.models.families import FAMILIES
from common.runs.experiment import Experiment
from common.results.plots import gap_bars, save

from .compare import compare
from .evaluate import NAMES

GAP_COLUMNS = ("n_points", "logpx", "L_qstar", "L_q", "approx_gap", "approx_gap_sem",
               "amort_gap", "amort_gap_sem", "total_gap", "total_gap_sem")


def main(argv=None):
    exp = Experiment("exp52", argv, __doc__)
    rows = exp.read_rows("gaps.csv", "exp52", numeric=GAP_COLUMNS,
                         known={"model": tuple(FAMILIES), "dataset": DATASETS,
                                "split": ("test", "train")})
    sns.set_theme(style="whitegrid")
    datasets = list(dict.fromkeys(r["dataset"] for r in rows))
    splits = list(dict.fromkeys(r["split"] for r in rows))
    fig, axes = plt.subplots(len(splits), len(datasets), figsize=(4.5 * len(datasets),
                                                                   3.6 * len(splits)),
                             squeeze=False)
    for i, split in enumerate(splits):
        for j, dataset in enumerate(datasets):
            sel = [r for r in rows if r["dataset"] == dataset and r["split"] == split]
            gap_bars(axes[i][j], sel, [NAMES[r["model"]] for r in sel],
                     f"{NAMES[dataset]}, {split} ({sel[0]['n_points']} points)")
    axes[0][0].legend()
    save(fig, exp.out / "gaps")
    print(f"[exp52] wrote {exp.out / 'gaps.png'}")
    if exp.config.variant != "standard":   # Table 3: the variant against the standard models
        standard_runs = exp.out.parent / exp.folder / "runs" / exp.runs.name
        for line in compare(exp.config.variant, rows, exp.runs, standard_runs, exp.out):
            print(f"[exp52] {line}")


if __name__ == "__main__":
    guarded(main)
