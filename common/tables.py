"""Tables as LaTeX (booktabs) and Markdown from the same rows, made with tabulate."""
import csv
import os
from pathlib import Path

from tabulate import tabulate

from .config import atomic_write_text, temp_path

LABELS = {"logpx": r"log p̂(x)", "L_qstar": "L[q*]", "L_q": "L[q]",
          "approx_gap": "Approximation gap", "amort_gap": "Amortization gap",
          "total_gap": "Total gap"}
LATEX_LABELS = {"logpx": r"$\log \hat p(x)$", "L_qstar": r"$\mathcal{L}[q^*]$",
                "L_q": r"$\mathcal{L}[q]$", "approx_gap": "Approximation",
                "amort_gap": "Amortization", "total_gap": "Total"}


def pm(mean: float, sem: float, digits: int = 2) -> str:
    return f"{mean:.{digits}f} ± {sem:.{digits}f}"


def write_tables(stem: Path, headers: list, rows: list, latex_rows: list = None,
                 caption: str = "") -> None:
    """stem.md (GitHub Markdown) and stem.tex (booktabs) from the same rows."""
    stem = Path(stem)
    md = tabulate(rows, headers=headers, tablefmt="github", disable_numparse=True)
    atomic_write_text(stem.with_suffix(".md"), (f"{caption}\n\n" if caption else "") + md + "\n")
    latex_rows = latex_rows or [[c.replace("±", r"$\pm$") if isinstance(c, str) else c
                                 for c in r] for r in rows]
    tex = tabulate(latex_rows, headers=headers, tablefmt="latex_booktabs", disable_numparse=True)
    tex = tex.replace(r"\$", "$").replace(r"\textbackslash{}", "\\").replace(r"\{", "{") \
        .replace(r"\}", "}").replace(r"\_", "_").replace(r"\^{}", "^")
    atomic_write_text(stem.with_suffix(".tex"), tex + "\n")


# certificate rows under every gap table: (label, summary field, format); targets in the caption
CERTIFICATE_ROWS = [("BDMC gap (nats)", "bdmc_gap", "{:.3f}"),
                    ("AIS sets log p̂ (share)", "ais_sets_logpx", "{:.0%}"),
                    ("q* stopped by cap (share)", "qstar_capped", "{:.1%}"),
                    ("q* probe, 2x steps (nats)", "qstar_probe", "{:+.3f}"),
                    ("Certified", "certified", "{}")]


def _cell(summary: dict, field: str, fmt: str) -> str:
    value = summary.get(field, "")
    if value in ("", None):
        return "n/a"
    if isinstance(value, str):
        value = value == "True" if value in ("True", "False") else float(value)
    if isinstance(value, bool):
        return "yes" if value else "no"
    return fmt.format(value)


def certificate_caption() -> str:
    from .gaps import CERTIFICATE_TARGETS
    t = CERTIFICATE_TARGETS
    return (f"Certified: BDMC gap <= {t['bdmc_gap']} nat, q* cap share <= {t['qstar_capped']:.0%}, "
            f"|probe| <= {t['qstar_probe']} nat.")


def gap_table(stem: Path, columns: dict, caption: str = "") -> None:
    """Paper's Table-2 layout: rows = quantities, one column per (label -> summary dict), then
    the certificate rows of each column."""
    headers = [""] + list(columns)
    rows, latex_rows = [], []
    for q in LABELS:
        cells = [pm(float(s[q]), float(s[f"{q}_sem"])) for s in columns.values()]
        rows.append([LABELS[q]] + cells)
        latex_rows.append([LATEX_LABELS[q]] + [c.replace("±", r"$\pm$") for c in cells])
    for label, field, fmt in CERTIFICATE_ROWS:
        cells = [_cell(s, field, fmt) for s in columns.values()]
        rows.append([label] + cells)
        latex_rows.append([label.replace("p̂", r"$\hat p$")] + cells)  # tabulate escapes %
    caption = f"{caption} {certificate_caption()}".strip()
    write_tables(stem, headers, rows, latex_rows, caption)


def write_csv(path: Path, rows: list, fields: list = None) -> None:
    """rows: list of dicts; atomic."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fields = fields or list(dict.fromkeys(k for r in rows for k in r))
    tmp = temp_path(path)
    with open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, path)


def read_csv(path: Path) -> list:
    with open(path) as f:
        return list(csv.DictReader(f))
