"""Claims by training length: every claim judged at every length of its study found in
RESULTS_DIR, beside the paper's (3280 epochs).

A study's results folder F holds the quick (or smoke) length; its other lengths are the
sibling folders F_long (300 epochs), F_long_e<N> (the long preset at N epochs), F_e<N> (smoke or
quick at N epochs), F_paper (the paper's preset): each with its own runs, evaluation and
claims.json (common/runs/experiment.py), so a claim judged at one length never reuses another's
evaluation. `python -m common.reporting.ladder` writes

    RESULTS_DIR/claims_by_length.json   one row per claim, column and length
    RESULTS_DIR/CLAIMS_BY_LENGTH.md     per claim: the verdict and difference at each length,
                                        the paper's, and the trend (toward the paper, away, flat)
    RESULTS_DIR/ladder/<study>.png/.pdf the difference (mean +- 3 s.e.) against epochs on a log
                                        axis, the paper's value at 3280, hollow where a
                                        certificate missed
"""
import argparse
import math
import re
import sys
from pathlib import Path

from ..results.claims import HOLD_SE, read_claims
from ..config import atomic_write_text, guarded, read_json_or, results_dir, write_json

PAPER_EPOCHS = 3280
SUFFIX = re.compile(r"^(?:_(?P<preset>long|paper))?(?:_e(?P<epochs>\d+))?$")
TREND_SE = 2.0   # a change of the difference within this many combined s.e. is "flat"


def rungs(root: Path, folder: str) -> list:
    """[(epochs, preset, path)] of the lengths of one results folder present under root, by
    epochs. A rung counts only when its provenance says its preset and epochs."""
    out = []
    for path in sorted(root.glob(f"{folder}*")):
        m = SUFFIX.match(path.name[len(folder):])
        if not path.is_dir() or not m:
            continue
        prov = read_json_or(path / "provenance.json", {}, "that length is left out")
        config = prov.get("config", {}) if isinstance(prov, dict) else {}
        epochs = config.get("epochs") if isinstance(config, dict) else None
        if isinstance(epochs, int) and (path / "claims.json").exists():
            out.append((epochs, prov.get("preset", "?"), path))
    return sorted(out)


def collect(root: Path) -> list:
    """One row per claim, column and length, over every study's results folders."""
    from ..studies import results_of, studies
    rows = []
    for s in studies().values():
        for r in results_of(s):
            for epochs, preset, path in rungs(root, r.folder):
                for c in read_claims(path):
                    rows.append({**c, "epochs": epochs, "preset": preset, "folder": path.name,
                                 "results": r.folder})
    return rows


def by_claim(rows: list) -> dict:
    """{(study, claim, column): {epochs: row}} in the order first seen."""
    out = {}
    for r in rows:
        out.setdefault((r["study"], r["claim"], r["column"]), {})[r["epochs"]] = r
    return out


def trend(lengths: dict, paper) -> str:
    """How the difference moves from the shortest to the longest length: toward the paper's
    value (the longest length ends nearer to it), away from it (ends farther: a move that
    passes the paper's value and overshoots it is away), or flat (within TREND_SE combined
    s.e.); up/down without a paper value; then, where the verdict changes between lengths, each
    change, at the length where it happened, with the change of the difference there and its
    s.e. (verdict_changes). With one length: "one length only"."""
    if len(lengths) < 2:
        return "one length only"
    first, last = lengths[min(lengths)], lengths[max(lengths)]
    change = last["difference"] - first["difference"]
    se = math.hypot(first["sem"], last["sem"])
    changes = "".join(f"; {c}" for c in verdict_changes(lengths))
    if abs(change) <= TREND_SE * se:
        return f"flat ({change:+.2f} ± {se:.2f}){changes}"
    if paper is None:
        return f"{'up' if change > 0 else 'down'} ({change:+.2f} ± {se:.2f}){changes}"
    toward = abs(last["difference"] - paper) < abs(first["difference"] - paper)
    return f"{'toward the paper' if toward else 'away from the paper'} ({change:+.2f} ± " \
           f"{se:.2f}){changes}"


def verdict_changes(lengths: dict) -> list:
    """Each change of verdict between consecutive measured lengths: "not held -> held at 300
    epochs (+1.20 ± 0.30 from 100)", the difference's change over that step and its s.e."""
    out = []
    epochs = sorted(lengths)
    for a, b in zip(epochs, epochs[1:]):
        ra, rb = lengths[a], lengths[b]
        if ra["verdict"] != rb["verdict"]:
            out.append(f"{ra['verdict']} -> {rb['verdict']} at {b} epochs "
                       f"({rb['difference'] - ra['difference']:+.2f} ± "
                       f"{math.hypot(ra['sem'], rb['sem']):.2f} from {a})")
    return out


def cell(r: dict) -> str:
    return f"{r['difference']:+.2f} ± {r['sem']:.2f} **{r['verdict']}**" + \
        (f" ({r['detail']})" if r.get("detail") else "")


def paper_of(at: dict):
    return next((r["paper"] for r in at.values() if r.get("paper") is not None), None)


def markdown(rows: list, missing: list = ()) -> str:
    """The claims table by length: one line per claim and column; then the results folders
    not measured at the long preset's length and their cost (unmeasured)."""
    claims = by_claim(rows)
    lengths = sorted({r["epochs"] for r in rows})
    head = ["study", "claim", "column", *[f"{e} epochs" for e in lengths],
            f"paper ({PAPER_EPOCHS})", "trend"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for (study, text, column), at in claims.items():
        paper = paper_of(at)
        lines.append("| " + " | ".join([study, text, column] +
                                       [cell(at[e]) if e in at else "" for e in lengths] +
                                       ["–" if paper is None else f"{paper:+.2f}",
                                        trend(at, paper)]) + " |")
    held = {e: sum(1 for r in rows if r["epochs"] == e and r["verdict"] == "held")
            for e in lengths}
    total = {e: sum(1 for r in rows if r["epochs"] == e) for e in lengths}
    summary = ", ".join(f"{held[e]} of {total[e]} held at {e} epochs" for e in lengths)
    return (f"Claims by training length ({summary}). A claim is held when its difference "
            f"exceeds {HOLD_SE:g} s.e. and every evaluation behind it is certified; each "
            f"length is its own training runs and evaluation.\n\n" + "\n".join(lines) + "\n"
            + ("\n" + unmeasured_markdown(missing) if missing else ""))


def bench_file(root: Path):
    """The make-bench file a results folder holds (results/bench/, or a snapshot's bench_cpu/),
    or None."""
    return next((p for p in (root / "bench" / "bench.json", root / "bench_cpu" / "bench.json")
                 if p.exists()), None)


def unmeasured(root: Path, rows: list) -> list:
    """The results folders judged at some length but not at their study's long preset (300
    epochs): per folder, the command that measures it there and what the cost model
    (common/speed/costmodel.py) predicts for it with the make-bench units found under root
    (None without them): [{"folder", "epochs", "measured", "command", "hours", "unit_s",
    "trains"}]."""
    from ..runs.plan import load_units
    from ..speed.costmodel import predict
    from ..studies import results_of, studies
    measured = {}
    for r in rows:
        measured.setdefault(r["results"], set()).add(r["epochs"])
    bench = bench_file(root)
    predicted, unit = {}, None
    if bench is not None:
        try:
            units, qstar_steps, *_ = load_units(bench)
            predicted = predict(units, "long", qstar_steps)
            unit = read_json_or(bench, {}, "").get("epoch_s_ffg")
        except (ValueError, KeyError, TypeError) as err:   # an older bench file: no cost
            print(f"[ladder] no cost for the lengths not measured: {bench}: {err}",
                  file=sys.stderr)
    out = []
    for s in studies().values():
        long = s.presets.get("long")
        if long is None:
            continue
        for r in results_of(s):
            have = measured.get(r.folder)
            if not have or long.epochs in have:
                continue
            key = s.name + (f"_{r.step_tag}" if r.step_tag else "")
            cost = predicted.get(key)
            out.append({"folder": r.folder, "epochs": long.epochs, "measured": sorted(have),
                        "command": f"make {s.name} PRESET=long" +
                                   (f" VARIANT={r.step_tag}" if r.step_tag else ""),
                        "hours": cost["total"] / 3600 if cost else None, "unit_s": unit,
                        # a study that trains nothing (exp_gradients reads exp55's runs)
                        "trains": bool(s.models("long")) if s.models else True})
    return out


def unmeasured_markdown(missing: list) -> str:
    if not missing:
        return ""
    lines = [f"Not measured at {missing[0]['epochs']} epochs (the long preset), with what the "
             "cost model predicts for it on the machine of the make-bench file here (2 threads; "
             "its speed unit, the MNIST ffg trainer epoch, beside; the reference machine's is "
             "5.1 s)" + ("" if any(m["hours"] is not None for m in missing)
                         else ": no make-bench file here, so no cost") + ":", ""]
    for m in missing:
        if m["hours"] is not None:
            cost = f"about {m['hours']:.1f} h" + (f" (unit {m['unit_s']:.2f} s)" if m["unit_s"]
                                                   else "")
        elif not m["trains"]:
            cost = "nothing trained or fitted: seconds once the runs it reads exist"
        else:
            cost = "the cost model has no count for it"
        lines.append(f"- {m['folder']} (measured at {', '.join(map(str, m['measured']))} "
                     f"epochs): `{m['command']}`, {cost}")
    return "\n".join(lines) + "\n"


def slug(study: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", study.lower()).strip("_")


def plot(rows: list, out: Path) -> list:
    """One figure per study: a panel per claim, each column's difference (mean +- 3 s.e.)
    against epochs, the paper's value at 3280 (star), hollow markers where not certified."""
    import matplotlib.pyplot as plt

    from ..results.plots import drawn_from, figure_key, save
    written = []
    claims = by_claim(rows)
    for study in dict.fromkeys(k[0] for k in claims):
        stem = out / slug(study)
        key = figure_key([[list(k), v] for k, v in claims.items() if k[0] == study], __file__)
        if drawn_from(stem, key):   # the same claims drawn by the same code: kept
            written.append(stem.with_suffix(".png"))
            continue
        texts = list(dict.fromkeys(k[1] for k in claims if k[0] == study))
        fig, axes = plt.subplots(len(texts), 1, figsize=(8.5, 2.6 * len(texts)), squeeze=False)
        for ax, text in zip(axes[:, 0], texts):
            ticks = set()   # the lengths measured (and the paper's), not 10^k
            for i, ((_, _, column), at) in enumerate((k, v) for k, v in claims.items()
                                                     if k[0] == study and k[1] == text):
                ep = sorted(at)
                ticks.update(ep)
                d = [at[e]["difference"] for e in ep]
                color = f"C{i % 10}"
                ax.errorbar(ep, d, yerr=[HOLD_SE * at[e]["sem"] for e in ep], color=color,
                            capsize=3, label=column, lw=1)
                ax.scatter(ep, d, edgecolors=color, zorder=3,
                           facecolors=[color if at[e]["certified"] else "white" for e in ep])
                paper = paper_of(at)
                if paper is not None:
                    ax.scatter([PAPER_EPOCHS], [paper], marker="*", s=90, color=color, zorder=3)
                    ticks.add(PAPER_EPOCHS)
            ax.axhline(0, color="k", lw=0.8)
            ax.set_xscale("log")
            ax.set_xticks(sorted(ticks), [str(e) for e in sorted(ticks)])
            ax.minorticks_off()
            ax.set_title(text, fontsize=9)
            ax.set_ylabel("difference (nats)")
            ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1))
        axes[-1, 0].set_xlabel(f"training epochs (star: the paper's value at {PAPER_EPOCHS})")
        fig.suptitle(f"{study}: claims by training length (bars: {HOLD_SE:g} s.e.; hollow: a "
                     f"certificate missed)", fontsize=9)
        fig.tight_layout()
        save(fig, stem, key)
        written.append(stem.with_suffix(".png"))
    return written


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.parse_args(argv)
    root = results_dir()
    rows = collect(root)
    if not rows:
        print(f"error: no claims.json under {root}; run the studies first (make all, make "
              f"ladder)", file=sys.stderr)
        return 2
    write_json(root / "claims_by_length.json", rows)
    atomic_write_text(root / "CLAIMS_BY_LENGTH.md", markdown(rows, unmeasured(root, rows)))
    figures = plot(rows, root / "ladder")
    lengths = sorted({r["epochs"] for r in rows})
    print(f"[ladder] {len(by_claim(rows))} claims at {len(lengths)} lengths {lengths}; wrote "
          f"{root / 'CLAIMS_BY_LENGTH.md'} and {len(figures)} figures in {root / 'ladder'}")
    return 0


if __name__ == "__main__":
    sys.exit(guarded(main))
