"""The paper's claims, judged where they are measured. Each experiment writes claims.json beside
its tables (one entry per claim and column); the report's first screen lists them all.

A claim predicts that a difference d of two estimates (nats, on the same points) is positive:
    s.e. of d: paired (from per-point values) when the caller has them, else
               sqrt(se_a^2 + se_b^2) (conservative for estimates on the same points);
    verdict:   "held" when d > 3 s.e. and every evaluation involved is certified,
               "not certified" when d > 3 s.e. but a certificate was missed,
               "not held" otherwise (always when d <= 0, whatever the s.e.);
               "too few points" when d > 0 has no s.e. (one point or seed: s.e. 0), never held.

A claim on a quantity that involves log p^ (the approximation or total gap, log p^ itself) is
judged under log p^ = AIS (common/gaps.LOGPX_RULE) and again under the paper's max rule
(`paper_rule`: its difference, s.e. and verdict), so a verdict that rests on the rule shows.
Rows made before the AIS rule (no `logpx_rule` column) were made by the paper's rule: their
claims say so (`logpx_rule` "paper").

source: "paper" (Cremer, Li & Duvenaud, 2018) or "brief" (the user's own findings,
../shared/seed/project-brief-fr.md).
"""
import json
import math
import re
import sys
from pathlib import Path

from ..config import edited_by_hand, write_checksummed

HOLD_SE = 3.0
OLD_EPOCH_IN_TEXT = re.compile(r"at the last epoch \(\d+\)")
OLD_DETAIL_IN_COLUMN = re.compile(r"^(?P<column>.+) \((?P<detail>best: epoch \d+)\)$")
FIELDS = ("study", "claim", "column", "paper", "difference", "sem", "certified", "verdict")
SOURCES = ("paper", "brief")
# the quantities whose value depends on how log p^ is estimated (each has a `_paper` twin)
LOGPX_QUANTITIES = ("logpx", "approx_gap", "total_gap", "gap")


def truthy(value) -> bool:
    return str(value).lower() in ("true", "1", "yes")


def verdict(d: float, se: float, certified: bool) -> str:
    if not d > 0:                            # no positive difference: not held, whatever the s.e.
        return "not held"
    if not (math.isfinite(se) and se > 0):   # one point (or seed): no s.e., nothing to judge
        return "too few points"
    if not d > HOLD_SE * se:
        return "not held"
    return "held" if certified else "not certified"


def claim(study: str, text: str, column: str, d: float, se: float, certified: bool,
          paper: float = None, detail: str = None, source: str = "paper",
          logpx_rule: str = None, paper_rule: tuple = None) -> dict:
    """One judged claim; paper: the same difference in the paper's tables (None: not given).
    (study, text, column) is the claim's identity across seeds and training lengths, so none of
    them may name what differs between runs; detail (e.g. "best: epoch 97") is shown beside
    the column, never matched. logpx_rule: the rule that set log p^ where the claim involves it
    ("ais" or "paper"); paper_rule: (difference, s.e.) under the paper's max rule."""
    if source not in SOURCES:
        raise ValueError(f"claim source {source!r}; allowed: {', '.join(SOURCES)}")
    out = {"study": study, "claim": text, "column": column, "paper": paper,
           "difference": d, "sem": se, "certified": bool(certified),
           "verdict": verdict(d, se, certified), "source": source,
           **({"detail": detail} if detail else {}),
           **({"logpx_rule": logpx_rule} if logpx_rule else {})}
    if paper_rule is not None:
        pd, pse = paper_rule
        out["paper_rule"] = {"difference": pd, "sem": pse, "verdict": verdict(pd, pse, certified)}
    return out


def rule_of(row: dict, field: str):
    """How log p^ entered row[field]: None (it does not), "ais" (the row has the paper's rule
    beside it) or "paper" (a row made by the paper's rule alone)."""
    if field not in LOGPX_QUANTITIES:
        return None
    return "ais" if row.get(f"{field}_paper") not in (None, "") else "paper"


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


def compare_rows(study: str, text: str, column: str, a: dict, b: dict, field: str,
                 field_b: str = None, paper: float = None, detail: str = None,
                 source: str = "paper") -> dict:
    """The claim "a[field] > b[field_b]" from two summary rows (gaps.csv rows or summaries)."""
    return contrast(study, text, column, [(1, a, field), (-1, b, field_b or field)],
                    truthy(a.get("certified")) and truthy(b.get("certified")), paper, detail,
                    source=source)


def contrast(study: str, text: str, column: str, terms: list, certified: bool = None,
             paper: float = None, detail: str = None, source: str = "paper",
             within: float = None) -> dict:
    """The claim "sum of sign x row[field] > 0" over terms [(sign, row, field)] of summary
    rows: d = sum sign x row[field], s.e. = sqrt(sum row[field_sem]^2) (conservative where rows
    share points). within: an equivalence claim, "|sum| < within", judged as within - |d| > 0
    (same s.e.). certified: default, every row's `certified` (rows without one certify
    themselves: no estimator to converge). Under log p^ = AIS a term on a LOGPX_QUANTITIES field
    is judged again with its `_paper` twin (compare_rows' rule)."""
    def total(twin: bool) -> tuple:
        d, var = 0.0, 0.0
        for sign, row, field in terms:
            f = f"{field}_paper" if twin and field in LOGPX_QUANTITIES else field
            d += sign * float(row[f])
            var += float(row[f"{f}_sem"]) ** 2
        return (within - abs(d) if within is not None else d), math.sqrt(var)
    rules = {rule_of(row, field) for _, row, field in terms} - {None}
    rule = "paper" if "paper" in rules else ("ais" if rules else None)
    if certified is None:
        certified = all(truthy(row.get("certified", True)) for _, row, _ in terms)
    d, se = total(False)
    return claim(study, text, column, d, se, certified, paper, detail, source=source,
                 logpx_rule=rule, paper_rule=total(True) if rule == "ais" else None)


def write_claims(out_dir: Path, claims: list) -> None:
    """claims.json, with its checksum beside it (a file edited afterwards is set aside)."""
    write_checksummed(Path(out_dir) / "claims.json", json.dumps(claims, indent=2) + "\n")


VERDICTS = ("held", "not held", "not certified", "too few points")


def valid_claim(c) -> bool:
    """A claims.json entry of the schema `claim` writes."""
    number = lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and \
        math.isfinite(v)  # noqa: E731
    rule = c.get("paper_rule") if isinstance(c, dict) else None
    return isinstance(c, dict) and set(FIELDS) <= set(c) and \
        all(isinstance(c[k], str) for k in ("study", "claim", "column")) and \
        isinstance(c.get("detail", ""), str) and \
        number(c["difference"]) and number(c["sem"]) and c["sem"] >= 0 and \
        (c["paper"] is None or number(c["paper"])) and isinstance(c["certified"], bool) and \
        c["verdict"] in VERDICTS and c.get("source", "paper") in SOURCES and \
        c.get("logpx_rule", "ais") in ("ais", "paper") and \
        (rule is None or (isinstance(rule, dict) and number(rule.get("difference")) and
                          number(rule.get("sem")) and rule["sem"] >= 0))


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
        if edited_by_hand(path):
            raise ValueError("it differs from the checksum its study recorded: edited by hand")
    except (OSError, ValueError, UnicodeDecodeError) as err:
        reason = err.msg if isinstance(err, json.JSONDecodeError) else str(err)
        try:
            path.replace(path.with_name("claims.json.corrupt"))
            aside = f"set aside as {path.name}.corrupt"
        except OSError:
            aside = "left in place"
        print(f"warning: {path} is unreadable ({type(err).__name__}: {reason}); {aside}; rerun "
              f"its study to judge its claims again", file=sys.stderr)
        return []
    return [rejudged(identified(c), path) for c in claims]


def rejudged(c: dict, path: Path) -> dict:
    """A claim as read: its verdicts recomputed from its numbers (a verdict edited by hand, or
    written by older rules, never reaches a table), said where the file's differs; a claim from
    before sources were recorded is the paper's."""
    judged = verdict(c["difference"], c["sem"], c["certified"])
    if judged != c["verdict"]:
        print(f"warning: {path}: {c['study']} / {c['column']} says {c['verdict']!r} but its "
              f"numbers give {judged!r}; shown as {judged!r}", file=sys.stderr)
    c = {"source": "paper", **c, "verdict": judged}
    if "paper_rule" in c:
        r = c["paper_rule"]
        c["paper_rule"] = {**r, "verdict": verdict(r["difference"], r["sem"], c["certified"])}
    return c


def identified(c: dict) -> dict:
    """A claim of a claims.json written before 2026-12-03, whose identity named what differs
    between runs (exp55's text its last epoch, "at the last epoch (30) ..."; exp66's column its
    best epoch, "ffg (best: epoch 97)"): one claim would have been a row per length or seed."""
    c = {**c, "claim": OLD_EPOCH_IN_TEXT.sub("at the last epoch", c["claim"])}
    old = OLD_DETAIL_IN_COLUMN.match(c["column"])
    return {**c, "column": old["column"], "detail": old["detail"]} if old else c


def paper_rule_cell(c: dict) -> str:
    """The verdict under the paper's max rule for log p^: "same", the differing verdict with its
    difference, "made by it" (rows computed before log p^ = AIS), or "–" (no log p^ involved)."""
    if c.get("logpx_rule") == "paper":
        return "made by it"
    r = c.get("paper_rule")
    if not r:
        return "–"
    if r["verdict"] == c["verdict"]:
        return "same"
    return f"**differs**: {r['difference']:+.2f} ± {r['sem']:.2f}, {r['verdict']}"


def verdict_differs(c: dict) -> bool:
    """Whether the claim's verdict changes when log p^ is the paper's max rule."""
    return bool(c.get("paper_rule")) and c["paper_rule"]["verdict"] != c["verdict"]


def cell(text: str) -> str:
    """Text safe in a markdown table cell: a `|` would end the cell (exp66's "1 - |flow - ffg|"
    shifted every cell after it)."""
    return str(text).replace("|", "\\|")


MARKDOWN_HEADER = ("source", "study", "claim", "column", "paper", "ours", "certified", "verdict",
                   "paper's max rule")


def markdown_rows(claims: list) -> list:
    """Rows for the report's table (MARKDOWN_HEADER): source, study, claim, column, paper, ours,
    certified, verdict, and the verdict under the paper's max rule for log p^."""
    rows = []
    for c in claims:
        paper = "–" if c["paper"] is None else f"{c['paper']:+.2f}"
        rows.append([c.get("source", "paper"), cell(c["study"]), cell(c["claim"]),
                     cell(shown_column(c)), paper,
                     f"{c['difference']:+.2f} ± {c['sem']:.2f}",
                     "yes" if c["certified"] else "no", f"**{c['verdict']}**",
                     paper_rule_cell(c)])
    return rows
