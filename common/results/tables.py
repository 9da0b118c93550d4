"""Tables as LaTeX (booktabs) and Markdown from the same rows, made with tabulate."""
import csv
from pathlib import Path

from tabulate import tabulate

from ..config import CorruptFile, atomic_file, write_checksummed

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
    write_checksummed(stem.with_suffix(".md"), (f"{caption}\n\n" if caption else "") + md + "\n")
    latex_rows = latex_rows or [[c.replace("±", r"$\pm$") if isinstance(c, str) else c
                                 for c in r] for r in rows]
    tex = tabulate(latex_rows, headers=headers, tablefmt="latex_booktabs", disable_numparse=True)
    tex = tex.replace(r"\$", "$").replace(r"\textbackslash{}", "\\").replace(r"\{", "{") \
        .replace(r"\}", "}").replace(r"\_", "_").replace(r"\^{}", "^")
    write_checksummed(stem.with_suffix(".tex"), tex + "\n")


# certificate rows under every gap table: (label, summary field, format); targets in the caption
CERTIFICATE_ROWS = [("BDMC gap (nats)", "bdmc_gap", "{:.3f}"),
                    ("AIS steps (certify or extend)", "ais_steps_used", "{:.0f}"),
                    ("AIS is the max rule's log p̂ (share)", "ais_sets_logpx", "{:.0%}"),
                    ("max rule − pooled log p̂ (nats)", "max_rule_excess", "{:.3f}"),
                    ("q* stopped by cap (share)", "qstar_capped", "{:.1%}"),
                    ("q* fallback (share)", "qstar_fallback", "{:.1%}"),
                    ("q* lost within noise: tie (share)", "qstar_tie", "{:.1%}"),
                    ("q* probe, 2x steps (nats)", "qstar_probe", "{:+.3f}"),
                    ("Certified", "certified", "{}")]

# ... and under a table that shows L[q*_FFG]: the certificate of that ffg fit (for a flow model
# a fit of its own, from the flow q's moments; for an ffg model the same as above)
FFG_FIT_ROWS = [("L[q*_FFG] fit stopped by cap (share)", "qstar_capped_ffg", "{:.1%}"),
                ("L[q*_FFG] fit probe, 2x steps (nats)", "qstar_probe_ffg", "{:+.3f}"),
                ("L[q*_FFG] certified", "ffg_fit_certified", "{}")]


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
    from ..inference.gaps import CERTIFICATE_TARGETS, LOSS_SES, TIE_NATS
    t = CERTIFICATE_TARGETS
    return (f"log p̂ = AIS (no per-point selection; its error bounded by the BDMC gap); rows "
            f"marked \"paper's max rule\" take log p̂ = max(AIS, IWAE of q, IWAE of each q*) per "
            f"point as the paper did. "
            f"Certified: BDMC gap <= {t['bdmc_gap']} nat, q* cap share <= {t['qstar_capped']:.0%}, "
            f"|probe| <= {t['qstar_probe']} nat, q* fallback <= {t['qstar_fallback']:.0%}; AIS "
            f"runs the steps its BDMC certified (doubled until within target, up to a cap). "
            f"Max rule − pooled: the paper's max minus the same "
            f"estimates pooled with fixed equal weights (no selection); an upper bound on how far "
            f"the max's selection lifts log p̂. q* fallback: share of points whose fitted q*, "
            f"retried from the winner at a tenth and a hundredth of the rate and then at the "
            f"rate from another seed, still ended below "
            f"another member of its family (the encoder's q; for flows also the Gaussian q*) by "
            f"more than {LOSS_SES:g} s.e. of their paired difference on common draws (or by more "
            f"than {TIE_NATS} nat), whose L[q*] is used there; a tie (the best of the fit and "
            f"its retries lost by less) keeps that attempt's L[q*].")


# log p^ and the gaps it enters, by the paper's max rule (rows under ours, where measured)
PAPER_RULE_LABELS = {
    "logpx_paper": ("log p̂(x), paper's max rule", r"$\log \hat p(x)$, paper's max rule"),
    "approx_gap_paper": ("Approximation gap, paper's max rule", "Approximation, paper's max rule"),
    "total_gap_paper": ("Total gap, paper's max rule", "Total, paper's max rule")}

EXTRA_LABELS = {"L_qstar_ffg": ("L[q*_FFG] (Gaussian q* of the same decoder)",
                                r"$\mathcal{L}[q^*_{FFG}]$")}


def gap_table(stem: Path, columns: dict, caption: str = "", paper: dict = None,
              extra: tuple = ()) -> None:
    """Paper's Table-2 layout: rows = quantities, one column per (label -> summary dict), then
    the certificate rows of each column.

    paper: {column label: {quantity: the paper's value}}; each quantity the paper reports gets
    a "paper" row under ours. extra: further summary fields shown as means (EXTRA_LABELS).
    """
    paper = paper or {}
    headers = [""] + list(columns)
    rows, latex_rows = [], []

    def paper_row(q, label, latex):
        if any(q in paper.get(c, {}) for c in columns):
            cells = [f"{paper[c][q]:.2f}" if q in paper.get(c, {}) else "–" for c in columns]
            rows.append([f"  {label}, paper"] + cells)
            latex_rows.append([rf"\quad {latex}, paper"] + cells)
    for q in LABELS:
        cells = [pm(float(s[q]), float(s[f"{q}_sem"])) for s in columns.values()]
        rows.append([LABELS[q]] + cells)
        latex_rows.append([LATEX_LABELS[q]] + [c.replace("±", r"$\pm$") for c in cells])
        paper_row(q, LABELS[q], LATEX_LABELS[q])
    for q in PAPER_RULE_LABELS if any(s.get(q) not in (None, "") for s in columns.values()) \
            else ():
        label, latex = PAPER_RULE_LABELS[q]
        cells = [pm(float(s[q]), float(s[f"{q}_sem"])) if s.get(q) not in (None, "") else "n/a"
                 for s in columns.values()]
        rows.append([label] + cells)
        latex_rows.append([latex] + [c.replace("±", r"$\pm$") for c in cells])
    for q in extra:
        label, latex = EXTRA_LABELS[q]
        cells = [f"{float(s[q]):.2f}" if s.get(q) not in (None, "") else "n/a"
                 for s in columns.values()]
        rows.append([label] + cells)
        latex_rows.append([latex] + cells)
        paper_row(q, label.split(" (")[0], latex)
    with_ffg_fit = "L_qstar_ffg" in extra   # L[q*_FFG] shown: its fit's certificate too
    for label, field, fmt in CERTIFICATE_ROWS + (FFG_FIT_ROWS if with_ffg_fit else []):
        cells = [_cell(s, field, fmt) for s in columns.values()]
        rows.append([label] + cells)
        latex_rows.append([label.replace("p̂", r"$\hat p$")] + cells)  # tabulate escapes %
    caption = f"{caption.rstrip('.')}. {certificate_caption()}" if caption else certificate_caption()
    write_tables(stem, headers, rows, latex_rows, caption)


def write_csv(path: Path, rows: list, fields: list = None) -> None:
    """rows: list of dicts; atomic."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fields = fields or list(dict.fromkeys(k for r in rows for k in r))
    with atomic_file(path) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)


def read_csv(path: Path, required=(), fix: str = "delete it and rerun the step that wrote it") -> list:
    """Rows of a CSV written by write_csv; CorruptFile naming the file when it is garbage or
    truncated (a short row, a missing column of `required`)."""
    try:
        with open(path, newline="") as f:
            reader = csv.DictReader(f)
            rows = list(reader)
            columns = reader.fieldnames or []
    except (csv.Error, UnicodeDecodeError) as err:
        raise CorruptFile(f"{path} is not a readable CSV ({type(err).__name__}); {fix}") from None
    missing = [c for c in required if c not in columns]
    if missing:
        raise CorruptFile(f"{path} has no column {missing[0]!r} (garbage or another version); "
                          f"{fix}")
    for i, row in enumerate(rows):
        if None in row or any(v is None for v in row.values()):
            raise CorruptFile(f"{path} row {i + 2} has {len([v for v in row.values() if v is not None])} "
                              f"fields, not {len(columns)} (truncated or garbage); {fix}")
    return rows


def merge_rows(path: Path, rows: list, key: tuple, scope: str) -> list:
    """rows plus the rows already at `path` that they do not replace: an evaluation of a subset
    (`--families ffg`) updates its rows and keeps the others. Old rows are kept only if they
    share `scope` (the `config_id` column: same preset, seed and evaluation settings); rows of
    another scope, or an unreadable old file (one without a column the new rows have: renamed,
    or of another version), are dropped with a note."""
    path = Path(path)
    for r in rows:
        r["config_id"] = scope
    if not path.exists():
        return rows
    try:
        old = read_csv(path, tuple(dict.fromkeys(k for r in rows for k in r)))
    except CorruptFile as err:
        print(f"[merge] {err.args[0].split(';')[0]}: rewritten from this run's rows only")
        return rows
    new_keys = {tuple(str(r[k]) for k in key) for r in rows}
    kept = [{k: _typed(v) for k, v in r.items()} for r in old if r.get("config_id") == scope
            and tuple(str(r.get(k)) for k in key) not in new_keys]
    dropped = sum(1 for r in old if r.get("config_id") != scope)
    if dropped:
        print(f"[merge] {path.name}: {dropped} row(s) of another config dropped")
    return kept + rows


def _typed(text: str):
    """A CSV cell back as the value it was written from (int, float, bool, or text). A number
    only when it reads back as the same text: a commit hash like 32e8771 stays text (as a
    float it is inf)."""
    if text in ("True", "False"):
        return text == "True"
    for kind in (int, float):
        try:
            value = kind(text)
        except (TypeError, ValueError):
            continue
        return value if str(value) == text else text
    return text
