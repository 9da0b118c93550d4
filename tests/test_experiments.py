"""Every experiment end to end through the Makefile on the smoke preset, on synthetic data in
the real on-disk format (no network), then `make report`; and the refusal of bad variables."""
import json
import math
import os
import re
import subprocess
import sys

import pytest
import torch

from smoke_results import ROOT, make, rows


def test_exp52_smoke_outputs_and_caching(dirs, smoke):
    out = dirs[1] / "exp52_testgap"
    for name in ("gaps.csv", "table.tex", "table.md", "gaps.png", "gaps.pdf", "provenance.json"):
        assert (out / name).exists(), name
    table = rows(out / "gaps.csv")
    # datasets x (every family on test points + Table 3's families on training points)
    from common.studies import study
    c = study("exp52").presets["smoke"]
    assert len(table) == len(c.datasets) * (len(c.families) + len(c.train_split_families))
    assert {r["model"] for r in table if r["split"] == "train"} == set(c.train_split_families)
    assert {r["model"] for r in table if r["split"] == "test"} == set(c.families)
    for r in table:
        for col in ("logpx", "L_qstar", "L_q", "approx_gap", "amort_gap", "total_gap",
                    "approx_gap_sem", "amort_gap_sem", "bdmc_gap"):
            assert col in r and r[col] != "" and float(r[col]) == float(r[col]), col
        assert float(r["L_q"]) <= float(r["L_qstar"])
        assert float(r["L_qstar"]) <= float(r["logpx"])
        # certificates: measured, in range, and the verdict follows the targets
        for col in ("bdmc_gap", "ais_sets_logpx", "qstar_capped", "qstar_probe", "qstar_steps"):
            assert float(r[col]) == float(r[col]), col
        assert 0 <= float(r["ais_sets_logpx"]) <= 1 and 0 <= float(r["qstar_capped"]) <= 1
        assert r["bdmc_path"] == "qstar"
        assert (r["certified"] == "True") == (r["certificate_misses"] == "")
    # each model's decoder had its BDMC computed once, for both splits
    assert "BDMC cached" in smoke["exp52"]
    md = (out / "table.md").read_text()
    assert "BDMC gap" in md and "Certified" in md and "q* probe" in md
    assert r"\toprule" in (out / "table.tex").read_text()
    run = out / "runs" / "smoke-seed0" / "mnist_cflow"
    for name in ("config.json", "metrics.csv", "last.pt", "eval_test/per_point.csv"):
        assert (run / name).exists(), name
    assert json.loads((run / "config.json").read_text())["seed"] == 0
    # a second `make exp52` reuses checkpoints and evaluations: only the plot is redone
    again = make("exp52", dirs, "PRESET=smoke")
    assert "[train]" not in again.stdout and "[eval] cached" in again.stdout


def test_exp51_smoke_grid_posteriors(dirs, smoke):
    out = dirs[1] / "exp51_posteriors"
    points = rows(out / "points.csv")
    assert len(points) == 12 and sum(1 for r in points if r["chosen_as"]) == 4
    for r in points:  # every bound below the grid's log p(x) (up to grid error)
        assert float(r["L_q"]) <= float(r["L_qstar_ffg"]) + 0.05 <= float(r["logpx"]) + 0.1
    assert (out / "posteriors.png").exists() and "AIS - grid" in (out / "table.md").read_text()


def test_exp54_smoke_decoder_depths_with_paper_rows(dirs, smoke):
    out = dirs[1] / "exp54_decoder_size"
    table = rows(out / "gaps.csv")
    assert sorted(int(r["decoder_layers"]) for r in table) == [0, 2, 4]
    params = {int(r["decoder_layers"]): int(r["decoder_params"]) for r in table}
    assert params[0] < params[2] < params[4]
    md = (out / "table.md").read_text()
    assert "Approximation gap, paper" in md and "3.90" in md and "-100.52" in md
    # the 2-layer model is exp52's base ffg model, not trained twice
    assert not (out / "runs" / "smoke-seed0" / "mnist_ffg_dec2").exists()


def test_exp52_variant_writes_beside_the_standard_results(dirs, smoke):
    standard = (dirs[1] / "exp52_testgap" / "gaps.csv").read_bytes()
    make("exp52", dirs, "PRESET=smoke", "VARIANT=no_annealing")
    out = dirs[1] / "exp52_testgap_no_annealing"
    table = rows(out / "gaps.csv")
    assert {(r["model"], r["split"]) for r in table} == {("ffg", "train"), ("flow", "train")}
    md = (out / "table_train.md").read_text()
    assert "variant no_annealing" in md and "Amortization gap, paper" in md and "1.49" in md
    config = json.loads((out / "runs" / "smoke-seed0" / "mnist_ffg" / "config.json").read_text())
    assert config["train"]["warmup_epochs"] == 0
    assert (dirs[1] / "exp52_testgap" / "gaps.csv").read_bytes() == standard
    # Table 3: the variant against the standard models on the same training points, paired
    vs = (out / "table_vs_standard.md").read_text()
    assert "without annealing the posterior is more Gaussian" in vs and "paired" in vs
    lines = [line for line in vs.splitlines() if line.startswith("| mnist") or
             line.startswith("| fashion")]
    from common.results.claims import VERDICTS
    assert len(lines) == 4 and all(line.rstrip(" |").split("|")[-1].strip() in (*VERDICTS, "–")
                                   for line in lines)


def test_exp53_smoke_shares_log_px_across_encoders(dirs, smoke):
    out = dirs[1] / "exp53_frozen_decoder"
    table = rows(out / "gaps.csv")
    assert {r["model"] for r in table} == {"ffg", "flow", "cflow"}
    assert {r["encoder"] for r in table} == {"small_encoder", "linear_encoder"}
    assert "Amortization gap, paper" in (out / "table_linear.md").read_text()
    for split in ("test", "train"):
        logpx = {r["logpx"] for r in table if r["split"] == split}
        assert len(logpx) == 1  # one log p^ per decoder, reused by every encoder
    assert all(int(r["encoder_params"]) > 0 for r in table)
    assert (out / "gaps.png").exists() and (out / "table.md").exists()
    for split in ("test", "train"):   # one ffg q* for the decoder, shared by every encoder
        assert len({r["L_qstar_ffg"] for r in table if r["split"] == split
                    and r["model"] != "ffg"}) == 1


def test_exp55_and_gradients_smoke(dirs, smoke):
    out = dirs[1] / "exp55_dynamics"
    table = rows(out / "gaps_over_epochs.csv")
    models = {r["model"] for r in table}
    from exp55_dynamics.config import PRESETS
    assert models == set(PRESETS["smoke"].models)
    assert {r["split"] for r in table} == {"train", "valid"}
    assert len({r["epoch"] for r in table}) == 2
    assert (out / "dynamics.png").exists() and (out / "table.tex").exists()
    assert "[train]" not in smoke["exp_gradients"]  # reads the exp55 runs, retrains nothing
    summary = rows(dirs[1] / "exp_gradients" / "summary.csv")
    assert {r["model"] for r in summary} == models
    assert all(float(r["grad_ratio_normalised"]) > 0 for r in summary)
    assert (dirs[1] / "exp_gradients" / "gradients.png").exists()


def test_exp66_smoke_bounds_over_training_on_few_points(dirs, smoke):
    out = dirs[1] / "exp66_small_data"
    table = rows(out / "bounds.csv")
    from exp66_small_data.config import PRESETS
    c = PRESETS["smoke"]
    assert len(table) == len(c.families) * 2 * len(c.checkpoint_epochs())
    for r in table:   # L[q] <= IWAE <= the paper's log p^ (per point the max of AIS and IWAE)
        assert float(r["L_q"]) <= float(r["iwae"]) + 1e-4 <= float(r["logpx_paper"]) + 2e-4
        assert float(r["logpx_paper"]) >= max(float(r["ais"]), float(r["iwae"])) - 1e-4
        assert r["logpx"] == r["ais"] and r["logpx_rule"] == "ais"   # log p^ = AIS
    run = out / "runs" / "smoke-seed0" / "mnist_ffg"
    assert len(json.loads((run / "subset.json").read_text())) == c.n_small
    claims = json.loads((out / "claims.json").read_text())
    assert {c["study"] for c in claims} == {"exp66 §6.6"} and len(claims) == 5
    assert (out / "bounds.png").exists() and (out / "table.md").exists()


def test_ladder_judges_every_claim_at_each_length_from_its_own_runs(dirs, smoke):
    """make ladder PRESET=smoke: exp52 and exp55 at 2 epochs (the smoke runs) and at 4 (runs of
    their own), claims judged at both lengths, a figure per study."""
    make("ladder", dirs, "PRESET=smoke", "JOBS=2",   # both studies at once, a thread each
         "LADDER_STUDIES=exp52 exp55")                # (the default climbs every long study)
    root = dirs[1]
    by_length = json.loads((root / "claims_by_length.json").read_text())
    lengths = {(r["results"], r["epochs"]) for r in by_length}
    assert {("exp52_testgap", 2), ("exp52_testgap", 4), ("exp55_dynamics", 2),
            ("exp55_dynamics", 4)} <= lengths
    # one claim is one row across lengths: every claim and column is judged at both
    at = {}
    for r in by_length:
        at.setdefault((r["results"], r["claim"], r["column"]), set()).add(r["epochs"])
    assert at and all(e == {2, 4} for (results, *_), e in at.items()
                      if results in ("exp52_testgap", "exp55_dynamics")), at
    md = (root / "CLAIMS_BY_LENGTH.md").read_text()
    assert "2 epochs" in md and "4 epochs" in md and "trend" in md
    assert (root / "ladder" / "exp52_5_2.png").exists() and (root / "ladder" / "exp55_5_5.png").exists()
    # a length never reuses another length's runs or evaluation: other weights, other caches
    short = root / "exp52_testgap" / "runs" / "smoke-seed0" / "mnist_ffg"
    longer = root / "exp52_testgap" / "runs" / "smoke-e4-seed0" / "mnist_ffg"
    keys = [json.loads((d / "eval_test" / "summary.json").read_text())["key"] for d in (short, longer)]
    assert keys[0]["model_hashes"] != keys[1]["model_hashes"]
    assert (root / "exp52_testgap_e4" / "claims.json").exists()
    assert json.loads((root / "exp52_testgap_e4" / "provenance.json").read_text())["config"]["epochs"] == 4


def test_exp_refit_smoke_one_noise_level(dirs, smoke):
    out = dirs[1] / "exp_refit"
    curves = rows(out / "curves.csv")
    assert {r["noise"] for r in curves} == {"50"} and {r["set"] for r in curves} == {"A", "B"}
    assert {r["epoch"] for r in curves} == {"0", "1", "2"}
    assert all(float(r["iwae"]) >= float(r["elbo"]) for r in curves)
    assert (out / "refit.png").exists() and (out / "table.md").exists()
    for r in rows(out / "amortization.csv"):   # L[q*] with its certificate
        assert 0 <= float(r["qstar_capped"]) <= 1 and math.isfinite(float(r["qstar_probe"])) \
            and r["certified"] in ("True", "False")
    assert "q* capped / probe (certified)" in (out / "table.md").read_text()
    assert (out / "runs" / "smoke-seed0" / "noise_50" / "config.json").exists()


def test_report_builds_from_smoke_results(dirs, smoke):
    make("report", dirs)
    report = (dirs[1] / "REPORT.md").read_text()
    for title in ("§5.1", "§5.2", "§5.3", "§5.4", "§5.5", "gradient", "refitting"):
        assert title in report
    missing = "".join(line for line in report.splitlines() if line.startswith("**Missing"))
    for folder in ("exp51_posteriors", "exp52_testgap,", "exp53", "exp54", "exp55", "exp_gradients",
                   "exp_refit"):   # the smoke fixture runs all but the Table-3 variants
        assert folder not in missing, missing
    html = (dirs[1] / "report.html").read_text()
    assert html.count("data:image/png;base64,") >= 5 and "<table>" in html
    # the first screen: every claim judged by exp52, exp53 and exp54, before the details
    first = report.split("\n## ")[1]
    assert first.startswith("Did the paper's claims hold?")
    from common.studies import study as study_of
    flows = len(study_of("exp52").presets["smoke"].families) - 1     # each non-Gaussian family
    models = len(study_of("exp55").presets["smoke"].models)
    for study, n in (("exp51 §5.1", 2), ("exp52 §5.2", 2 * (1 + 3 * flows)), ("exp53 Table 4", 2),
                     ("exp53 §5.3", 2), ("exp54 Table 5", 2), ("exp55 §5.5", models)):
        assert first.count(f"| paper | {study} |") == n, study
    # ... and the brief's own findings (common/results/brief.py) beside them
    for study in ("exp52 §5.2", "exp53 §5.3", "exp55 §5.5", "exp_gradients", "exp_refit"):
        assert first.count(f"| brief | {study} |") >= 1, study
    judged = [line.split(" | ") for line in first.splitlines()
              if line.startswith(("| paper |", "| brief |"))]
    from common.results.claims import VERDICTS
    assert judged and all(cells[7] in {f"**{v}**" for v in VERDICTS}
                          for cells in judged)     # (the verdict column of MARKDOWN_HEADER)
    # a snapshot of two folders carries their claims, and CLAIMS.md judges only what it holds
    dest = dirs[1] / "snapshot_test"
    proc = subprocess.run([sys.executable, "-m", "common.reporting.report", "--snapshot", str(dest),
                           "--folders", "exp53_frozen_decoder,exp54_decoder_size"], cwd=ROOT,
                          env=dict(os.environ, RESULTS_DIR=str(dirs[1])), capture_output=True,
                          text=True)
    assert proc.returncode == 0, proc.stderr
    claims = (dest / "CLAIMS.md").read_text()
    assert claims.count("| paper | exp53") == 4 and claims.count("| brief | exp53") == 4
    assert claims.count("| exp54") == 2 and "| exp52" not in claims
    # the whole snapshot: report (md + html), tables (md + tex), figures (png + pdf), CSVs,
    # provenance, step times and TIMES.md; never a checkpoint or a per-point file
    full = dirs[1] / "snapshot_full"
    proc = subprocess.run([sys.executable, "-m", "common.reporting.report", "--snapshot",
                           str(full)], cwd=ROOT, env=dict(os.environ, RESULTS_DIR=str(dirs[1])),
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    for name in ("REPORT.md", "report.html", "step_times.json", "TIMES.md", "CLAIMS.md",
                 "exp52_testgap/table.tex", "exp52_testgap/gaps.pdf", "exp52_testgap/gaps.png",
                 "exp52_testgap/gaps.csv", "exp52_testgap/provenance.json",
                 "exp52_testgap/train_provenance.json"):
        assert (full / name).exists(), name
    # every figure the snapshot's REPORT.md shows is in the snapshot (the claims figure too)
    shown = re.findall(r"!\[[^]]*\]\(([^)]+)\)", (full / "REPORT.md").read_text())
    assert "claims_forest.png" in shown
    assert not [f for f in shown if not (full / f).exists()]
    # each study's own make steps beside its tables (the experiment READMEs link them)
    own = json.loads((full / "exp52_testgap" / "step_times.json").read_text())
    assert "exp52_evaluate" in own and not any(k.startswith("exp53") for k in own)
    assert not any("--epochs 4" in r["command"] for runs in own.values() for r in runs)
    if (full / "exp52_testgap_e4").exists():   # the ladder's test ran first on these results:
        e4 = json.loads((full / "exp52_testgap_e4" / "step_times.json").read_text())  # its own
        assert e4 and all("--epochs 4" in r["command"] for runs in e4.values() for r in runs)
    refit = json.loads((full / "exp_refit" / "step_times.json").read_text())
    assert sorted(refit) == ["exp_refit_evaluate", "exp_refit_plot", "exp_refit_train"]
    assert not list(full.rglob("*.pt")) and not list(full.rglob("per_point.csv"))
    times = (full / "TIMES.md").read_text()   # the smoke studies ran step by step, no make all:
    assert "| step (most time first) | wall time, all runs | runs |" in times   # summed
    assert "| exp52_evaluate |" in times
    # no absolute path of the machine that made it: not the checkout's, not RESULTS_DIR's, not
    # the temporary folder's (issue 28)
    import tempfile
    machine = {str(ROOT), str(dirs[1]), str(dirs[0]), tempfile.gettempdir()}
    for f in full.rglob("*"):
        if f.is_file() and f.suffix in (".md", ".tex", ".csv", ".json", ".html"):
            text = f.read_text()
            assert not [m for m in machine if m in text], f


@pytest.mark.parametrize("variables, message", [
    (["NOISE=abc"], "NOISE=abc is not allowed"),
    (["NOISE=-5"], "NOISE=-5 is not allowed"),
    (["NOISE=785"], "NOISE=785 is not allowed"),
    (["PRESET=fast"], "PRESET=fast is not allowed"),
    (["DEVICE=gpu"], "DEVICE=gpu is not allowed"),
    (["DATASET=cifar"], "DATASET=cifar is not allowed"),
    (["VARIANT=wide"], "VARIANT=wide is not allowed"),
    (["SEED=x"], "SEED=x is not allowed"),
    (["SEED=200000000000000"], "SEED=200000000000000 is not allowed"),
    (["NOISE=10 50"], "NOISE=10 50 is not allowed"),
    (["NOISE=10,,50"], "NOISE=10,,50 is not allowed"),
    (["JOBS=0"], "JOBS=0 is not allowed"),
    (["EPOCHS=abc"], "EPOCHS=abc is not allowed"),
    (["SEEDS=0,0"], "SEEDS=0,0 is not allowed"),
    (["SEEDS=-1"], "SEEDS=-1 is not allowed"),
    (["SEEDS=a,b"], "SEEDS=a,b is not allowed"),
    (["SEEDS="], "SEEDS= is not allowed"),
    (["EPOCHS=0"], "EPOCHS=0 is not allowed"),
    (["JOBS=two"], "JOBS=two is not allowed"),
    (["STUDIES=exp52 exp99"], "names exp99, not a study of make all"),
    (["STUDIES= "], "STUDIES is empty"),
    (["STACK=yes"], "STACK=yes is not allowed"),
])
def test_bad_variables_are_refused_with_exit_2(tmp_path, variables, message):
    proc = make("exp_refit", (tmp_path / "d", tmp_path / "r"), *variables, check=False)
    assert proc.returncode == 2
    assert message in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("target", ["exp55_runs", "base"])
def test_the_long_preset_trains_a_long_study_s_models_alone(tmp_path, target):
    """exp55_runs (exp55's models) and base (exp52's ffg, the decoder of exp53, exp54 and
    exp_refit) are the training steps of long studies: PRESET=long runs them (dry run here)."""
    proc = make(target, (tmp_path / "d", tmp_path / "r"), "PRESET=long", "EPOCHS=100", "-n")
    assert "--preset long" in proc.stdout and "--epochs 100" in proc.stdout


def test_the_long_preset_is_refused_for_a_study_without_one(tmp_path):
    """exp66 runs the paper's full length at every preset: PRESET=long is not one of its."""
    proc = make("exp66", (tmp_path / "d", tmp_path / "r"), "PRESET=long", check=False)
    assert proc.returncode == 2 and "PRESET=long is not defined for exp66" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and not (tmp_path / "r").exists()


def test_a_length_whose_runs_are_missing_names_the_command_that_trains_it(dirs, smoke, tmp_path):
    env = dict(os.environ, RESULTS_DIR=str(dirs[1]), DATA_DIR=str(dirs[0]))
    before = sorted(p.name for p in dirs[1].iterdir())
    proc = subprocess.run([sys.executable, "-m", "exp52_testgap.evaluate", "--preset", "smoke",
                           "--epochs", "7"], cwd=ROOT, env=env, capture_output=True, text=True)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "make exp52 PRESET=smoke EPOCHS=7" in proc.stderr
    proc = subprocess.run([sys.executable, "-m", "exp66_small_data.train", "--preset", "long"],
                          cwd=ROOT, env=env, capture_output=True, text=True)
    assert proc.returncode == 2 and "exp66 has no long preset" in proc.stderr, proc.stderr
    assert sorted(p.name for p in dirs[1].iterdir()) == before     # nothing written


def test_make_all_over_two_seeds_judges_every_claim_across_them(dirs, smoke, tmp_path):
    """make all SEEDS=0,1 PRESET=smoke: each seed's runs and results apart (seed 1 in
    <folder>_seed1/, runs/smoke-seed1/), exp52's seeds trained by one train step, the claims
    judged across seeds in the report's first screen and CLAIMS_ACROSS_SEEDS.md. Two studies
    (STUDIES=): every study's seed flows through the same RUN_ARGS, and all nine at two seeds
    took 280 s of the suite's 16 min, three 130 s of 14 (the smoke fixture covers each study
    at seed 0)."""
    import shutil
    results = tmp_path / "results"
    shutil.copytree(dirs[1], results)        # seed 0 is the smoke fixture's (read back)
    proc = make("all", (dirs[0], results), "PRESET=smoke", "SEEDS=0,1", "JOBS=2",
                "STUDIES=exp52 exp55")
    assert "exp53_train" not in proc.stdout and "exp52_compare" not in proc.stdout
    assert not (results / "exp53_frozen_decoder_seed1").exists()
    assert (results / "exp52_testgap" / "runs" / "smoke-seed1" / "mnist_ffg" / "last.pt").exists()
    assert not (results / "exp66_small_data_seed1").exists()
    for folder in ("exp52_testgap_seed1", "exp55_dynamics_seed1"):
        assert (results / folder / "claims.json").exists(), folder
    across = json.loads((results / "claims_across_seeds.json").read_text())
    quick = [e for e in across if not e["length"]]
    assert quick and all(e["seeds"] == 2 for e in quick if e["results"] == "exp52_testgap")
    report = (results / "REPORT.md").read_text().split("\n## ")[1]
    assert "seeds held" in report and "across seeds" in report and "claims_forest" in report
    assert (results / "claims_forest.png").exists()
    # a seed's weights are its own
    a, b = (torch.load(results / "exp52_testgap" / "runs" / f"smoke-seed{k}" / "mnist_ffg" /
                       "last.pt", weights_only=False)["model"] for k in (0, 1))
    assert not torch.equal(a["decoder.net.0.weight"], b["decoder.net.0.weight"])


def test_make_all_builds_the_shared_unit_first_then_the_studies_longest_first(tmp_path):
    """Issue 24: no study waits on a prerequisite another job runs (it would lose its turn and
    leave a core idle): base alone first, then the studies in the Makefile's longest-first
    order without shared prerequisites, then what reads their results."""
    proc = make("all", (tmp_path / "d", tmp_path / "r"), "PRESET=smoke", "JOBS=2", "-n")
    lines = proc.stdout.splitlines()
    base = next(i for i, l in enumerate(lines) if "exp52_train_base" in l)
    studies = next(i for i, l in enumerate(lines) if "-j 2 SHARED_BUILT=1 exp52 exp55" in l)
    last = next(i for i, l in enumerate(lines) if "SHARED_BUILT=1 exp_gradients exp52_compare" in l)
    assert base < studies < last
    assert not any("exp52_train_base" in l for l in lines[studies:last])   # built once
    assert [l for l in lines[studies:last] if "exp55_train" in l]      # exp55 trains in its recipe


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is present here")
def test_cuda_requested_without_cuda_is_refused(tmp_path):
    proc = make("exp53", (tmp_path / "d", tmp_path / "r"), "DEVICE=cuda", check=False)
    assert proc.returncode == 2
    assert "DEVICE=cuda but CUDA is not available" in proc.stderr
    assert not (tmp_path / "r").exists() and not (tmp_path / "d").exists()


BAD_FLAGS = [
    ("exp52_testgap.train", ["--n-train", "-5"], "--n-train=-5 is not allowed"),
    ("exp52_testgap.train", ["--warmup-epochs", "-1"], "--warmup-epochs=-1 is not allowed"),
    ("exp52_testgap.evaluate", ["--qstar-lr", "nan"], "--qstar-lr=nan is not allowed"),
    ("exp52_testgap.evaluate", ["--qstar-lr", "-1"], "--qstar-lr=-1.0 is not allowed"),
    ("exp52_testgap.evaluate", ["--ais-init-step", "nan"], "--ais-init-step=nan is not allowed"),
    ("exp52_testgap.evaluate", ["--point-chunk", "0"], "--point-chunk=0 is not allowed"),
    ("exp52_testgap.evaluate", ["--families", "ffg,ffg"], "--families=ffg,ffg lists a value twice"),
    ("exp52_testgap.evaluate", ["--ais-proposal", "uniform"], "--ais-proposal=uniform is not allowed"),
    ("exp52_testgap.evaluate", ["--train-split-families", "ffg,iaf"], "family 'iaf' is not allowed"),
    ("exp52_testgap.train", ["--seed", "200000000000000"], "SEED=200000000000000 is not allowed"),
    ("exp_refit.train", ["--noise", "10,,50"], "--noise='10,,50' is not a valid tuple"),
]

# Each case as `python -m module --preset smoke FLAGS` runs it (runpy, __main__, sys.argv),
# all in one process: eleven interpreter starts with torch cost 19 s of the unit tests.
BAD_FLAGS_DRIVER = """
import contextlib, io, json, runpy, sys
out = []
for module, flags in json.loads(sys.argv[1]):
    sys.argv = [module, "--preset", "smoke", *flags]
    sys.modules.pop(module, None)   # run fresh, as `python -m` does (an earlier case imported it)
    err, code = io.StringIO(), 0
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            runpy.run_module(module, run_name="__main__", alter_sys=True)
        except SystemExit as stop:
            code = stop.code if isinstance(stop.code, int) else 1
    out.append([code, err.getvalue()])
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def bad_flag_runs(tmp_path_factory):
    """{(module, flags): (exit code, stderr)} of every BAD_FLAGS case, and the results and data
    dirs they were given (none may be created)."""
    tmp = tmp_path_factory.mktemp("bad_flags")
    env = dict(os.environ, RESULTS_DIR=str(tmp / "r"), DATA_DIR=str(tmp / "d"))
    cases = [[module, flags] for module, flags, _ in BAD_FLAGS]
    proc = subprocess.run([str(ROOT / ".venv" / "bin" / "python"), "-c", BAD_FLAGS_DRIVER,
                           json.dumps(cases)], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = json.loads(proc.stdout.strip().splitlines()[-1])
    return {(m, tuple(f)): tuple(r) for (m, f), r in zip(cases, runs)}, tmp


@pytest.mark.parametrize("module, flags, message", BAD_FLAGS)
def test_bad_flags_are_one_line_errors_with_exit_2_and_nothing_written(bad_flag_runs, module,
                                                                        flags, message):
    runs, tmp = bad_flag_runs
    code, stderr = runs[(module, tuple(flags))]
    assert code == 2, stderr
    assert message in stderr and len(stderr.strip().splitlines()) == 1, stderr
    assert not (tmp / "r").exists() and not (tmp / "d").exists()


def test_times_table_gives_make_all_then_the_slowest_steps_with_their_share():
    from common.reporting.report import times_table
    run = lambda s, t: {"wall_s": s, "finished": t, "command": "cmd"}  # noqa: E731
    t = {k: f"2026-12-03 {h}" for k, h in (("t0", "09:30:00"), ("t1", "10:01:00"),
                                            ("t2", "11:00:00"), ("t3", "12:00:00"),
                                            ("t4", "13:00:00"))}
    lines = times_table({"b": [run(60.0, t["t1"])], "make_all": [run(7200.0, t["t3"])],
                         # a's last run inside make all counts; one before make all began and
                         # one after it (a later `make ladder` in the same folder) do not
                         "a": [run(20.0, t["t0"]), run(5000.0, t["t1"]), run(3600.0, t["t2"]),
                               run(9000.0, t["t4"])], "c": [run(30.0, t["t4"])]})
    assert "**2.00 h**" in lines[0] and t["t3"] in lines[0]
    rows = [line for line in lines if line.startswith(("| a", "| b", "| c"))]
    assert rows == [f"| a | 60.0 min | 50% | {t['t2']} |", f"| b | 60 s | 1% | {t['t1']} |"]


def test_times_without_make_all_sum_each_step_over_its_runs():
    """Seeds or lengths run step by step (no make all): a step's last run may be a cached re-run
    of seconds, so the table gives each step's total over its runs and their count."""
    from common.reporting.report import times_table
    run = lambda s, t: {"wall_s": s, "finished": f"2026-12-03 {t}", "command": "cmd"}  # noqa: E731
    lines = times_table({"exp52_evaluate": [run(600.0, "10:00:00"), run(900.0, "11:00:00"),
                                            run(4.0, "12:00:00")],
                         "exp52_train": [run(2000.0, "09:00:00")]})
    assert lines[0].startswith("No `make all` made these results")
    rows = [line for line in lines if line.startswith("| exp52")]
    assert rows == ["| exp52_train | 33.3 min | 1 | 2026-12-03 09:00:00 |",
                    "| exp52_evaluate | 25.1 min | 3 | 2026-12-03 12:00:00 |"]


def test_a_length_or_seed_of_a_folder_keeps_the_step_times_of_its_own_runs():
    """A results folder's step_times.json in a snapshot: only the runs made for its preset,
    seed and length (make ladder and SEEDS= add runs of the same steps to one results folder)."""
    from common.studies import steps_of
    cmd = "python -m exp55_dynamics.evaluate --preset {} --device auto --seed {}{}"
    runs = [{"wall_s": 1.0, "finished": "f", "command": cmd.format("quick", 0, "")},
            {"wall_s": 2.0, "finished": "f", "command": cmd.format("long", 0, " --epochs 100")},
            {"wall_s": 3.0, "finished": "f", "command": cmd.format("quick", 1, "")},
            {"wall_s": 4.0, "finished": "f", "command": cmd.format("long", 0, "")}]
    steps = {"exp55_evaluate": runs, "exp52_evaluate": runs[:1]}
    prov = lambda preset, seed, epochs: {"preset": preset, "seed": seed,  # noqa: E731
                                         "config": {"epochs": epochs}}
    of = lambda p: [r["wall_s"] for r in steps_of("exp55_dynamics", steps, p)["exp55_evaluate"]]  # noqa: E731
    assert of(prov("quick", 0, 30)) == [1.0] and of(prov("long", 0, 100)) == [2.0]
    assert of(prov("quick", 1, 30)) == [3.0] and of(prov("long", 0, 300)) == [4.0]
    assert steps_of("exp55_dynamics", steps, prov("paper", 0, 3280)) == {}
    assert steps_of("exp55_dynamics", steps, {"preset": "quick", "config": [30]}) == {}
    assert [r["wall_s"] for r in steps_of("exp55_dynamics", steps)["exp55_evaluate"]] == [1, 2, 3, 4]


def test_make_all_names_its_machine_and_how_fast_it_trains(tmp_path):
    """A make all time depends on the machine (session machines differed 2.4x at training):
    common.speed.machine writes machine.json with the training step's time, TIMES.md quotes it."""
    from common.reporting.report import times_table
    env = dict(os.environ, RESULTS_DIR=str(tmp_path / "r"))
    proc = subprocess.run([sys.executable, "-m", "common.speed.machine"], cwd=ROOT, env=env,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    machine = json.loads((tmp_path / "r" / "machine.json").read_text())
    cores = machine["cores"]
    assert machine["ffg_step_ms_1_thread"] > 0 and machine[f"ffg_step_ms_{cores}_threads"] > 0
    run = {"wall_s": 60.0, "finished": "t", "command": "cmd"}
    lines = times_table({"make_all": [run]}, machine=machine)
    assert lines[2].startswith("Machine: ") and f"{machine['ffg_step_ms_1_thread']:.2f} ms" in \
        lines[2] and "[machine]" in proc.stdout
    assert not any(x.startswith("Machine") for x in times_table({"make_all": [run]}))
    bad = subprocess.run([sys.executable, "-m", "common.speed.machine", "--fast"], cwd=ROOT,
                         env=env, capture_output=True, text=True)
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("makeflags, dry", [("n", True), ("n -j2 --jobserver-auth=3,4", True),
                                            ("ks", False), ("-j2 --jobserver-auth=3,4", False),
                                            ("", False), (" --no-print-directory", False)])
def test_a_dry_run_records_no_step_time(makeflags, dry):
    from common.speed.steptime import dry_run
    assert dry_run(makeflags) is dry


def test_refit_certifies_the_fit_that_sets_each_points_L_qstar():
    import torch
    from exp_refit.evaluate import qstar_certificate
    fit = lambda elbo, capped, probe: {"L_qstar": torch.tensor(elbo),  # noqa: E731
                                       "qstar_capped": torch.tensor(capped),
                                       "qstar_probe": torch.full((len(elbo),), probe)}
    # the base encoder's fit capped everywhere but beaten on 3 of 4 points by the refit one's
    before = fit([-100.0, -90.0, -100.0, -100.0], [1.0, 1.0, 1.0, 1.0], 0.9)
    after = fit([-95.0, -95.0, -95.0, -95.0], [0.0, 0.0, 0.0, 0.0], 0.02)
    cert = qstar_certificate(before, after)
    assert cert["qstar_capped"] == 0.25 and cert["qstar_probe"] == pytest.approx(0.02)
    assert not cert["certified"]                     # 25% of L[q*] from capped fits
    before["L_qstar"][1] = -100.0                    # now the refit fit sets every point
    cert = qstar_certificate(before, after)
    assert cert["qstar_capped"] == 0.0 and cert["certified"]
    for b in (before, after):                         # a fallback of the winning fit counts
        b["qstar_fallback"], b["qstar_tie"] = torch.zeros(4), torch.zeros(4)
    after["qstar_fallback"][2] = 1.0
    cert = qstar_certificate(before, after)
    assert cert["qstar_fallback"] == 0.25 and cert["qstar_tie"] == 0.0 and not cert["certified"]
