"""The paper's claims, judged where they are measured. Each experiment writes claims.json beside
its tables (one entry per claim and column); the report's first screen lists them all.

A claim predicts that a difference d of two estimates (nats, on the same points) is positive:
    s.e. of d: paired (from per-point values) when the caller has them, else
               sqrt(se_a^2 + se_b^2) (conservative for estimates on the same points);
    verdict:   "held" when d > 3 s.e. and every evaluation involved is certified,
               "not certified" when d > 3 s.e. but a certificate was missed,
               "not held" otherwise.
"""
import json
import math
import re
import sys
from pathlib import Path

from .config import atomic_write_text

HOLD_SE = 3.0
OLD_EPOCH_IN_TEXT = re.compile(r"at the last epoch \(\d+\)")
OLD_DETAIL_IN_COLUMN = re.compile(r"^(?P<column>.+) \((?P<detail>best: epoch \d+)\)$")
FIELDS = ("study", "claim", "column", "paper", "difference", "sem", "certified", "verdict")


def truthy(value) -> bool:
    return str(value).lower() in ("true", "1", "yes")


def verdict(d: float, se: float, certified: bool) -> str:
    if not d > HOLD_SE * se:
        return "not held"
    return "held" if certified else "not certified"


def claim(study: str, text: str, column: str, d: float, se: float, certified: bool,
          paper: float = None, detail: str = None) -> dict:
    """One judged claim; paper: the same difference in the paper's tables (None: not given).
    (study, text, column) is the claim's identity across seeds and training lengths, so none of
    them may name what differs between runs; detail (e.g. "best: epoch 97") is shown beside
    the column, never matched."""
    return {"study": study, "claim": text, "column": column, "paper": paper,
            "difference": d, "sem": se, "certified": bool(certified),
            "verdict": verdict(d, se, certified), **({"detail": detail} if detail else {})}


def shown_column(c: dict) -> str:
    """The column as tables show it: with the claim's detail, if any."""
    return c["column"] + (f" ({c['detail']})" if c.get("detail") else "")


def mean_sem(differences) -> tuple:
    """Mean and standard error of per-point differences (a list or a tensor): the paired s.e."""
    d = [float(v) for v in differences]
    n = len(d)
    mean = sum(d) / n
    var = sum((v - mean) ** 2 for v in d) / (n - 1) if n > 1 else 0.0
    return mean, math.sqrt(var / n)


def row_difference(a: dict, b: dict, field: str, field_b: str = None) -> tuple:
    """a[field] - b[field_b or field] and its combined standard error, from two summary rows."""
    field_b = field_b or field
    d = float(a[field]) - float(b[field_b])
    se = math.sqrt(float(a[f"{field}_sem"]) ** 2 + float(b[f"{field_b}_sem"]) ** 2)
    return d, se


def compare_rows(study: str, text: str, column: str, a: dict, b: dict, field: str,
                 field_b: str = None, paper: float = None, detail: str = None) -> dict:
    """The claim "a[field] > b[field_b]" from two summary rows (gaps.csv rows or summaries)."""
    d, se = row_difference(a, b, field, field_b)
    return claim(study, text, column, d, se, truthy(a.get("certified")) and
                 truthy(b.get("certified")), paper, detail)


def write_claims(out_dir: Path, claims: list) -> None:
    atomic_write_text(Path(out_dir) / "claims.json", json.dumps(claims, indent=2) + "\n")


VERDICTS = ("held", "not held", "not certified")


def valid_claim(c) -> bool:
    """A claims.json entry of the schema `claim` writes."""
    number = lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and \
        math.isfinite(v)  # noqa: E731
    return isinstance(c, dict) and set(FIELDS) <= set(c) and \
        all(isinstance(c[k], str) for k in ("study", "claim", "column")) and \
        isinstance(c.get("detail", ""), str) and \
        number(c["difference"]) and number(c["sem"]) and c["sem"] >= 0 and \
        (c["paper"] is None or number(c["paper"])) and isinstance(c["certified"], bool) and \
        c["verdict"] in VERDICTS


def read_claims(folder: Path) -> list:
    """claims.json of a results folder; [] when absent. A file that is not JSON or not of the
    schema (a string difference, an unknown verdict, binary garbage) is informative only, so it
    never stops the report: it is set aside as claims.json.corrupt with a one-line warning
    naming it, and its study's claims are then missing from the report (which says so)."""
    path = Path(folder) / "claims.json"
    if not path.exists():
        return []
    try:
        claims = json.loads(path.read_text())
        if not isinstance(claims, list) or not all(valid_claim(c) for c in claims):
            raise ValueError("not a list of claims of the schema")
    except (OSError, ValueError, UnicodeDecodeError) as err:
        try:
            path.replace(path.with_name("claims.json.corrupt"))
            aside = f"set aside as {path.name}.corrupt"
        except OSError:
            aside = "left in place"
        print(f"warning: {path} is unreadable ({str(err)[:60]}); {aside}; rerun its study to "
              f"judge its claims again", file=sys.stderr)
        return []
    return [identified(c) for c in claims]


def identified(c: dict) -> dict:
    """A claim of a claims.json written before 2026-12-03, whose identity named what differs
    between runs (exp55's text its last epoch, "at the last epoch (30) ..."; exp66's column its
    best epoch, "ffg (best: epoch 97)"): one claim would have been a row per length or seed."""
    c = {**c, "claim": OLD_EPOCH_IN_TEXT.sub("at the last epoch", c["claim"])}
    old = OLD_DETAIL_IN_COLUMN.match(c["column"])
    return {**c, "column": old["column"], "detail": old["detail"]} if old else c


def markdown_rows(claims: list) -> list:
    """Rows for the report's table: study, claim, column, paper, ours, certified, verdict."""
    rows = []
    for c in claims:
        paper = "–" if c["paper"] is None else f"{c['paper']:+.2f}"
        rows.append([c["study"], c["claim"], shown_column(c), paper,
                     f"{c['difference']:+.2f} ± {c['sem']:.2f}",
                     "yes" if c["certified"] else "no", f"**{c['verdict']}**"])
    return rows
