"""Figures shared by several experiments (matplotlib only; plot scripts add seaborn styling)."""
import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

APPROX_COLOR, AMORT_COLOR = "#4C72B0", "#DD8452"


def gap_bars(ax, rows, labels, title=""):
    """Stacked bars from gaps.csv rows: approximation gap at the bottom, amortization gap on top,
    each with its standard-error bar."""
    col = lambda k: [float(r[k]) for r in rows]  # noqa: E731
    approx = col("approx_gap")
    xs = range(len(rows))
    ax.bar(xs, approx, color=APPROX_COLOR, label="approximation", yerr=col("approx_gap_sem"),
           capsize=3)
    ax.bar(xs, col("amort_gap"), bottom=approx, color=AMORT_COLOR, label="amortization",
           yerr=col("amort_gap_sem"), capsize=3)
    ax.set_xticks(list(xs))
    ax.set_xticklabels(labels)
    ax.set_ylabel("gap (nats)")
    ax.axhline(0, color="black", lw=0.8)
    if title:
        ax.set_title(title)


def save(fig, stem: Path) -> None:
    """stem.png and stem.pdf."""
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    for ext in ("png", "pdf"):
        tmp = stem.with_name(f"{stem.name}.{os.getpid()}.part.{ext}")
        fig.savefig(tmp, dpi=130)
        tmp.replace(stem.with_suffix(f".{ext}"))
    plt.close(fig)
