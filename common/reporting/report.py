"""`make report`: results/REPORT.md and a self-contained results/report.html (figures embedded)
with every table and figure of every experiment found under RESULTS_DIR, plus preset, seed,
device, package versions, git commit and the wall time of each step. Missing experiments are
listed, never invented. `--snapshot DIR` also copies the report, tables and PNGs to DIR
(docs/results in the repository) and writes DIR/CLAIMS.md: the claims table of the report's
first screen, from the claims.json files in DIR."""
import argparse
import base64
import datetime
import functools
import re
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path

from ..config import (ROOT, ConfigError, atomic_write_text, check_results_dir, edited_by_hand,
                     git_commit, read_json_or, results_dir, write_json)


def experiments() -> list:
    """(folder, title, figure stems, the claim it tests) of every study's results folders, in
    the studies' order: each study folder declares them (common/studies.py)."""
    from ..studies import results_of, studies
    return [(r.folder, r.title, list(r.figures), r.claim)
            for s in studies().values() for r in results_of(s)]


PACKAGES = ("torch", "numpy", "matplotlib", "seaborn", "tabulate", "pytest")


def versions() -> dict:
    out = {"python": sys.version.split()[0]}
    for p in PACKAGES:
        try:
            out[p] = metadata.version(p)
        except metadata.PackageNotFoundError:
            out[p] = "not installed"
    return out


VERDICT_CLASSES = {"held": "held", "not held": "not-held", "not certified": "not-certified",
                   "too few points": "not-certified"}
STYLE = ("body{font-family:sans-serif;max-width:1200px;margin:auto;padding:0 1em}"
         "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;"
         "padding:2px 6px;font-size:90%}img{max-width:100%}.toc{font-size:90%}"
         "strong.held{color:#1a7f37}strong.not-held{color:#b42318}"
         "strong.not-certified{color:#b54708}")


def render_html(text: str, root: Path) -> str:
    """The report's markdown as one self-contained HTML page, rendered by python-markdown
    (tables, a table of contents after the title); figures embedded as data URIs; verdicts
    coloured (held green, not held red, not certified orange)."""
    import markdown

    def embed(m):
        path = root / m.group(2)
        if not path.exists():
            return m.group(0)
        return f"![{m.group(1)}](data:image/png;base64,{base64.b64encode(path.read_bytes()).decode()})"
    text = re.sub(r"!\[([^\]]*)\]\(([^)]+\.png)\)", embed, text)
    title, _, rest = text.partition("\n\n")
    body = markdown.markdown(f"{title}\n\n[TOC]\n\n{rest}", extensions=["tables", "toc"],
                             output_format="html")
    for verdict, cls in VERDICT_CLASSES.items():
        body = body.replace(f"<strong>{verdict}</strong>", f'<strong class="{cls}">{verdict}</strong>')
    return ("<!doctype html><html><head><meta charset='utf-8'><title>Inference suboptimality "
            f"report</title><style>{STYLE}</style></head><body>{body}</body></html>")


def collect(root: Path) -> list:
    sections = []
    for folder, title, figures, claim in experiments():
        d = root / folder
        tables = sorted(d.glob("table*.md")) if d.exists() else []
        pngs = [d / f"{f}.png" for f in figures if (d / f"{f}.png").exists()]
        prov = read_json_or(d / "provenance.json", {}, "the report omits its provenance line")
        prov = prov if isinstance(prov, dict) else {}
        sections.append({"folder": folder, "title": title, "claim": claim, "tables": tables,
                         "figures": pngs, "provenance": prov,
                         "present": bool(tables or pngs)})
    return sections


def steps_of(folder: str, steps: dict, provenance: dict = None) -> dict:
    """The step_times.json entries of one results folder's make steps (common/studies.py); with
    a provenance, only the runs made for it."""
    from ..studies import steps_of as study_steps
    return study_steps(folder, steps, provenance)


def computed_by(folder: Path) -> tuple:
    """([((commit, first time), rows)] of the computed_commit column of the folder's CSVs, [the
    gap tables (gaps*.csv) whose commit cannot be read: unreadable, or the column renamed])."""
    from ..results.tables import read_csv
    counts, first, unknown = {}, {}, []
    for path in sorted(folder.glob("*.csv")):
        try:
            rows = read_csv(path, ("computed_commit",) if path.name.startswith("gaps") else ())
        except Exception as err:  # noqa: BLE001 - an unreadable CSV is reported by its own step
            if path.name.startswith("gaps"):
                print(f"warning: {str(err).split(';')[0]}; the report cannot say which commit "
                      f"computed its numbers", file=sys.stderr)
                unknown.append(path.name)
            continue
        for r in rows:
            c = r.get("computed_commit")
            if c:
                counts[c] = counts.get(c, 0) + 1
                first[c] = min(first.get(c, r.get("computed_time", "")), r.get("computed_time", ""))
    return [((c, first[c]), n) for c, n in sorted(counts.items(), key=lambda kv: first[kv[0]])], \
        unknown


def set_aside_claims(root: Path, sections: list) -> list:
    """A line naming every claims.json set aside as unreadable or edited (claims.read_claims)
    that its study has not rewritten since: those claims are missing from the screen."""
    found = []
    for s in sections:
        corrupt, claims = root / s["folder"] / "claims.json.corrupt", root / s["folder"] / "claims.json"
        if corrupt.exists() and not (claims.exists() and
                                     claims.stat().st_mtime >= corrupt.stat().st_mtime):
            found.append(f"`{corrupt.relative_to(root).as_posix()}`")
    if not found:
        return []
    return [f"**Claims set aside** (unreadable, or edited after their study wrote them): "
            f"{', '.join(found)}; their claims are missing here until the study is rerun.", ""]


def seeds_glance(entries: list) -> list:
    """One line per results folder and length judged across several seeds in the snapshot's
    own folders (common/reporting/seeds.collect's entries): how many of its claims hold across
    seeds and in how many the seeds' verdicts differ."""
    groups = {}
    for e in entries:
        if e["seeds"] > 1:
            groups.setdefault(e["results"] + e["length"], []).append(e)
    from .seeds import summary
    return [f"Claims across seeds in {folder} (seeds "
            f"{', '.join(map(str, sorted({x['seed'] for e in mine for x in e['per_seed']})))}): "
            f"{summary(mine)}; the first screen's last column)." for folder, mine in groups.items()]


def write_glance(dest: Path) -> Path:
    """dest/GLANCE.md, the README's verdicts at a glance, cut from the snapshot's own files: the
    headline and per-study counts of CLAIMS.md, its by-length sentence, the claims the snapshot
    itself judges across seeds (its folders F, F_seed<k> of one length: seeds_glance), and the
    first sentence of every CLAIMS_ACROSS_SEEDS.md in the snapshot (with its folder)."""
    lines = (dest / "CLAIMS.md").read_text().splitlines() if (dest / "CLAIMS.md").exists() else []
    head = [lines[0].split(". ")[0] + "."] if lines else ["No claims judged in this snapshot."]
    studies = [line for line in lines if line.startswith("- **")]
    by_length = [line for line in lines if line.startswith("Claims by training length (")]
    from . import seeds as seeds_mod
    seeds = seeds_glance(seeds_mod.collect(dest))
    for f in sorted(dest.glob("**/CLAIMS_ACROSS_SEEDS.md")):
        first = f.read_text().split("\n", 1)[0].split(" Held across seeds")[0]
        seeds.append(f"{first} ([{f.relative_to(dest).as_posix()}]"
                     f"({f.relative_to(dest).as_posix()}))")
    out = head + [""] + studies + [""] + [b.split(". ")[0] + "." for b in by_length] + \
        ([""] + seeds if seeds else [])
    atomic_write_text(dest / "GLANCE.md", "\n".join(out).strip() + "\n")
    return dest / "GLANCE.md"


def claims_screen(root: Path, sections: list, figures: bool = True,
                  ladder_rows: list = None) -> list:
    """The first screen: did the paper's claims hold? One row per claim and column, from each
    experiment's claims.json (common/results/claims.py); where several seeds exist
    (common/reporting/seeds.py), the seeds where it holds and the verdict across seeds; then the
    claims figure (a forest
    plot: each seed's difference with its 3-s.e. bar and the paper's mark). ladder_rows: the
    claims at every length (common/ladder.collect; read here when not given)."""
    from . import seeds as seeds_mod
    from ..results.claims import (HOLD_SE, MARKDOWN_HEADER, SOURCES, markdown_rows, read_claims,
                         verdict_differs)
    claims = [c for s in sections for c in read_claims(root / s["folder"])]
    aside = set_aside_claims(root, sections)
    if not claims:
        return ["## Did the paper's claims hold?", "", "No experiment has judged a claim yet "
                "(claims.json beside its tables).", ""] + aside
    every_length = seeds_mod.collect(root)
    entries = [e for e in every_length if not e["length"]]
    across = {(e["study"], e["claim"], e["column"]): e for e in entries}
    several = any(e["seeds"] > 1 for e in entries)
    studies_seen = list(dict.fromkeys(c["study"] for c in claims))
    claims = sorted(claims, key=lambda c: studies_seen.index(c["study"]))   # grouped by study
    held = sum(c["verdict"] == "held" for c in claims)
    summary = []
    for st in studies_seen:
        mine = [c for c in claims if c["study"] == st]
        counts = {v: sum(c["verdict"] == v for c in mine) for v in VERDICT_CLASSES}
        differ = sum(verdict_differs(c) for c in mine)
        summary.append(f"- **{st}**: {counts['held']} of {len(mine)} held" +
                       "".join(f", {counts[v]} {v}" for v in ("not held", "not certified", "too few points")
                               if counts[v]) +
                       (f"; **{differ} verdict{'s' if differ > 1 else ''} differ{'' if differ > 1 else 's'} under the paper's max "
                        f"rule for log p̂**" if differ else ""))
    by_source = "; ".join(
        f"{sum(c['verdict'] == 'held' for c in claims if c.get('source', 'paper') == src)} of "
        f"{sum(c.get('source', 'paper') == src for c in claims)} of the {src}'s"
        for src in SOURCES if any(c.get("source", "paper") == src for c in claims))
    rows = markdown_rows(claims)
    header = "| " + " | ".join(MARKDOWN_HEADER) + " |"
    if several:
        header += " seeds held | across seeds |"
        for c, r in zip(claims, rows):
            e = across.get((c["study"], c["claim"], c["column"]))
            r += [f"{e['seeds_held']} of {e['seeds']}", f"{e['mean']:+.2f} ± "
                  f"{e['combined_sem']:.2f} **{e['across_seeds']}**"] if e else ["", ""]
    md = ["## Did the paper's claims hold?", "",
          f"{held} of {len(claims)} judged claims held ({by_source}). Each row is a difference "
          f"the claim "
          f"predicts to be positive (nats; the paper's own difference beside ours, mean ± "
          f"s.e.m.): **held** when it exceeds {HOLD_SE:g} s.e. and every estimate involved is "
          f"certified (BDMC gap, q* cap share and convergence probe within target), **not "
          f"certified** when it exceeds {HOLD_SE:g} s.e. but a certificate was missed, **too few "
          f"points** where one point (or seed) leaves no s.e. log p̂ "
          f"is AIS (no per-point selection); the last column judges the claim again with the "
          f"paper's log p̂ = max(AIS, IWAEs) per point (\"–\": the claim involves no log p̂; "
          f"\"made by it\": numbers computed before log p̂ = AIS). Source: the paper, or the "
          f"brief (the user's own findings)." +
          (f" Across seeds: held when the mean over seeds exceeds {HOLD_SE:g} combined s.e. "
           "(between seeds and the points', in quadrature; with 3 or more seeds; with fewer, "
           "held in every seed) and every seed is certified."
           if several else ""), "",
          *summary, "", *aside, *paper_rule_notice(root, sections),
          *older_code_notice(root, sections), *longest_screen(root, every_length, ladder_rows),
          header,
          "|" + "---|" * header.count(" |")] + ["| " + " | ".join(r) + " |" for r in rows]
    md.append("")
    if figures and entries:
        png = seeds_mod.forest(entries, root / "claims_forest")
        md += [f"![claims_forest]({png.relative_to(root).as_posix()})", ""]
    return md


def longest_screen(root: Path, seed_entries: list, rows: list = None) -> list:
    """Where RESULTS_DIR holds more than one training length (common/reporting/ladder.py): per
    claim, the verdict at the longest length measured, its trend over lengths and the paper's
    value, and the seeds where it holds: at that longest length where it has several seeds
    (its folders F_long, F_long_seed<k>, ...), else at the quick length. seed_entries:
    common/reporting/seeds.collect's entries of every length. The quick length's full table
    follows it."""
    from . import ladder
    from ..results.claims import cell
    rows = ladder.collect(root) if rows is None else rows
    if len({r["epochs"] for r in rows}) < 2:
        return []
    across = {(e["length"], e["study"], e["claim"], e["column"]): e for e in seed_entries}
    head = ["claim (study: claim, column)", "longest length", "ours there", "paper", "trend",
            "seeds held (there; else quick)"]
    claims = ladder.by_claim(rows)
    held = sum(at[max(at)]["verdict"] == "held" for at in claims.values())
    lines = [f"**At the longest training length measured: {held} of {len(claims)} held** (each "
             "length its own runs and evaluation; the paper trained 3280 epochs; the table "
             "after it is the quick length's, in full):", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for key, at in claims.items():
        longest = max(at)
        paper = ladder.paper_of(at)
        lines.append("| " + " | ".join([
            cell(f"{key[0]}: {key[1]}, {key[2]}"), f"{longest} epochs" +
            ("" if len(at) > 1 else " (the only one)"), ladder.cell(at[longest]),
            "–" if paper is None else f"{paper:+.2f}", ladder.trend(at, paper),
            seeds_cell(across, key, at[longest])]) + " |")
    return lines + [""]


def seeds_cell(across: dict, key: tuple, longest: dict) -> str:
    """In how many seeds a claim holds at its longest length (with the across-seed verdict
    and the mean ± combined s.e.), where that length has several seeds; else at the quick
    length ("(quick)"); "–" with one seed."""
    from .seeds import across_cell
    length = longest["folder"][len(longest["results"]):]   # ladder rows: "_long", "_long_e100"
    for at, label in ((length, f" at {longest['epochs']} epochs"), ("", " (quick)")):
        e = across.get((at, *key))
        if e and e["seeds"] > 1:
            return f"{e['seeds_held']} of {e['seeds']}{label}: {across_cell(e)} across seeds"
    return "–"


def paper_rule_folders(root: Path, folders) -> list:
    """[(folder, [max_rule_excess of its rows])] of the results folders whose gap CSVs were made
    by the paper's max rule for log p^ (its `ais_sets_logpx` certificate and no `logpx_rule`:
    computed before log p^ = AIS and not re-made since; exp51's log p^ is a grid's, exact)."""
    from ..results.tables import read_csv
    out = []
    for folder in folders:
        for path in sorted((root / folder).glob("*.csv")):
            try:
                rows = read_csv(path)
            except Exception:  # noqa: BLE001 - an unreadable CSV is reported by its own step
                continue
            if rows and "ais_sets_logpx" in rows[0] and "logpx_rule" not in rows[0]:
                excess = []
                for r in rows:
                    try:
                        excess.append(float(r.get("max_rule_excess", "")))
                    except ValueError:
                        pass
                out.append((folder, excess))
                break
    return out


@functools.lru_cache(maxsize=None)
def version_at(commit: str):
    """EVAL_VERSION in the code of a commit (a provenance's git_commit, "+dirty" or not), read
    from git where this checkout has it; None where it cannot be read."""
    commit = commit.split("+")[0]
    if not re.fullmatch(r"[0-9a-f]{7,40}", commit):
        return None
    for path in ("common/inference/gaps.py", "common/gaps.py"):   # before and after the layers
        try:
            text = subprocess.run(["git", "show", f"{commit}:{path}"], cwd=ROOT,
                                  capture_output=True, text=True, timeout=30).stdout
        except (OSError, subprocess.SubprocessError):
            return None
        found = re.search(r"^EVAL_VERSION = (\d+)", text, re.M)
        if found:
            return int(found.group(1))
    return None


# studies that fit no q* through encoder_bounds (exp51 fits its own, exp66 and the gradients none):
# EVAL_VERSION 12's change to q*'s fallbacks cannot touch their numbers
NO_ENCODER_QSTAR = ("exp51_posteriors", "exp66_small_data", "exp_gradients")


def same_as_today(folder: Path, version) -> bool:
    """Whether a folder made by an earlier evaluation version holds what today's code computes:
    its version is one of SAME_WITHOUT_FALLBACK and no q* fit of it, retried, still lost to
    another member (every qstar_fallback and qstar_tie of its CSVs is 0, and it has some
    qstar_fallback; version 11 had no ties: every such point was a fallback), or its study fits
    no q* that could."""
    from ..inference.gaps import SAME_WITHOUT_FALLBACK
    if version not in SAME_WITHOUT_FALLBACK:
        return False
    if folder.name.startswith(NO_ENCODER_QSTAR):
        return True
    from ..results.tables import read_csv
    shares, ties = [], []
    try:
        for path in sorted(folder.glob("*.csv")):
            rows = read_csv(path)
            shares += [float(r["qstar_fallback"]) for r in rows
                       if r.get("qstar_fallback", "") != ""]
            ties += [float(r["qstar_tie"]) for r in rows if r.get("qstar_tie", "") != ""]
    except Exception:  # noqa: BLE001 - an unreadable CSV is reported by its own step
        return False
    return bool(shares) and all(v == 0 for v in shares + ties)


def older_code_folders(root: Path, folders) -> list:
    """[(folder, its evaluation version or None)] of the results folders made by another
    EVAL_VERSION than the code computes today: the one its provenance.json records, else the
    one of its recorded commit (version_at; None where neither is known), unless same_as_today
    says that version's numbers are today's: numbers today's code would not reproduce."""
    from ..inference.gaps import EVAL_VERSION
    out = []
    for folder in folders:
        path = root / folder / "provenance.json"
        if not path.exists():
            continue
        prov = read_json_or(path, None, "its code version is not known")
        prov = prov if isinstance(prov, dict) else {}
        version = prov["eval_version"] if "eval_version" in prov else \
            version_at(str(prov.get("git_commit", "")))
        if version != EVAL_VERSION and not same_as_today(root / folder, version):
            out.append((folder, version))
    return out


def study_folders(root: Path, sections: list) -> list:
    """Every results folder of these report sections: each study's, its other training lengths'
    and its other seeds'."""
    from .ladder import rungs
    from .seeds import seed_folders
    names = []
    for s in sections:
        names += [s["folder"]] + [p.name for _, _, p in rungs(root, s["folder"])] + \
            [p.name for seeds in seed_folders(root, s["folder"]).values() for p in seeds.values()]
    return list(dict.fromkeys(names))


def older_code_notice(root: Path, sections: list) -> list:
    """The first screen's warning where some folders were made by older evaluation code."""
    from ..inference.gaps import EVAL_VERSION
    old = older_code_folders(root, study_folders(root, sections))
    if not old:
        return []
    cells = [f"{f} ({'version ' + str(v) if v is not None else 'version not recorded'})"
             for f, v in old]
    return [f"**{len(old)} folder{'s' if len(old) > 1 else ''} made by older evaluation code** "
            f"(today's EVAL_VERSION {EVAL_VERSION}; `make all` would recompute them): "
            + "; ".join(cells) + ".", ""]


def paper_rule_notice(root: Path, sections: list) -> list:
    """The first screen's warning where some numbers were made by the paper's max rule."""
    old = paper_rule_folders(root, study_folders(root, sections))
    if not old:
        return []
    cells = [f"{f}" + (f" (max rule − pooled {min(e):.2f}–{max(e):.2f} nats)" if e else
                       " (max rule − pooled not recorded)") for f, e in old]
    return [f"**log p̂ by the paper's max rule in {len(old)} folder{'s' if len(old) > 1 else ''}** "
            f"(computed before log p̂ = AIS, not re-made since; their approximation and total "
            f"gaps carry the max's upward selection, of up to the max rule − pooled excess "
            f"shown): " + "; ".join(cells) + ".", ""]


def ladder_screen(root: Path, figures: bool = True, rows: list = None) -> list:
    """Claims by training length (common/reporting/ladder.py), when RESULTS_DIR holds more than one
    length of some study: the table, then one figure per study. rows: ladder.collect's, if read."""
    from . import ladder
    rows = ladder.collect(root) if rows is None else rows
    if len({r["epochs"] for r in rows}) < 2:
        return []
    md = ["## Claims by training length", "", ladder.markdown(rows, ladder.unmeasured(root, rows))]
    if figures:
        for png in ladder.plot(rows, root / "ladder"):
            md += [f"![{png.stem}]({png.relative_to(root).as_posix()})", ""]
    return md


def build(root: Path) -> tuple:
    sections = collect(root)
    from ..speed.steptime import read_times
    steps = read_times(root / "step_times.json")
    vers = versions()
    missing = [s["folder"] for s in sections if not s["present"]]
    md = ["# Inference suboptimality: report", "",
          f"Git commit of the report: `{git_commit()}`. Packages: " +
          ", ".join(f"{k} {v}" for k, v in vers.items()) + ".", ""]
    dirty = [s["folder"] for s in sections
             if "+dirty" in str(s["provenance"].get("git_commit", ""))]
    if dirty or git_commit().endswith("+dirty"):
        md += ["**Made from a working tree with uncommitted changes** (`+dirty`: "
               + (", ".join(dirty) if dirty else "the report") + "): the commit named does not "
               "hold the code that made these numbers.", ""]
    from .ladder import collect as ladder_collect
    ladder_rows = ladder_collect(root)   # every length's claims, read once for both screens
    md += claims_screen(root, sections, ladder_rows=ladder_rows)
    md += ladder_screen(root, rows=ladder_rows)
    if missing:
        md += ["**Missing experiments** (no results under $RESULTS_DIR): " + ", ".join(missing),
               ""]
    for s in sections:
        if not s["present"]:
            continue
        p = s["provenance"]
        md += [f"## {s['title']}", "", f"*Claim tested:* {s['claim']}", ""]
        if p:
            md += [f"Preset `{p.get('preset')}`, seed {p.get('seed')}, device {p.get('device')}; "
                   f"tables written at commit `{p.get('git_commit')}`, {p.get('time')}, by "
                   f"`{p.get('command')}`.", ""]
        computed, unknown = computed_by(root / s["folder"])
        if unknown:
            md += [f"**Numbers of unknown commit**: {', '.join(unknown)} has no readable "
                   f"`computed_commit` column (renamed, or another version); rerun the study.", ""]
        if computed:
            md += ["Numbers computed at " + "; ".join(
                f"commit `{c}` ({n} row{'s' if n > 1 else ''}, {t})" for (c, t), n in computed)
                + " (a cached number keeps the commit that computed it).", ""]
        for t in s["tables"]:
            if edited_by_hand(t):
                print(f"warning: {t} differs from the checksum its study recorded (edited by "
                      f"hand?); left out of the report: rerun its study to rewrite it",
                      file=sys.stderr)
                md += [f"**{t.name} left out**: it differs from the checksum its study recorded "
                       f"(edited after it was written); rerun the study to rewrite it.", ""]
                continue
            md += [t.read_text().strip(), ""]
        for f in s["figures"]:
            md += [f"![{f.stem}]({f.relative_to(root).as_posix()})", ""]
    bench = root / "bench" / "bench.json"
    if bench.exists():
        data = read_json_or(bench, {}, "the report omits the speed section")
        md += ["## Speed (`make bench`)", "", "| measure | value |", "|---|---|"]
        md += [f"| {k} | {v:.4g} |" if isinstance(v, float) else f"| {k} | {v} |"
               for k, v in data.items() if not isinstance(v, dict)]
        md.append("")
    if steps:
        md += ["## Wall time of each step", "",
               "Every run of a step; a re-run that finds its work done takes seconds.", "",
               "| step | wall time (s) | finished |",
               "|---|---|---|"]
        md += [f"| {k} | {r['wall_s']} | {r['finished']} |" for k, runs in sorted(steps.items())
               for r in (runs if isinstance(runs, list) else [runs])]
        md.append("")
    text = "\n".join(md)
    page = render_html(text, root)
    return text, page, missing


# what a snapshot keeps of each experiment folder (never checkpoints or per-point files)
SNAPSHOT_FILES = ("table*.md", "table*.tex", "*.png", "*.pdf", "*.csv", "*provenance.json",
                  "claims.json")


def copy_folder(src: Path, dest: Path) -> None:
    """What a snapshot keeps of a results folder (SNAPSHOT_FILES), its text files with every
    machine path made portable (config.portable: results made before paths were recorded so
    still say where they ran)."""
    from ..config import portable
    dest.mkdir(parents=True, exist_ok=True)
    for f in [f for pattern in SNAPSHOT_FILES for f in src.glob(pattern)]:
        if f.suffix in (".md", ".tex", ".csv", ".json"):
            atomic_write_text(dest / f.name, portable(f.read_text()))
        else:
            shutil.copyfile(f, dest / f.name)


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else \
        f"{seconds / 60:.1f} min" if seconds < 7200 else f"{seconds / 3600:.2f} h"


def _clock(text):
    """A step's `finished` time (common/speed/steptime.py), or None where it is not one."""
    try:
        return datetime.datetime.strptime(str(text), "%Y-%m-%d %H:%M:%S")
    except ValueError:
        return None


def times_table(steps: dict, top: int = 12, machine: dict = None) -> list:
    """Markdown lines: `make all` as one command (its last run, step make_all), the machine it
    ran on (machine.json, common/speed/machine.py) and the slowest steps (each step's last run
    inside make all's time: a results folder also keeps the runs of a later `make ladder` or
    seed)."""
    steps = {k: runs if isinstance(runs, list) else [runs] for k, runs in steps.items() if runs}
    total = steps.pop("make_all", [None])[-1]
    if not total:   # no make all: what each step cost, over every run of it
        return times_summed(steps, top, machine)
    # a step's runs inside make all's time (not a later `make ladder`'s or a seed's)
    end = _clock(total["finished"])
    start = end and end - datetime.timedelta(seconds=total["wall_s"] + 1)
    if start:   # a run whose time does not parse is kept
        inside = lambda r: start <= (_clock(r["finished"]) or end) <= end  # noqa: E731
        steps = {k: [r for r in runs if inside(r)] for k, runs in steps.items()}
    last = {k: runs[-1] for k, runs in steps.items() if runs}
    lines = [f"`make all` as one command: **{_duration(total['wall_s'])}** (finished "
             f"{total['finished']}; the report after it takes seconds).", ""]
    from ..speed.machine import describe
    if describe(machine):
        lines += [describe(machine), ""]
    lines += ["| step (slowest first) | wall time | share of make all | finished |",
              "|---|---|---|---|"]
    for name, r in sorted(last.items(), key=lambda kv: -kv[1]["wall_s"])[:top]:
        lines.append(f"| {name} | {_duration(r['wall_s'])} | {r['wall_s'] / total['wall_s']:.0%} "
                     f"| {r['finished']} |")
    return lines


def times_summed(steps: dict, top: int = 12, machine: dict = None) -> list:
    """Markdown lines for results made without one `make all` (seeds, lengths, steps run by
    hand): each step's wall time summed over its runs, with their count (a run that found its
    work cached is counted, at its few seconds)."""
    from ..speed.machine import describe
    lines = ["No `make all` made these results: each step's wall time is the sum over its runs "
             "(one per seed, length or subset of the work).", ""]
    if describe(machine):
        lines += [describe(machine), ""]
    lines += ["| step (most time first) | wall time, all runs | runs | last finished |",
              "|---|---|---|---|"]
    summed = {k: (sum(r["wall_s"] for r in runs), runs) for k, runs in steps.items() if runs}
    for name, (wall, runs) in sorted(summed.items(), key=lambda kv: -kv[1][0])[:top]:
        lines.append(f"| {name} | {_duration(wall)} | {len(runs)} | "
                     f"{max(str(r['finished']) for r in runs)} |")
    return lines


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--snapshot", default="", help="also copy report, tables and PNGs here")
    parser.add_argument("--folders", default="", help="with --snapshot: copy only these "
                        "experiment folders (comma list), not the report")
    parser.add_argument("--preset", default=None)  # accepted for a uniform Make interface
    parser.add_argument("--device", default=None)
    parser.add_argument("--seed", default=None)
    args = parser.parse_args(argv)
    try:
        root = check_results_dir(results_dir())
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    text, page, missing = build(root)
    atomic_write_text(root / "REPORT.md", text)
    atomic_write_text(root / "report.html", page)
    print(f"[report] wrote {root / 'REPORT.md'} and {root / 'report.html'}"
          + (f"; missing: {', '.join(missing)}" if missing else ""))
    if args.snapshot:
        dest = Path(args.snapshot)
        only = [f for f in args.folders.split(",") if f]
        unknown = sorted(set(only) - {f for f, *_ in experiments()})
        if unknown:
            print(f"error: --folders {','.join(unknown)} is not an experiment folder; use: "
                  f"{', '.join(f for f, *_ in experiments())}", file=sys.stderr)
            return 2
        from .ladder import rungs
        for folder, *_ in experiments():
            if only and folder not in only:
                continue
            # the folder and its other training lengths (folder_long, folder_long_e100, ...)
            for name in dict.fromkeys([folder] + [p.name for _, _, p in rungs(root, folder)]):
                src = root / name
                if src.exists():
                    copy_folder(src, dest / name)
        from .seeds import seed_folders
        for folder, *_ in experiments():   # other seeds' folders of every length
            for seeds in seed_folders(root, folder).values():
                for seed, src in seeds.items():
                    if seed and (not only or folder in only):
                        copy_folder(src, dest / src.name)
        # the claims of every study in the snapshot, judged there (docs/results.md quotes this
        # file), then the same claims at every training length the snapshot holds
        from .ladder import collect as ladder_collect
        ladder_rows = ladder_collect(dest)
        by_length = ladder_screen(dest, rows=ladder_rows)
        atomic_write_text(dest / "CLAIMS.md", "\n".join(
            claims_screen(dest, collect(dest), ladder_rows=ladder_rows)[2:] + by_length)
            .strip() + "\n")

        write_glance(dest)

        from ..speed.steptime import read_times
        all_steps = read_times(root / "step_times.json")
        kept = {}   # the runs of every folder copied: TIMES.md's where no make all ran
        # each folder's make steps, and each of its lengths' and seeds': the runs made for it
        # (a results folder also keeps the runs of other lengths and seeds)
        for folder in only or [f for f, *_ in experiments()]:
            for src in [root / folder] + [p for _, _, p in rungs(root, folder)] + \
                    [p for seeds in seed_folders(root, folder).values() for p in seeds.values()]:
                prov = read_json_or(src / "provenance.json", None, "its step times are left out")
                mine = steps_of(folder, all_steps, prov if isinstance(prov, dict) else {})
                if mine and (dest / src.name).exists():
                    write_json(dest / src.name / "step_times.json", mine)
                    for step, runs in mine.items():
                        kept.setdefault(step, []).extend(r for r in runs
                                                         if r not in kept.get(step, []))
        if only:
            print(f"[report] snapshot of {', '.join(only)} in {dest}")
            return 0
        from ..config import portable
        for f in ("bench/bench.json", "bench/profile.json", "REPORT.md", "report.html",
                  "step_times.json", "machine.json", "CLAIMS_BY_LENGTH.md",
                  "claims_by_length.json",
                  "CLAIMS_ACROSS_SEEDS.md", "claims_across_seeds.json"):
            if (root / f).exists():
                atomic_write_text(dest / f, portable((root / f).read_text()))
        for f in ("claims_forest.png", "claims_forest.pdf"):   # the first screen's figure
            if (root / f).exists():
                shutil.copyfile(root / f, dest / f)
        if all_steps:   # the README quotes this file
            machine = read_json_or(root / "machine.json", None, "TIMES.md names no machine")
            atomic_write_text(dest / "TIMES.md", "\n".join(times_table(
                all_steps if "make_all" in all_steps else kept, machine=machine)) + "\n")
        print(f"[report] snapshot in {dest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
