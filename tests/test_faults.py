"""A run is what its config says (issue 14): stale results are never reused, every damaged file
ends in one line naming it (or in a recompute that says why), and kill windows lose nothing.

Each test works on a private copy of the smoke results of tests/test_experiments.py."""
import csv
import json
import os
import shutil
import subprocess

import pytest

from smoke_results import ROOT, make, rows

PY = str(ROOT / ".venv" / "bin" / "python")
RUN = "runs/smoke-seed0"


@pytest.fixture
def results(dirs, smoke, tmp_path):
    """(data dir, a private copy of the smoke results)."""
    copy = tmp_path / "results"
    shutil.copytree(dirs[1], copy)
    return dirs[0], copy


def script(module, res, *flags, timeout=300):
    data, out = res
    env = dict(os.environ, DATA_DIR=str(data), RESULTS_DIR=str(out))
    return subprocess.run([PY, "-m", module, "--preset", "smoke", *flags], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


def one_line_error(proc, *words):
    assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-2000:]
    err = proc.stderr.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error:"), err
    for w in words:
        assert w in err, err
    return err


def snapshot(folder):
    return {p: p.read_bytes() for p in folder.rglob("*") if p.is_file() and p.name != ".lock"}


def test_a_changed_model_config_never_returns_a_cached_model_or_evaluation(results):
    out = results[1] / "exp52_testgap"
    before = snapshot(out)
    one_line_error(script("exp52_testgap.evaluate", results, "--z-dim", "10"),
                   "model.z_dim=50", "not 10")
    one_line_error(script("exp52_testgap.train", results, "--z-dim", "10"), "model.z_dim")
    one_line_error(script("exp52_testgap.train", results, "--n-train", "500"), "n_train")
    assert snapshot(out) == before  # nothing written by any refusal
    # another length is another run (a rung of the ladder): its own run folder, the others kept
    proc = script("exp52_testgap.train", results, "--epochs", "3", "--families", "ffg",
                  "--datasets", "mnist")
    assert proc.returncode == 0, proc.stderr
    assert (out / "runs" / "smoke-e3-seed0" / "mnist_ffg" / "last.pt").exists()
    assert {p: b for p, b in snapshot(out).items() if "smoke-e3-seed0" not in str(p)} == before
    assert (results[1] / "exp52_testgap_e3" / "train_provenance.json").exists()


def test_print_config_shows_the_resolved_config_and_overrides_and_writes_nothing(results):
    proc = script("exp52_testgap.evaluate", results, "--qstar-lr", "0.02", "--print-config")
    assert proc.returncode == 0, proc.stderr
    shown = json.loads(proc.stdout)
    assert shown["overrides"] == {"qstar_lr": 0.02} and shown["config"]["qstar_lr"] == 0.02
    assert shown["config"]["epochs"] == 2 and shown["preset"] == "smoke"
    # a train script offers only the flags it uses
    proc = script("exp52_testgap.train", results, "--qstar-lr", "0.02")
    assert proc.returncode == 2 and "unrecognized arguments: --qstar-lr" in proc.stderr


def test_a_subset_evaluation_merges_into_gaps_csv_and_garbage_caches_are_recomputed(results):
    out = results[1] / "exp52_testgap"
    old = {(r["dataset"], r["model"], r["split"]): r for r in rows(out / "gaps.csv")}
    ffg = out / RUN / "mnist_ffg" / "eval_test"
    (ffg / "summary.json").write_text("{not json")
    (out / RUN / "mnist_flow" / "eval_test" / "per_point.csv").write_text("garbage\n1,2,3\n")
    proc = script("exp52_testgap.evaluate", results, "--datasets", "mnist",
                  "--families", "ffg", "--eval-splits", "test")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "recomputing: cache" in proc.stdout and str(ffg / "summary.json") in proc.stdout
    new = {(r["dataset"], r["model"], r["split"]): r for r in rows(out / "gaps.csv")}
    assert set(new) == set(old)  # the other 9 rows are kept, not overwritten by the subset
    assert new[("mnist", "ffg", "test")]["computed_time"] >= old[("mnist", "ffg", "test")]["computed_time"]
    kept = new[("fashion", "flow", "train")]
    assert kept["computed_commit"] and kept == old[("fashion", "flow", "train")]
    assert json.loads((ffg / "summary.json").read_text())["summary"]["computed_commit"]


def test_a_truncated_checkpoint_is_one_line_naming_it(results):
    last = results[1] / "exp52_testgap" / RUN / "mnist_ffg" / "last.pt"
    last.write_bytes(last.read_bytes()[:1000])
    one_line_error(script("exp52_testgap.evaluate", results), str(last), "truncated", "delete")
    one_line_error(script("exp52_testgap.train", results), str(last), "truncated")


def test_a_damaged_metrics_csv_is_refused_then_rebuilt_from_the_checkpoint(results):
    run = results[1] / "exp55_dynamics" / RUN / "fashion_ffg"
    good = (run / "metrics.csv").read_text()
    lines = good.splitlines()
    (run / "metrics.csv").write_text("\n".join(lines[:-1]) + "\n" + lines[-1][:20] + "\n")
    one_line_error(script("exp_gradients.evaluate", results), str(run / "metrics.csv"),
                   "make exp_gradients")
    (run / "metrics.csv").write_text("\n".join(lines[:-1]) + "\n")  # a kill before the last row
    one_line_error(script("exp_gradients.plot", results), "not epochs 1..2")
    proc = script("exp_gradients.train", results)  # finds the runs done, restores metrics.csv
    assert proc.returncode == 0 and "[train]" not in proc.stdout, proc.stderr[-2000:]
    assert [r["epoch"] for r in csv.DictReader(open(run / "metrics.csv"))] == ["1", "2"]
    assert script("exp_gradients.evaluate", results).returncode == 0


def test_refit_curves_with_a_hole_are_refused_and_a_killed_point_is_remeasured(results):
    out = results[1] / "exp_refit"
    curve = out / RUN / "noise_50" / "curves.csv"
    table = rows(curve)
    fields = list(table[0])

    def write(kept):
        with open(curve, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=fields)
            w.writeheader()
            w.writerows(kept)
    write([r for r in table if not (r["epoch"] == "1" and r["set"] == "B")])
    one_line_error(script("exp_refit.evaluate", results, "--noise", "50"), "incomplete")
    # a kill after the epoch-2 checkpoint, before its curve point was written
    write([r for r in table if r["epoch"] != "2"])
    proc = script("exp_refit.train", results, "--noise", "50")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "missing curve point of epoch 2" in proc.stdout
    again = rows(curve)
    assert sorted((r["epoch"], r["set"]) for r in again) == sorted((r["epoch"], r["set"]) for r in table)
    # the remeasured point equals the one first measured (same model, same evaluation draws),
    # to float32 rounding: the BLAS may sum in another order from one process to the next
    # (seen: 2.9e-4 nats at -465, 6e-7 relative, one run in three); other draws would move it
    # by about 1e-2
    by = lambda t: {(r["epoch"], r["set"]): float(r["iwae"]) for r in t}  # noqa: E731
    assert by(again) == pytest.approx(by(table), rel=1e-5, abs=1e-9)


def test_informative_files_never_block_a_target(results):
    res = results[1]
    (res / "step_times.json").write_text("[[[")
    (res / "exp52_testgap" / "provenance.json").write_text("\x00\x01garbage")
    data, out = results
    env = dict(os.environ, DATA_DIR=str(data), RESULTS_DIR=str(out))
    proc = subprocess.run([PY, "-m", "common.steptime", "probe", "true"], cwd=ROOT, env=env,
                          capture_output=True, text=True)
    assert proc.returncode == 0 and "step_times.json is unreadable" in proc.stderr
    assert list(json.loads((res / "step_times.json").read_text())) == ["probe"]
    assert (res / "step_times.json.corrupt").read_text() == "[[["
    proc = make("report", results)
    assert "provenance.json is unreadable" in proc.stderr
    assert "Numbers computed at commit" in (res / "REPORT.md").read_text()


def test_a_results_dir_that_is_a_file_or_read_only_is_one_line(tmp_path, dirs):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    one_line_error(script("exp52_testgap.train", (dirs[0], blocker)), "RESULTS_DIR", "not a writable folder")
    assert blocker.read_text() == "x"
    if os.geteuid() != 0:  # root writes anywhere
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o500)
        one_line_error(script("exp52_testgap.train", (dirs[0], ro)), "not a writable folder")


def test_each_job_claims_its_own_gpu_and_a_job_too_many_waits(tmp_path):
    from common.config import UserError, claim_gpu
    assert claim_gpu(2, tmp_path) == 0
    assert claim_gpu(2, tmp_path) == 1     # the first is held (flock per open file)
    with pytest.raises(UserError, match="all 2 GPUs are held"):
        claim_gpu(2, tmp_path, timeout_s=0.1, poll_s=0.05)
