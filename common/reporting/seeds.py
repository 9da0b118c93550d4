"""Claims across seeds: is a verdict a property of the method or of one training run?

Each seed's results sit in their own folder: F (seed 0, as always) and F_seed<k> beside it, for
every length of the study (F_long_seed1, ...), each with its own runs (runs/<preset>-seed<k>/),
evaluation on the same points, and claims.json. For each claim and column:

    the per-seed differences d_k (each with its per-point s.e. se_k and certificate),
    their mean, the between-seed standard error sd(d_k) / sqrt(n), and the combined s.e.
        sqrt(between-seed s.e.^2 + mean(se_k)^2),
    the number of seeds where it holds, and
    "held across seeds": with n >= 3 seeds, mean > 3 combined s.e. and every seed certified;
    with fewer, held in every seed.

Why combined: every seed is evaluated on the same points, so the points' sampling error is
shared by all seeds and does not average away; the spread of d_k measures the training runs
only. mean(se_k) bounds the points' s.e. of the seed average from above (the s.d. of an average
is at most the average s.d.). On exp53 at quick (3 seeds, 300 points), CFlow vs FFG on one-hidden-
layer encoders was +0.18, +0.26, +0.28 with per-point s.e. 0.31-0.33: not held in any seed, yet
"held" at 3 between-seed s.e. (+0.24 +- 0.03); at 3 combined s.e. (+0.24 +- 0.32) it is not.

`python -m common.reporting.seeds` writes RESULTS_DIR/claims_across_seeds.json,
CLAIMS_ACROSS_SEEDS.md
(one row per claim and column: each seed's verdict, seeds held, across seeds) and the forest
plot claims_forest.png/.pdf (one row per claim and column: each seed's difference with its
3-s.e. bar, the across-seed mean, the paper's difference, the zero line). The forest plot is
drawn with one seed too (then it shows each claim's difference and the paper's mark).
"""
import argparse
import math
import re
import sys
from pathlib import Path

from ..results.claims import HOLD_SE, read_claims, verdict
from ..config import atomic_write_text, guarded, results_dir, write_json

SEED_SUFFIX = re.compile(r"^(?P<length>(?:_(?:long|paper))?(?:_e\d+)?)(?:_seed(?P<seed>\d+))?$")


def seed_folders(root: Path, folder: str) -> dict:
    """{length suffix: {seed: path}} of one results folder's seeds present under root."""
    out = {}
    for path in sorted(root.glob(f"{folder}*")):
        m = SEED_SUFFIX.match(path.name[len(folder):])
        if path.is_dir() and m and (path / "claims.json").exists():
            out.setdefault(m["length"], {})[int(m["seed"] or 0)] = path
    return out


def mean_and_sem(values: list) -> tuple:
    """The mean of per-seed values and its between-seed standard error (NaN for one seed)."""
    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return mean, float("nan")
    return mean, math.sqrt(sum((x - mean) ** 2 for x in values) / (n - 1) / n)


def combined_sem(between: float, sems: list) -> float:
    """The s.e. of the mean over seeds of per-seed estimates on the same points: the between-
    seed s.e. and the mean per-seed (points') s.e. in quadrature (module docstring); NaN for
    one seed (its between-seed s.e. is NaN)."""
    return math.hypot(between, sum(sems) / len(sems))


def across(rows: list) -> dict:
    """The across-seed judgement of one claim and column from its per-seed rows."""
    n = len(rows)
    mean, between = mean_and_sem([r["difference"] for r in rows])
    combined = combined_sem(between, [r["sem"] for r in rows])
    certified = all(r["certified"] for r in rows)
    held = sum(r["verdict"] == "held" for r in rows)
    if n >= 3:
        judged = verdict(mean, combined, certified)
    elif any(r["verdict"] == "too few points" for r in rows):
        judged = "too few points"
    else:   # too few seeds for a between-seed s.e.: held only when held in every seed
        judged = "held" if held == n else ("not certified" if all(
            r["verdict"] != "not held" for r in rows) else "not held")
    return {"seeds": n, "mean": mean, "between_seed_sem": between, "combined_sem": combined,
            "seeds_held": held, "certified": certified, "across_seeds": judged}


def collect(root: Path) -> list:
    """One entry per claim, column and length: the per-seed rows and the across-seed verdict."""
    from ..studies import results_of, studies
    out = []
    for s in studies().values():
        for r in results_of(s):
            for length, seeds in seed_folders(root, r.folder).items():
                per_claim = {}
                for seed, path in sorted(seeds.items()):
                    for c in read_claims(path):
                        per_claim.setdefault((c["study"], c["claim"], c["column"]), []).append(
                            {**c, "seed": seed, "folder": path.name})
                for (study, text, column), rows in per_claim.items():
                    paper = next((x["paper"] for x in rows if x.get("paper") is not None), None)
                    out.append({"study": study, "claim": text, "column": column,
                                "source": rows[0].get("source", "paper"),
                                "length": length or "", "results": r.folder, "paper": paper,
                                "per_seed": rows, **across(rows)})
    return out


def seed_cell(r: dict) -> str:
    """One seed's difference, s.e. and verdict (and the claim's detail, e.g. its best epoch)."""
    said = r["verdict"] + (f"; {r['detail']}" if r.get("detail") else "")
    return f"{r['difference']:+.2f} ± {r['sem']:.2f} ({said})"


def across_cell(e: dict) -> str:
    """The across-seed mean ± combined s.e. (none with one seed) and verdict of one entry."""
    sem = "" if math.isnan(e["combined_sem"]) else f" ± {e['combined_sem']:.2f}"
    return f"{e['mean']:+.2f}{sem} **{e['across_seeds']}**"


def summary(entries: list) -> str:
    """How many entries hold across seeds, and in how many the seeds' verdicts differ."""
    held = sum(e["across_seeds"] == "held" for e in entries)
    flipped = sum(0 < e["seeds_held"] < e["seeds"] for e in entries)
    return (f"{held} of {len(entries)} held across seeds ({flipped} with verdicts that differ "
            f"between seeds")


def markdown(entries: list) -> str:
    seeds = sorted({x["seed"] for e in entries for x in e["per_seed"]})
    head = ["study", "claim", "column", *[f"seed {k}" for k in seeds], "paper", "seeds held",
            "across seeds"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for e in entries:
        by_seed = {x["seed"]: x for x in e["per_seed"]}
        cells = [seed_cell(by_seed[k]) if k in by_seed else "" for k in seeds]
        column = e["column"] + (f" [{e['length'].strip('_')}]" if e["length"] else "")
        lines.append("| " + " | ".join(
            [e["study"], e["claim"], column, *cells,
             "–" if e["paper"] is None else f"{e['paper']:+.2f}",
             f"{e['seeds_held']} of {e['seeds']}",
             across_cell(e)]) + " |")
    return (f"Claims across seeds: {summary(entries)}). Held across seeds: with "
            f"3 or more seeds, the mean difference exceeds {HOLD_SE:g} combined s.e. (the "
            f"between-seed s.e. and the seeds' mean per-point s.e. in quadrature: every seed is "
            f"evaluated on the same points) and every seed is certified; with fewer, held in "
            f"every seed. Across seeds: mean ± combined s.e.\n\n" + "\n".join(lines)
            + "\n")


FOREST_RANGE = (-12.0, 24.0)   # the forest plot's x-axis, in s.e. of each claim's difference


def in_se(d: float, se: float) -> float:
    """A difference in units of its s.e. (infinite where the s.e. is 0)."""
    return d / se if se > 0 else math.copysign(math.inf, d) if d else 0.0


def forest(entries: list, stem: Path) -> Path:
    """One row per claim and column, each difference in units of its own s.e. (so every claim
    can be read on one axis: the differences run from hundredths of a nat to 200 nats): each
    seed's difference/s.e. (dot; hollow if not certified), the across-seed mean over its
    combined s.e. (diamond), the paper's difference over our s.e. (star); the dashed line at 3
    is the verdict's threshold. A value beyond the axis sits at its edge as a triangle, with
    its number."""
    import matplotlib.pyplot as plt

    from ..results.plots import drawn_from, figure_key, save
    key = figure_key(entries, __file__)
    if drawn_from(stem, key):   # the same claims drawn by the same code: kept
        return Path(stem).with_suffix(".png")
    lo, hi = FOREST_RANGE
    n = len(entries)
    fig, ax = plt.subplots(figsize=(10, 0.3 * n + 1.4))

    def mark(x, y, **style):
        shown = min(max(x, lo), hi)
        if shown != x:   # beyond the axis: a triangle at the edge and the value
            style = {**style, "marker": ">" if x > hi else "<"}
            ax.annotate(f"{x:+.0f}", (shown, y), fontsize=5, ha="right" if x > hi else "left",
                        va="bottom")
        ax.plot([shown], [y], ls="none", **style)
    for i, e in enumerate(entries):
        y = n - 1 - i
        for j, x in enumerate(sorted(e["per_seed"], key=lambda r: r["seed"])):
            off = (j - (len(e["per_seed"]) - 1) / 2) * 0.12
            color = "C2" if x["verdict"] == "held" else "C3" if x["verdict"] == "not held" \
                else "C1"
            mark(in_se(x["difference"], x["sem"]), y + off, marker="o", ms=4, color=color,
                 mfc=color if x["certified"] else "white")
        if len(e["per_seed"]) > 1 and math.isfinite(e["combined_sem"]):
            mark(in_se(e["mean"], e["combined_sem"]), y - 0.3, marker="D", ms=4, color="k")
        if e["paper"] is not None:
            se = sum(x["sem"] for x in e["per_seed"]) / len(e["per_seed"])
            mark(in_se(e["paper"], se), y, marker="*", ms=7, color="C0", alpha=0.6)
    ax.axvline(0, color="k", lw=0.8)
    ax.axvline(HOLD_SE, color="k", lw=0.8, ls="--")
    ax.set_xlim(lo - 0.5, hi + 0.5)
    ax.set_ylim(-1, n)
    ax.set_yticks(range(n))
    ax.set_yticklabels([f"{'[brief] ' if e.get('source') == 'brief' else ''}{e['study']}: "
                        f"{e['claim'][:48]}{'…' if len(e['claim']) > 48 else ''} | {e['column']}"
                        f"{' ' + e['length'] if e['length'] else ''}"
                        for e in reversed(entries)], fontsize=5.5)
    ax.set_xlabel(f"difference / its s.e. (held: right of the dashed line at {HOLD_SE:g}, and "
                  f"certified)")
    ax.set_title("Every judged claim: green held, red not held, orange not certified (hollow: a "
                 "certificate missed);\ndiamond: mean over seeds; star: the paper's difference "
                 "in our s.e.", fontsize=8)
    ax.grid(axis="x", lw=0.3, alpha=0.5)
    save(fig, stem, key)
    return stem.with_suffix(".png")


GAP_COLUMNS = ("logpx", "L_qstar", "L_q", "approx_gap", "amort_gap", "total_gap")
KEY_COLUMNS = ("dataset", "model", "family", "split", "epoch", "encoder", "decoder_layers",
               "noise", "set")


def seed_mean_and_sem(rows: list, column: str) -> tuple:
    """The mean over seeds of one CSV column and its combined s.e. (between seeds and, where
    the rows carry <column>_sem, the points'), as `across` judges claims."""
    values = [float(r[column]) for r in rows]
    sems = [r.get(f"{column}_sem") for r in rows]
    mean, between = mean_and_sem(values)
    if all(x not in (None, "") for x in sems):
        return mean, combined_sem(between, [float(x) for x in sems])
    return mean, between


def seed_tables(root: Path) -> list:
    """For each results folder (at its own length) with several seeds: table_seeds.md, every
    row of its gap CSV as the mean over seeds ± the combined s.e. Returns the files."""
    from ..studies import results_of, studies
    from ..results.tables import pm, read_csv, write_tables
    written = []
    for s in studies().values():
        for r in results_of(s):
            seeds = seed_folders(root, r.folder).get("", {})
            if len(seeds) < 2:
                continue
            per_seed = {}
            for seed, path in seeds.items():   # the first CSV with the gap columns
                for p in sorted(path.glob("*.csv")):
                    rows = read_csv(p)
                    if rows and set(GAP_COLUMNS) <= set(rows[0]):
                        per_seed[seed] = rows
                        break
            if len(per_seed) < 2:
                continue
            groups = {}
            for seed, rows in per_seed.items():
                for row in rows:
                    key = tuple((k, row[k]) for k in KEY_COLUMNS if k in row)
                    groups.setdefault(key, {})[seed] = row
            table = []
            for key, by_seed in groups.items():
                cells = [pm(*seed_mean_and_sem(list(by_seed.values()), q)) for q in GAP_COLUMNS]
                table.append([" ".join(str(v) for _, v in key), str(len(by_seed))] + cells)
            stem = seeds[0] / "table_seeds"
            write_tables(stem, ["row", "seeds", "log p̂(x)", "L[q*]", "L[q]", "approximation",
                                "amortization", "total"], table,
                         caption=f"{r.folder}: the mean over seeds {sorted(per_seed)} ± the "
                                 f"combined s.e. (between seeds and the points' s.e. in "
                                 f"quadrature; each seed's own models, evaluated on the same "
                                 f"points)")
            written.append(stem.with_suffix(".md"))
    return written


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.parse_args(argv)
    root = results_dir()
    entries = collect(root)
    if not entries:
        print(f"error: no claims.json under {root}; run the studies first (make all SEEDS=0,1,2)",
              file=sys.stderr)
        return 2
    write_json(root / "claims_across_seeds.json", entries)
    atomic_write_text(root / "CLAIMS_ACROSS_SEEDS.md", markdown(entries))
    png = forest(entries, root / "claims_forest")
    tables = seed_tables(root)
    print(f"[seeds] {len(tables)} tables of means over seeds; {len(entries)} claims over seeds "
          f"{sorted({x['seed'] for e in entries for x in e['per_seed']})}; wrote "
          f"{root / 'CLAIMS_ACROSS_SEEDS.md'} and {png}")
    return 0


if __name__ == "__main__":
    sys.exit(guarded(main))
