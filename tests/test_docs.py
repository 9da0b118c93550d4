"""The READMEs say only what the committed files say: every relative link resolves, and the
README's main table is the committed snapshot's table, copied (a hand edit fails here)."""
import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LINK = re.compile(r"\]\(([^)#\s]+)")


def readmes():
    """Every README and every page of docs/ (the manual the README links to)."""
    return sorted([p for p in ROOT.rglob("README.md")
                   if not any(part.startswith(".") for part in p.relative_to(ROOT).parts)]
                  + list((ROOT / "docs").glob("*.md")))


def test_every_relative_link_in_every_readme_resolves():
    broken = []
    for readme in readmes():
        for link in LINK.findall(readme.read_text()):
            if "://" in link or link.startswith("mailto:"):
                continue
            if not (readme.parent / link).exists():
                broken.append(f"{readme.relative_to(ROOT)} -> {link}")
    assert not broken, broken
    assert len(readmes()) >= 6


def test_the_main_table_is_the_committed_snapshot():
    table = (ROOT / "docs/results/exp52_testgap/table.md").read_text().split("\n\n", 1)[1]
    assert table.strip() in (ROOT / "docs/results.md").read_text()


def test_every_quoted_snapshot_block_is_the_committed_file():
    """READMEs quote snapshot files between <!-- snapshot: PATH --> markers
    (tools/sync_readmes.py copies them); a hand edit of a quoted number fails here."""
    import importlib.util
    spec = importlib.util.spec_from_file_location("sync_readmes", ROOT / "tools/sync_readmes.py")
    sync = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(sync)
    stale = [str(r.relative_to(ROOT)) for r in sync.readmes()
             if sync.synced(r.read_text(), r.parent) != r.read_text()]
    assert not stale, f"run tools/sync_readmes.py: {stale}"
    text = "<!-- snapshot: docs/results/exp52_testgap/table.md -->\nhand-typed 1.23\n<!-- /snapshot -->"
    assert "hand-typed" not in sync.synced(text)   # the check can fail


def test_the_committed_speed_table_renders_the_committed_bench_json():
    """The README's speed table (docs/results/bench_cpu/summary.md, quoted) is summary_markdown
    of the bench.json beside it: no number in it is typed by hand."""
    from common.speed.bench import summary_markdown
    folder = ROOT / "docs/results/bench_cpu"
    bench = json.loads((folder / "bench.json").read_text())
    assert (folder / "summary.md").read_text() == summary_markdown(bench)
    assert "<!-- snapshot: docs/results/bench_cpu/summary.md -->" in \
        (ROOT / "docs/speed.md").read_text()
    bench["qstar_speedup"] += 1.0
    assert summary_markdown(bench) != (folder / "summary.md").read_text()   # it can fail


def test_the_committed_snapshot_names_no_machine_path():
    """docs/results records commands and paths relative to the repository and $RESULTS_DIR:
    nothing of the machine, checkout or temporary folder that made it (issue 28)."""
    found = []
    for f in (ROOT / "docs" / "results").rglob("*"):
        if f.is_file() and f.suffix in (".md", ".tex", ".csv", ".json", ".html"):
            text = f.read_text()
            found += [f"{f.relative_to(ROOT)}: {m}" for m in ("/tmp/", "/work/", "/root/",
                                                               "/home/") if m in text]
    assert not found, found[:10]


def test_the_committed_report_shows_the_verdicts_of_the_committed_claims():
    """report.html and REPORT.md are re-made whenever a snapshot's claims change: every row of
    CLAIMS.md's tables stands in REPORT.md, and each verdict count line in report.html (the
    report.html of 2c63564 lacked CLAIMS.md's 100- and 300-epoch columns)."""
    results = ROOT / "docs" / "results"
    claims = (results / "CLAIMS.md").read_text().splitlines()
    report = (results / "REPORT.md").read_text()
    rows = [line for line in claims if line.startswith("| ")]
    assert rows and [r for r in rows if r not in report] == []
    html = (results / "report.html").read_text()
    counts = re.findall(r"\*\*(exp[^*]+)\*\*: (\d+ of \d+ held)", "\n".join(claims))
    assert counts and all(f"<strong>{s}</strong>: {n}" in html for s, n in counts)


def test_the_committed_report_names_every_folder_made_by_older_evaluation_code():
    """Every committed number comes from the committed code, or the first screen says which
    folders are older: the folders whose recorded evaluation version (provenance.json, else its
    commit's EVAL_VERSION) differs from today's are exactly those REPORT.md lists."""
    from common.reporting.report import experiments, older_code_folders, study_folders
    results = ROOT / "docs" / "results"
    folders = study_folders(results, [{"folder": f} for f, *_ in experiments()])
    assert "exp66_small_data" in folders and "exp52_testgap_long" in folders
    old = {f for f, _ in older_code_folders(results, folders)}
    report = (results / "REPORT.md").read_text()
    line = next((s for s in report.splitlines() if "made by older evaluation code" in s), "")
    listed = set(re.findall(r"(?:: |; )([a-z0-9_]+) \(", line))
    assert listed == old, (sorted(listed - old), sorted(old - listed))


def test_a_folder_is_older_when_its_recorded_evaluation_version_differs(tmp_path):
    import json

    from common.inference.gaps import EVAL_VERSION
    from common.reporting.report import older_code_folders
    for name, prov in (("today", {"eval_version": EVAL_VERSION}),
                       ("older", {"eval_version": EVAL_VERSION - 1}),
                       ("unknown", {"git_commit": "not-a-commit"})):
        (tmp_path / name).mkdir()
        (tmp_path / name / "provenance.json").write_text(json.dumps(prov))
    assert older_code_folders(tmp_path, ["today", "older", "unknown", "absent"]) == \
        [("older", EVAL_VERSION - 1), ("unknown", None)]


def test_a_folder_of_version_11_is_todays_where_no_qstar_fit_fell_back(tmp_path):
    """EVAL_VERSION 12 changed only the points whose q* fit lost to another member: a version-11
    folder whose every qstar_fallback is 0 (or whose study fits no q* through encoder_bounds)
    holds today's numbers; one with a fallback, or with no record of them, is older."""
    import json

    from common.reporting.report import older_code_folders
    rows = {"none_fell_back": "0.0\n0.0\n", "one_fell_back": "0.0\n0.013\n", "no_record": None}
    for name, column in [*rows.items(), ("exp66_small_data_long", None)]:
        (tmp_path / name).mkdir()
        (tmp_path / name / "provenance.json").write_text(json.dumps({"eval_version": 11}))
        if column:
            (tmp_path / name / "gaps.csv").write_text("model,qstar_fallback\n" + "".join(
                f"m{i},{v}\n" for i, v in enumerate(column.split())))
    assert older_code_folders(tmp_path, [*rows, "exp66_small_data_long"]) == \
        [("one_fell_back", 11), ("no_record", 11)]


def test_a_folder_of_an_earlier_version_with_a_tie_is_older(tmp_path):
    """Versions 12 to 14 changed the points whose q* fit, retried, still lost to another member:
    a tie (lost within noise) as much as a fallback. A version-13 folder with neither holds
    today's numbers; one with a tie does not."""
    import json

    from common.reporting.report import older_code_folders
    rows = {"neither": ("0.0", "0.0"), "a_tie": ("0.0", "0.007")}
    for name, (fallback, tie) in rows.items():
        (tmp_path / name).mkdir()
        (tmp_path / name / "provenance.json").write_text(json.dumps({"eval_version": 13}))
        (tmp_path / name / "gaps.csv").write_text(
            f"model,qstar_fallback,qstar_tie\nm0,0.0,0.0\nm1,{fallback},{tie}\n")
    assert older_code_folders(tmp_path, list(rows)) == [("a_tie", 13)]
