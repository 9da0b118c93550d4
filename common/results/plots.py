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


def panels_by_split(rows, panel_width: float, draw, height: float = 3.8):
    """One panel per split of gaps.csv rows, side by side: draw(ax, split, rows of that split);
    the first panel carries the legend. Returns the figure."""
    splits = list(dict.fromkeys(r["split"] for r in rows))
    fig, axes = plt.subplots(1, len(splits), figsize=(panel_width * len(splits), height),
                             squeeze=False)
    for ax, split in zip(axes[0], splits):
        draw(ax, split, [r for r in rows if r["split"] == split])
    axes[0][0].legend()
    return fig


def figure_key(inputs, *code_files) -> str:
    """The checksum of what a figure is drawn from: its data and the source of the code that
    draws it (this module and the caller's), so new data or new plotting code redraws it."""
    from ..config import content_checksum
    sources = [Path(f).read_text() for f in (__file__, *code_files)]
    return content_checksum({"inputs": inputs, "code": sources})


def _files_checksum(stem: Path) -> str:
    import hashlib
    digest = hashlib.sha256()
    for ext in ("png", "pdf"):
        digest.update(stem.with_suffix(f".{ext}").read_bytes())
    return digest.hexdigest()


def drawn_from(stem: Path, key: str) -> bool:
    """Whether stem.png and stem.pdf are the figure of `key` (figure_key) as `save` wrote them:
    the record beside them names the key and the files' checksum, so a figure whose data, code
    or files changed since is drawn again (matplotlib's drawing is most of a report's time:
    11 of its 13 s on the smoke results with a ladder)."""
    stem, record = Path(stem), Path(f"{stem}.drawn_from")
    try:
        key_then, files_then = record.read_text().split()
        return key_then == key and files_then == _files_checksum(stem)
    except (OSError, ValueError):
        return False


def save(fig, stem: Path, key: str = None) -> None:
    """stem.png and stem.pdf, the same bytes for the same figure (the PDF carries no creation
    date: a snapshot that redraws a figure changes its file only where the figure changed);
    key (figure_key): recorded beside them for drawn_from."""
    from ..config import write_error
    stem = Path(stem)
    fig.tight_layout()
    try:
        stem.parent.mkdir(parents=True, exist_ok=True)
        for ext in ("png", "pdf"):
            tmp = stem.with_name(f"{stem.name}.{os.getpid()}.part.{ext}")
            try:
                fig.savefig(tmp, dpi=130,
                            metadata={"CreationDate": None} if ext == "pdf" else None)
                tmp.replace(stem.with_suffix(f".{ext}"))
            except (OSError, RuntimeError, ValueError) as err:
                tmp.unlink(missing_ok=True)
                raise write_error(stem.with_suffix(f".{ext}"), err) from None
        if key is not None:   # what drawn_from compares
            from ..config import atomic_write_text
            atomic_write_text(Path(f"{stem}.drawn_from"), f"{key} {_files_checksum(stem)}\n")
    finally:
        plt.close(fig)
