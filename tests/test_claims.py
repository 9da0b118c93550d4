"""Claims are judged by one rule (common/results/claims.py): beyond 3 s.e. and certified."""
import math

import pytest

from common.results.claims import compare_rows, markdown_rows, read_claims, verdict, write_claims


def row(gap, sem, certified=True):
    return {"amort_gap": gap, "amort_gap_sem": sem, "certified": str(certified)}


@pytest.mark.parametrize("d, se, certified, expected", [
    (1.0, 0.2, True, "held"), (1.0, 0.2, False, "not certified"), (0.5, 0.2, True, "not held"),
    (-1.0, 0.1, True, "not held"), (0.6, 0.2, True, "not held")])   # exactly 3 s.e. is not beyond
def test_verdict_needs_three_standard_errors_and_certificates(d, se, certified, expected):
    assert verdict(d, se, certified) == expected


def test_a_row_difference_uses_the_combined_standard_error_and_both_certificates(tmp_path):
    c = compare_rows("s", "a beats b", "col", row(5.0, 0.3), row(4.0, 0.4), "amort_gap", paper=2.0)
    assert c["difference"] == pytest.approx(1.0) and c["sem"] == pytest.approx(0.5)
    assert c["verdict"] == "not held"                       # 1.0 < 3 x 0.5
    c = compare_rows("s", "a beats b", "col", row(9.0, 0.3), row(4.0, 0.4, False), "amort_gap")
    assert c["verdict"] == "not certified" and c["paper"] is None
    write_claims(tmp_path, [c])
    assert read_claims(tmp_path) == [c]
    assert markdown_rows([c])[0][4:] == ["–", "+5.00 ± 0.50", "no", "**not certified**", "–"]
    (tmp_path / "claims.json").write_text("{garbage")
    assert read_claims(tmp_path) == [] and math.isfinite(c["sem"])


def test_a_variant_without_a_standard_evaluation_keeps_no_stale_comparison(tmp_path):
    from exp52_testgap.compare import compare
    for name in ("claims.json", "table_vs_standard.md"):
        (tmp_path / name).write_text("from an earlier run")
    said = compare("large_encoder", [{"split": "train", "dataset": "mnist", "model": "ffg"}],
                   tmp_path / "variant_runs", tmp_path / "standard_runs", tmp_path)
    assert "no standard training-split evaluation" in said[0] and "make exp52" in said[0]
    assert not (tmp_path / "claims.json").exists()
    assert not (tmp_path / "table_vs_standard.md").exists()


@pytest.mark.parametrize("text, value", [("32e8771", "32e8771"), ("0e12345", "0e12345"),
                                         ("1234567", 1234567), ("-92.5", -92.5), ("1e-05", 1e-05),
                                         ("True", True), ("nan", "nan"), ("abc", "abc")])
def test_a_csv_cell_reads_back_as_what_was_written(text, value):
    from common.results.tables import _typed
    got = _typed(text)
    assert str(got) == text and (got == value or (text == "nan" and got != got))


def test_the_paired_standard_error_is_the_sample_sd_over_root_n():
    import torch
    from common.results.claims import mean_sem
    d = [1.0, 2.0, 3.0, 6.0]                     # mean 3, sample sd sqrt(14/3)
    assert mean_sem(d) == pytest.approx((3.0, math.sqrt(14 / 3) / 2))
    assert mean_sem(torch.tensor(d)) == pytest.approx(mean_sem(d))


def _evaluation(folder, columns: dict, summary: dict, n_points: int):
    import csv
    import json
    from common.inference.gaps import EvalConfig
    folder.mkdir(parents=True)
    with open(folder / "per_point.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["point", *columns])
        writer.writerows([i, *row] for i, row in enumerate(zip(*columns.values())))
    key = {**{k: getattr(EvalConfig(), k) for k in EvalConfig.__dataclass_fields__},
           "n_points": n_points}
    (folder / "summary.json").write_text(json.dumps({"key": key, "summary": summary}))


@pytest.mark.parametrize("ffg_fit_certified, expected", [(True, "held"),
                                                         (False, "not certified")])
def test_a_variant_is_paired_with_the_first_points_of_the_standard_evaluation(
        tmp_path, ffg_fit_certified, expected):
    """A variant on 3 points is paired with the standard's first 3 (the 4th is not used),
    and the no_annealing claim on L[q*_FFG] needs both rows' ffg fits certified."""
    from exp52_testgap.compare import compare
    std = {"approx_gap": [1.0, 1.0, 1.0, 50.0], "amort_gap": [2.0] * 4,
           "L_qstar": [-90.0, -91.0, -92.0, 0.0], "L_qstar_ffg": [-100.0, -102.0, -101.0, 0.0]}
    var = {"approx_gap": [1.0, 1.1, 0.9], "amort_gap": [2.0, 2.1, 1.9],      # gap: 10, 11, 9
           "L_qstar": [-90.0, -91.0, -92.0], "L_qstar_ffg": [-95.0, -96.1, -96.9]}  # -> 5, 5.1, 4.9
    _evaluation(tmp_path / "std" / "mnist_flow" / "eval_train", std,
                {"certified": True, "ffg_fit_certified": True}, 4)
    _evaluation(tmp_path / "var" / "mnist_flow" / "eval_train", var, {}, 3)
    row = {"split": "train", "dataset": "mnist", "model": "flow", "certified": "True",
           "ffg_fit_certified": str(ffg_fit_certified)}
    said = compare("no_annealing", [row], tmp_path / "var", tmp_path / "std", tmp_path)
    assert "wrote" in said[0], said
    table = (tmp_path / "table_vs_standard.md").read_text()
    assert "mnist flow (3)" in table and "10.00 -> 5.00" in table   # the 4th point is not used
    assert "1.00 -> 1.00" in table                                   # approx gap of 3 points
    assert table.splitlines()[-1].split("|")[-2].strip() == expected


def _seed_row(seed, d, se, certified=True):
    from common.results.claims import claim
    return {**claim("s", "c", "col", d, se, certified), "seed": seed}


def test_a_claim_is_judged_across_seeds():
    """Held in every seed: held across seeds; one seed flipped: the mean over 3 seeds falls within
    3 combined s.e.; one seed uncertified: not certified across seeds."""
    from common.reporting.seeds import across
    held = across([_seed_row(0, 1.0, 0.1), _seed_row(1, 1.1, 0.1), _seed_row(2, 0.9, 0.1)])
    assert held["seeds_held"] == 3 and held["across_seeds"] == "held"
    assert held["mean"] == pytest.approx(1.0) and held["between_seed_sem"] == pytest.approx(
        0.1 / 3 ** 0.5)
    assert held["combined_sem"] == pytest.approx((0.1 ** 2 / 3 + 0.1 ** 2) ** 0.5)
    # every seed on the same points: a spread across seeds far below each seed's per-point s.e.
    # does not make a claim that no seed holds (exp53's CFlow vs FFG at quick) held across seeds
    tight = across([_seed_row(0, 0.18, 0.32), _seed_row(1, 0.26, 0.33), _seed_row(2, 0.28, 0.31)])
    assert tight["between_seed_sem"] < 0.04 and tight["seeds_held"] == 0
    assert tight["across_seeds"] == "not held" and tight["combined_sem"] > 0.3
    flipped = across([_seed_row(0, 1.0, 0.1), _seed_row(1, 1.2, 0.1), _seed_row(2, -0.8, 0.1)])
    assert flipped["seeds_held"] == 2 and flipped["across_seeds"] == "not held"
    uncertified = across([_seed_row(0, 1.0, 0.1), _seed_row(1, 1.1, 0.1),
                          _seed_row(2, 0.9, 0.1, certified=False)])
    assert uncertified["seeds_held"] == 2 and uncertified["across_seeds"] == "not certified"
    two = across([_seed_row(0, 1.0, 0.1), _seed_row(1, 0.2, 0.1)])   # fewer than 3: every seed
    assert two["seeds_held"] == 1 and two["across_seeds"] == "not held"
    assert across([_seed_row(0, 1.0, 0.1), _seed_row(1, 0.9, 0.1)])["across_seeds"] == "held"
    assert across([_seed_row(0, 1.0, 0.1), _seed_row(1, 0.9, 0.1, certified=False)])[
        "across_seeds"] == "not certified"   # beyond 3 s.e. in both, a certificate missed


def test_a_claim_is_one_row_across_training_lengths(tmp_path):
    """common/reporting/ladder.py joins a claim's lengths by (study, text, column): exp55's
    claims.json of
    before 2026-12-03 named the last epoch in its text ("at the last epoch (30)"); read_claims
    drops it, so it joins the same claim judged at 100 epochs."""
    import json

    from common.reporting import ladder
    from common.results.claims import claim
    text = "the amortization gap is larger on validation than on training data (the encoder overfits)"
    for folder, epochs, said, d in (("exp55_dynamics", 30, "at the last epoch (30) ", 0.2),
                                    ("exp55_dynamics_long_e100", 100, "at the last epoch ", 1.5)):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "provenance.json").write_text(
            json.dumps({"preset": "quick", "config": {"epochs": epochs}}))
        write_claims(tmp_path / folder, [claim("exp55 §5.5", said + text, "ffg", d, 0.1, True)])
    rows = [r for r in ladder.collect(tmp_path) if r["results"] == "exp55_dynamics"]
    joined = ladder.by_claim(rows)
    assert list(joined) == [("exp55 §5.5", "at the last epoch " + text, "ffg")]
    at = joined[("exp55 §5.5", "at the last epoch " + text, "ffg")]
    assert sorted(at) == [30, 100] and ladder.trend(at, None).startswith("up (+1.30")


def test_a_claim_whose_runs_differ_in_a_detail_is_one_row_across_seeds(tmp_path):
    """exp66's overfitting claim differs between seeds in its best epoch: shown beside the
    column (detail), never part of the claim's identity; a claims.json written before that
    (column "ffg (best: epoch 97)") reads back the same way."""
    import json

    from common.reporting import seeds
    from common.results.claims import claim, markdown_rows
    text = "the test log p̂ falls late in training (overfitting): its best checkpoint above the last"
    old = claim("exp66 §6.6", text, "ffg (best: epoch 97)", 5.0, 1.0, True)
    new = claim("exp66 §6.6", text, "ffg", 7.0, 1.0, True, detail="best: epoch 181")
    for folder, c in (("exp66_small_data", old), ("exp66_small_data_seed1", new)):
        write_claims(tmp_path / folder, [c])
    (entry,) = [e for e in seeds.collect(tmp_path) if e["results"] == "exp66_small_data"]
    assert entry["column"] == "ffg" and entry["seeds"] == 2 and entry["seeds_held"] == 2
    assert "(held; best: epoch 97)" in seeds.markdown([entry])
    assert [r[3] for r in markdown_rows(read_claims(tmp_path / "exp66_small_data_seed1"))] == \
        ["ffg (best: epoch 181)"]
    bad = {**new, "detail": 3}
    (tmp_path / "exp66_small_data_seed1" / "claims.json").write_text(json.dumps([bad]))
    assert read_claims(tmp_path / "exp66_small_data_seed1") == []   # not of the schema


def test_a_trend_that_passes_the_papers_value_and_overshoots_it_is_away():
    """exp52's MNIST AF approximation-gap claim moved -0.03 -> +0.38 with the paper at -0.01:
    the right direction at first, but it ends farther from the paper, so "away"; a move that
    crosses the paper's value and ends nearer is "toward"; within 2 s.e. is "flat"."""
    from common.reporting import ladder
    at = lambda a, b: {30: {"difference": a, "sem": 0.05, "verdict": "not held"},  # noqa: E731
                       300: {"difference": b, "sem": 0.05, "verdict": "not held"}}
    assert ladder.trend(at(-0.03, 0.38), -0.01).startswith("away from the paper (+0.41")
    assert ladder.trend(at(-0.39, 0.74), 0.93).startswith("toward the paper (+1.13")
    assert ladder.trend(at(-1.0, 0.5), 0.0).startswith("toward the paper")
    assert ladder.trend(at(1.06, 0.43), -0.09).startswith("toward the paper")
    assert ladder.trend(at(2.26, 2.89), 1.16).startswith("away from the paper")
    assert ladder.trend(at(0.10, 0.15), 1.0).startswith("flat")
    assert "->" not in ladder.trend(at(2.26, 2.89), 1.16)   # no verdict changed: none named


def test_a_trend_names_where_the_verdict_changed_with_the_change_and_its_se():
    """exp55's "the encoder overfits": not held at 30 epochs, held at 100 and 300: the trend
    says at which length it changed, by how much the difference moved there and its s.e."""
    from common.reporting import ladder
    at = {30: {"difference": 0.10, "sem": 0.30, "verdict": "not held"},
          100: {"difference": 1.90, "sem": 0.40, "verdict": "held"},
          300: {"difference": 2.50, "sem": 0.40, "verdict": "held"}}
    text = ladder.trend(at, None)
    assert text.startswith("up (+2.40 ± 0.50)")
    assert text.endswith("; not held -> held at 100 epochs (+1.80 ± 0.50 from 30)")
    at[300]["verdict"] = "not certified"
    assert ladder.trend(at, None).endswith(
        "; not held -> held at 100 epochs (+1.80 ± 0.50 from 30)"
        "; held -> not certified at 300 epochs (+0.60 ± 0.57 from 100)")


def test_every_gap_table_shows_the_q_star_fallback_share(tmp_path):
    """The README's certificate table says every gap table reports q* fallback (the share of
    points whose fitted q* lost to another member of its family: AF's fits did on 4-8% of
    points); a summary written before the field existed shows n/a, not 0."""
    from common.results.tables import gap_table
    summary = {q: 1.0 for q in ("logpx", "L_qstar", "L_q", "approx_gap", "amort_gap",
                                "total_gap")}
    summary.update({f"{q}_sem": 0.1 for q in list(summary)})
    gap_table(tmp_path / "t", {"MNIST AF": {**summary, "qstar_fallback": 0.06},
                               "old": summary})
    row = next(line for line in (tmp_path / "t.md").read_text().splitlines()
               if line.startswith("| q* fallback (share)"))
    assert [c.strip() for c in row.strip("|").split("|")][1:] == ["6.0%", "n/a"]
    assert "q* fallback (share)" in (tmp_path / "t.tex").read_text()


def test_exp66s_overfitting_claim_needs_only_the_last_checkpoint_certified():
    """AIS is a stochastic lower bound of log p(x): an unconverged AIS at the best checkpoint
    only shrinks best - last, so "the best checkpoint above the last" is certified by the last
    checkpoint's BDMC alone; an uncertified last checkpoint leaves it not certified."""
    from exp66_small_data.config import PRESETS
    from exp66_small_data.evaluate import claims_of

    def row(epoch, split, logpx, certified, family="ffg"):
        return {"family": family, "split": split, "epoch": epoch, "logpx": logpx,
                "logpx_sem": 1.0, "logpx_paper": logpx, "logpx_paper_sem": 1.0, "gap": 5.0,
                "gap_sem": 1.0, "gap_paper": 5.0, "gap_paper_sem": 1.0, "logpx_rule": "ais",
                "certified": certified}
    from dataclasses import replace
    cfg = replace(PRESETS["smoke"], families=("ffg",))
    for last_certified in (True, False):
        rows = [row(1, "test", -150.0, False), row(97, "test", -118.0, False),
                row(3000, "test", -207.0, last_certified), row(3000, "train", -37.0, True)]
        (falls,) = [c for c in claims_of(rows, cfg, 3000) if "falls late" in c["claim"]]
        assert falls["difference"] == pytest.approx(89.0) and falls["detail"] == "best: epoch 97"
        assert falls["verdict"] == ("held" if last_certified else "not certified")


def test_a_folder_not_measured_at_the_long_length_names_its_command_and_cost(tmp_path):
    """CLAIMS.md's by-length table ends with the results folders judged at 30 epochs but not at
    the long preset's 300: the make command that measures each, and the cost model's hours
    from the make-bench file beside them (none without one); a folder measured at 300 is not
    listed, nor one never measured; exp_gradients trains nothing."""
    import json
    import shutil

    from common.reporting import ladder
    from common.results.claims import claim
    from common.runs.plan import CPU_UNITS
    for folder, epochs in (("exp52_testgap_large_encoder", 30), ("exp54_decoder_size", 30),
                           ("exp54_decoder_size_long", 300), ("exp_gradients", 30)):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "provenance.json").write_text(
            json.dumps({"preset": "long" if epochs == 300 else "quick",
                        "config": {"epochs": epochs}}))
        write_claims(tmp_path / folder, [claim("s", "t", "c", 1.0, 0.1, True)])
    rows = ladder.collect(tmp_path)
    missing = {m["folder"]: m for m in ladder.unmeasured(tmp_path, rows)}
    assert sorted(missing) == ["exp52_testgap_large_encoder", "exp_gradients"]
    m = missing["exp52_testgap_large_encoder"]
    assert m["command"] == "make exp52 PRESET=long VARIANT=large_encoder"
    assert m["hours"] is None and m["epochs"] == 300 and m["measured"] == [30]
    assert "no make-bench file here" in ladder.markdown(rows, list(missing.values()))
    (tmp_path / "bench").mkdir()
    shutil.copy(CPU_UNITS, tmp_path / "bench")          # the committed make-bench file
    missing = {m["folder"]: m for m in ladder.unmeasured(tmp_path, rows)}
    assert missing["exp52_testgap_large_encoder"]["hours"] > 0.1
    text = ladder.markdown(rows, list(missing.values()))
    assert "`make exp52 PRESET=long VARIANT=large_encoder`, about" in text
    assert "exp_gradients (measured at 30 epochs): `make exp_gradients PRESET=long`, nothing " \
           "trained" in text


def test_the_glance_counts_the_claims_the_snapshot_judges_across_seeds(tmp_path):
    """GLANCE.md (the README's verdicts at a glance) says, per results folder and length with
    several seeds in the snapshot itself (exp55 at 300 epochs: F_long, F_long_seed1, ...), how
    many claims hold across seeds and how many have seeds that disagree; one seed says
    nothing."""
    from common.reporting import seeds
    from common.reporting.report import seeds_glance
    from common.results.claims import claim
    text = "the encoder overfits"
    for folder, d in (("exp55_dynamics_long", 2.2), ("exp55_dynamics_long_seed1", 0.5),
                      ("exp55_dynamics_long_seed2", 2.1), ("exp55_dynamics", 0.1)):
        write_claims(tmp_path / folder, [claim("exp55 §5.5", text, "ffg", d, 0.5, True),
                                         claim("exp55 §5.5", text, "flow", 3.0, 0.2, True)])
    (line,) = seeds_glance(seeds.collect(tmp_path))
    assert line.startswith("Claims across seeds in exp55_dynamics_long (seeds 0, 1, 2): 1 of 2 "
                           "held across seeds (1 with verdicts that differ")


def test_make_ladder_climbs_every_study_that_has_a_long_preset_by_default():
    """The ladder climbed exp52 and exp55 only, so Table 3, exp53, exp54 and exp_refit were judged
    at 30 epochs alone; its default is every study with a long preset (exp52's variants too)."""
    import os
    import subprocess
    from common.studies import ROOT, studies
    env = {k: v for k, v in os.environ.items() if k != "LADDER_STUDIES"}   # the Makefile's default
    proc = subprocess.run(["make", "--no-print-directory", "help"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60, check=True)
    line = next(l for l in proc.stdout.splitlines() if l.strip().startswith("LADDER_STUDIES="))
    climbed = set(line.split("(default: ")[1].rstrip(")").split())
    long_studies = {name for name, s in studies().items() if "long" in s.presets}
    assert long_studies <= climbed, long_studies - climbed
    if any(v != "standard" for v in studies()["exp52"].variants):
        assert "exp52_variants" in climbed
