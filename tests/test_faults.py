"""A run is what its config says (issue 14): stale results are never reused, every damaged file
ends in one line naming it (or in a recompute that says why), and kill windows lose nothing.

Each test works on a private copy of the smoke results of tests/test_experiments.py."""
import csv
import json
import os
import re
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


def test_a_damaged_metrics_csv_is_rebuilt_from_the_checkpoint_or_refused_without_one(results):
    run = results[1] / "exp55_dynamics" / RUN / "fashion_ffg"
    good = (run / "metrics.csv").read_text()
    lines = good.splitlines()
    for damaged in ("\n".join(lines[:-1]) + "\n" + lines[-1][:20] + "\n",  # a torn last row
                    "\n".join(lines[:-1]) + "\n"):  # a kill before the last row
        (run / "metrics.csv").write_text(damaged)
        proc = script("exp_gradients.evaluate", results)
        assert proc.returncode == 0 and "rebuilt from last.pt" in proc.stdout, proc.stderr[-2000:]
        assert (run / "metrics.csv").read_text() == good
    # without the checkpoint that carries the true rows, the damage is refused in one line
    held = run.parent / "last.pt.held"
    (run / "last.pt").rename(held)
    try:
        (run / "metrics.csv").write_text("\n".join(lines[:-1]) + "\n")
        one_line_error(script("exp_gradients.plot", results), "not epochs 1..2")
    finally:
        held.rename(run / "last.pt")
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
    proc = subprocess.run([PY, "-m", "common.speed.steptime", "probe", "true"], cwd=ROOT, env=env,
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


# ---- the faults of issue 28, each reproduced --------------------------------------------------

def test_clean_deletes_only_a_results_dir_this_project_made_and_quotes_its_path(tmp_path):
    """`make clean RESULTS_DIR="/tmp/a b"` ran `rm -rf /tmp/a b`; now the path is quoted and a
    folder without the project's marker is refused in one line, nothing deleted."""
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "keep").write_text("x")
    theirs = tmp_path / "a b"
    theirs.mkdir()
    (theirs / "keep").write_text("x")
    proc = subprocess.run(["make", "--no-print-directory", "clean", f"RESULTS_DIR={theirs}"],
                          cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 2 and "was not made by this project" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert (tmp_path / "a" / "keep").exists() and (theirs / "keep").exists()
    ours = tmp_path / "c d"
    from common.config import check_results_dir
    check_results_dir(ours)          # made by the project: marked
    (ours / "result").write_text("x")
    proc = subprocess.run(["make", "--no-print-directory", "clean", f"RESULTS_DIR={ours}"],
                          cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0 and not ours.exists() and (tmp_path / "a" / "keep").exists()


def test_bdmc_does_not_depend_on_what_the_process_did_before(dirs, smoke):
    """A cached BDMC gap depended on process history (the flow q's moment samples and a flow
    proposal's spread came from the global RNG): computed after different evaluations, the
    same decoder and config give the same value."""
    import torch
    from common.inference.gaps import bdmc_bound, encoder_bounds
    from common.runs.train import load_model
    from exp52_testgap.config import PRESETS
    model = load_model(dirs[1] / "exp52_testgap" / RUN / "mnist_flow" / "last.pt")
    model.eval()
    cfg = PRESETS["smoke"]
    torch.manual_seed(123)
    first = bdmc_bound(model, cfg, 0)
    x = torch.bernoulli(torch.full((7, 784), 0.3))
    encoder_bounds(model, x, cfg, 5)          # other work, other global draws
    torch.rand(1000)
    torch.manual_seed(999)
    again = bdmc_bound(model, cfg, 0)
    assert first == again


def test_a_cached_bdmc_gap_that_is_not_finite_is_recomputed(dirs, smoke, tmp_path, capsys):
    """A BDMC cache written while AF's q* could diverge held a NaN gap, and later evaluations
    served it: a non-finite cached gap is recomputed, and says so."""
    import math
    from common.runs.experiment import decoder_bdmc, write_cache
    from common.runs.train import load_model
    from exp52_testgap.config import PRESETS
    model = load_model(dirs[1] / "exp52_testgap" / RUN / "mnist_ffg" / "last.pt")
    model.eval()
    path = tmp_path / "bdmc.json"
    first = decoder_bdmc(model, PRESETS["smoke"], 0, path)
    data = json.loads(path.read_text())
    data["bdmc"]["bdmc_gap"] = float("nan")
    write_cache(path, data["key"], "bdmc", data["bdmc"])   # a valid checksum: the gap is judged
    again = decoder_bdmc(model, PRESETS["smoke"], 0, path)
    assert "cached BDMC gap" in capsys.readouterr().out
    assert math.isfinite(again["bdmc_gap"]) and again == first
    assert json.loads(path.read_text())["bdmc"] == first


def test_an_empty_selection_is_an_error_and_a_dropped_split_leaves_no_stale_table(results):
    one_line_error(script("exp52_testgap.evaluate", results, "--families", ""),
                   "--families is empty")
    out = results[1] / "exp52_testgap"
    assert (out / "table_train.md").exists()
    proc = script("exp52_testgap.evaluate", results, "--families", "ffg", "--k-eval", "32",
                  "--eval-splits", "test")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert not (out / "table_train.md").exists() and not (out / "table_train.tex").exists()
    assert {r["split"] for r in rows(out / "gaps.csv")} == {"test"}


def test_a_hand_edited_metrics_value_is_never_published(results):
    run = results[1] / "exp55_dynamics" / RUN / "fashion_ffg"
    proc = script("exp_gradients.evaluate", results)
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary = (results[1] / "exp_gradients" / "summary.csv").read_text()
    table = rows(run / "metrics.csv")
    true = table[-1]["enc_grad_norm"]
    table[-1]["enc_grad_norm"] = "999.0"
    with open(run / "metrics.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(table[0]))
        w.writeheader()
        w.writerows(table)
    proc = script("exp_gradients.evaluate", results)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "differs from its checkpoint" in proc.stdout
    assert rows(run / "metrics.csv")[-1]["enc_grad_norm"] == true
    # the summary is the one made from the true values (a substring test for "999" failed on
    # a true value's digits)
    assert (results[1] / "exp_gradients" / "summary.csv").read_text() == summary


def test_non_finite_weights_in_a_checkpoint_are_refused_at_load(results):
    import torch
    last = results[1] / "exp52_testgap" / RUN / "mnist_ffg" / "last.pt"
    state = torch.load(last, weights_only=False)
    state["model"]["decoder.net.0.weight"][0, 0] = float("nan")
    torch.save(state, last)
    for module in ("exp52_testgap.train", "exp52_testgap.evaluate"):
        one_line_error(script(module, results), str(last), "non-finite weights", "delete")


def test_result_files_that_parse_but_are_wrong_are_one_line_or_set_aside(results):
    out = results[1] / "exp52_testgap"
    gaps = out / "gaps.csv"
    good = gaps.read_text()
    table = rows(gaps)
    for change, words in ((("approx_gap", "abc"), ("approx_gap='abc' is not a number",)),
                          (("model", "iaf"), ("model='iaf' is unknown",))):
        bad = [dict(r) for r in table]
        bad[0][change[0]] = change[1]
        with open(gaps, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(table[0]))
            w.writeheader()
            w.writerows(bad)
        one_line_error(script("exp52_testgap.plot", results), str(gaps), *words)
    with open(gaps, "w", newline="") as f:      # a column missing
        w = csv.DictWriter(f, fieldnames=[k for k in table[0] if k != "amort_gap"],
                           extrasaction="ignore")
        w.writeheader()
        w.writerows(table)
    one_line_error(script("exp52_testgap.plot", results), str(gaps), "amort_gap")
    gaps.write_text(good)
    per_point = results[1] / "exp52_testgap_no_annealing"
    # claims.json with a string difference, and with binary garbage: set aside, said so
    claims = out / "claims.json"
    entries = json.loads(claims.read_text())
    entries[0]["difference"] = "large"
    claims.write_text(json.dumps(entries))
    proc = make("report", results)
    assert "claims.json is unreadable" in proc.stderr and (out / "claims.json.corrupt").exists()
    claims.write_bytes(b"\x00\xff\xfe garbage")
    proc = make("report", results)
    assert "claims.json is unreadable" in proc.stderr
    (results[1] / "step_times.json").write_text('{"exp52_train": 5}')   # the wrong shape
    proc = make("report", results)
    assert "step_times.json is unreadable" in proc.stderr
    assert (results[1] / "step_times.json.corrupt").exists()
    del per_point


def test_a_full_disk_is_one_line_and_leaves_no_temporary_file(tmp_path, monkeypatch):
    """Writes that fail for lack of space (ENOSPC; torch.save's "file write failed") end in one
    line naming the file, and remove their temporary; what was there is kept."""
    import errno
    import torch
    from common.config import WriteFailed, atomic_write_text
    from common.results.tables import write_csv
    from common.runs.train import save_checkpoint
    target = tmp_path / "table.md"
    target.write_text("kept")
    real_write = type(target).write_text

    def full(self, *a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(type(target), "write_text", full)
    with pytest.raises(WriteFailed, match="no space left on device writing .*table.md"):
        atomic_write_text(target, "new")
    monkeypatch.setattr(type(target), "write_text", real_write)
    assert target.read_text() == "kept"

    def full_save(obj, f, *a, **k):
        with open(f, "wb") as h:
            h.write(b"partial")
        raise RuntimeError("[enforce fail at inline_container.cc] . PytorchStreamWriter failed "
                           "writing file data/0: file write failed")
    monkeypatch.setattr(torch, "save", full_save)
    model = torch.nn.Linear(2, 2)
    with pytest.raises(WriteFailed, match="no space left on device writing .*last.pt"):
        save_checkpoint(tmp_path / "last.pt", model, torch.optim.Adam(model.parameters()), 1, {})
    monkeypatch.undo()
    real_open = open

    def full_open(path, mode="r", *a, **k):
        if "w" in mode and str(path).endswith(".part"):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_open(path, mode, *a, **k)
    monkeypatch.setattr("builtins.open", full_open)
    with pytest.raises(WriteFailed, match="no space left"):
        write_csv(tmp_path / "gaps.csv", [{"a": 1}])
    monkeypatch.undo()
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".part")]


def test_the_caption_names_the_points_evaluated_when_n_points_is_0(results):
    proc = script("exp52_testgap.evaluate", results, "--n-points", "0", "--families", "ffg",
                  "--datasets", "mnist", "--eval-splits", "test")
    assert proc.returncode == 0, proc.stderr[-2000:]
    md = (results[1] / "exp52_testgap" / "table.md").read_text()
    assert "on 0 test points" not in md and "on 300 test points" in md


def test_a_fit_that_ended_far_below_its_floor_does_not_set_the_probe():
    """AF's q* on one MNIST point (quick) ended at a finite bound near -1e23 while the row
    reported q's -76.8 there; continued, it recovered, and the probe read +5.1e21 nats. The
    probe measures the reported L[q*] = max(fit, floor): that point changes nothing unless the
    longer run climbs above the floor; elsewhere it is the plain change, noise included."""
    import torch

    from common.inference.gaps import reported_change
    fitted = torch.tensor([-1e23, -90.0, -80.0])
    longer = torch.tensor([-78.0, -89.9, -80.1])
    floor = torch.tensor([-76.8, -95.0, -85.0])
    assert reported_change(fitted, longer, floor) == pytest.approx((0.0 + 0.1 - 0.1) / 3, abs=1e-4)
    assert reported_change(fitted, longer) > 1e22            # the raw change: what went wrong
    above = torch.tensor([-70.0, -90.0, -80.0])              # a longer run above the floor counts
    assert reported_change(fitted, above, floor) == pytest.approx(6.8 / 3, abs=1e-4)
    nan = torch.tensor([float("nan"), -90.0, -80.0])         # a non-finite fit reads as its floor
    assert reported_change(nan, fitted, floor) == pytest.approx(0.0, abs=1e-4)


# ---- the faults of issue 42 (a probe of 48 faults and bad inputs), each reproduced ------------

def test_42_1_a_checkpoint_of_another_data_set_is_refused(results):
    """fashion_ffg/last.pt copied over mnist_ffg/last.pt was evaluated as MNIST (log p^ -396.64
    where MNIST's is -259.59): a run records what it was trained on, and is refused elsewhere."""
    runs = results[1] / "exp52_testgap" / RUN
    shutil.copy(runs / "fashion_ffg" / "last.pt", runs / "mnist_ffg" / "last.pt")
    for module in ("exp52_testgap.evaluate", "exp52_testgap.train"):
        one_line_error(script(module, results), "data.dataset='fashion'", "not 'mnist'",
                       str(runs / "mnist_ffg"))


def test_42_1_a_checkpoint_from_before_the_data_record_still_loads(tmp_path):
    """Checkpoints written before the data set was recorded (identity data {}) stay loadable."""
    from common.data import data_identity
    from common.runs.train import RunMismatch, check_identity
    wanted = {"model": {"z": 2}, "seed": 0, "train": {}, "data": data_identity("mnist")}
    check_identity({"identity": {**wanted, "data": {}}}, wanted, tmp_path / "last.pt")
    with pytest.raises(RunMismatch, match="data.dataset='fashion'"):
        check_identity({"identity": {**wanted, "data": data_identity("fashion")}}, wanted,
                       tmp_path / "last.pt")
    refit = {**wanted, "data": {**data_identity("mnist"), "noise": 50}}
    check_identity({"identity": {**refit, "data": {"noise": 50}}}, refit, tmp_path / "last.pt")
    with pytest.raises(RunMismatch, match="data.noise"):
        check_identity({"identity": {**refit, "data": {"noise": 10}}}, refit, tmp_path / "last.pt")


def test_42_2_a_difference_without_a_standard_error_is_never_held():
    """`--n-points 1` gave s.e. 0.0, and verdict(0.01, 0.0, True) was "held"."""
    from common.results.claims import claim, contrast, mean_sem, valid_claim, verdict
    from common.reporting.seeds import across
    assert verdict(0.01, 0.0, True) == "too few points"
    assert verdict(0.01, float("nan"), True) == "too few points"
    assert verdict(5.0, 1.0, True) == "held" and verdict(5.0, 1.0, False) == "not certified"
    assert mean_sem([2.5]) == (2.5, 0.0)
    one = {"approx_gap": 1.0, "approx_gap_sem": 0.0, "certified": "True"}
    other = {"approx_gap": 0.5, "approx_gap_sem": 0.0, "certified": "True"}
    c = contrast("exp52", "a > b", "MNIST", [(1, one, "approx_gap"), (-1, other, "approx_gap")])
    assert c["verdict"] == "too few points" and valid_claim(c)
    seed_rows = [claim("s", "t", "c", 1.0, 0.0, True), claim("s", "t", "c", 2.0, 0.0, True)]
    assert across(seed_rows)["across_seeds"] == "too few points"


def test_42_3_hand_edited_results_are_recomputed_or_left_out(results):
    """An edited summary.json was read back as a cache hit; an edited claims.json verdict and
    an edited table.md cell reached REPORT.md."""
    out = results[1] / "exp52_testgap"
    flags = ("--datasets", "mnist", "--families", "ffg", "--eval-splits", "test")
    proc = script("exp52_testgap.evaluate", results, *flags)
    assert proc.returncode == 0, proc.stderr[-2000:]
    true = rows(out / "gaps.csv")
    summary = out / RUN / "mnist_ffg" / "eval_test" / "summary.json"
    data = json.loads(summary.read_text())
    data["summary"].update(approx_gap=99.0, certified=True, bdmc_gap=0.0)
    summary.write_text(json.dumps(data))
    proc = script("exp52_testgap.evaluate", results, *flags)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert f"recomputing: {summary}" in proc.stdout and "checksum" in proc.stdout
    again = rows(out / "gaps.csv")
    assert [r["approx_gap"] for r in again] == [r["approx_gap"] for r in true]
    assert "99.0" not in {r["approx_gap"] for r in again}
    per_point = summary.parent / "per_point.csv"      # the per-point values are checked too
    per_point.write_text(per_point.read_text().replace("-", "+", 1))
    proc = script("exp52_testgap.evaluate", results, *flags)
    assert f"recomputing: {summary}" in proc.stdout
    proc = script("exp52_testgap.plot", results)
    assert proc.returncode == 0, proc.stderr[-2000:]
    claims = json.loads((out / "claims.json").read_text())
    claims[0].update(verdict="held", certified=True, difference=50.0, sem=1.0)
    (out / "claims.json").write_text(json.dumps(claims))
    table = out / "table.md"
    table.write_text(table.read_text() + "| EDITED CELL |\n")
    proc = make("report", results, "PRESET=smoke")
    report = (results[1] / "REPORT.md").read_text()
    assert "claims.json is unreadable" in proc.stderr and "edited by hand" in proc.stderr
    assert "+50.00" not in report and "exp52_testgap/claims.json.corrupt" in report
    assert "EDITED CELL" not in report and "table.md left out" in report
    assert str(table) in proc.stderr


def test_42_4_an_empty_results_or_data_dir_is_refused_before_anything_is_written(dirs, tmp_path):
    """`RESULTS_DIR=` (empty) wrote runs, tables and REPORT.md into the source tree."""
    before = subprocess.run(["git", "status", "--porcelain", "--ignored"], cwd=ROOT,
                            capture_output=True, text=True).stdout
    for var in ("RESULTS_DIR", "DATA_DIR"):
        proc = subprocess.run(["make", "--no-print-directory", "report", f"{var}="], cwd=ROOT,
                              capture_output=True, text=True)
        assert proc.returncode == 2 and f"{var} is empty" in proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1
        env = {**os.environ, "DATA_DIR": str(dirs[0]), "RESULTS_DIR": str(tmp_path), var: ""}
        modules = [["exp52_testgap.train", "--preset", "smoke"]] + (
            [["common.reporting.report"], ["common.reporting.ladder"],
             ["common.speed.steptime", "probe", "true"]]
            if var == "RESULTS_DIR" else [])   # these read no data
        for module in modules:
            proc = subprocess.run([PY, "-m", *module], cwd=ROOT, env=env, capture_output=True,
                                  text=True)
            one_line_error(proc, f"{var} is set but empty")
    after = subprocess.run(["git", "status", "--porcelain", "--ignored"], cwd=ROOT,
                           capture_output=True, text=True).stdout
    assert after == before


@pytest.mark.parametrize("flags, words", [
    (("--seeds", "-1"), ("--seeds=-1", "[0, 2147483647]")),
    (("--seeds", "1,abc"), ("--seeds=1,abc",)),
    (("--seeds", "00,0"), ("lists a value twice",)),
    (("--seeds", "99999999999999999999"), ("--seeds=99999999999999999999",)),   # 9: overflow
])
def test_42_5_9_every_seed_is_checked_before_any_work(results, flags, words):
    """`--seeds -1` made runs/smoke-seed-1; a seed past 2^63 overflowed in a traceback."""
    before = snapshot(results[1])
    one_line_error(script("exp52_testgap.train", results, *flags), *words)
    assert snapshot(results[1]) == before


@pytest.mark.parametrize("variables, words", [
    (("SEEDS=00,0",), "SEEDS=00,0 is not allowed"),
    (("LADDER_EPOCHS=2 abc",), "LADDER_EPOCHS=2 abc is not allowed"),
    (("LADDER_EPOCHS=0",), "LADDER_EPOCHS=0 is not allowed"),
])
def test_42_5_make_variables_are_refused_before_any_work(tmp_path, variables, words):
    """SEEDS=00,0 and LADDER_EPOCHS="2 abc" were refused only after a study had run."""
    for target in ("all", "ladder"):
        proc = subprocess.run(["make", "--no-print-directory", "-n", target, *variables,
                               f"RESULTS_DIR={tmp_path / 'r'}"], cwd=ROOT, capture_output=True,
                              text=True)
        assert proc.returncode == 2 and words in proc.stderr, proc.stdout[-500:] + proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1 and not proc.stdout
    assert not (tmp_path / "r").exists()


def test_42_6_a_gap_table_without_its_commit_column_is_said_on_the_report(results):
    """The report dropped its "Numbers computed at commit" line without a word when gaps.csv
    had renamed columns."""
    gaps = results[1] / "exp52_testgap" / "gaps.csv"
    lines = gaps.read_text().split("\n")
    gaps.write_text("\n".join([lines[0].replace("computed_commit", "commit")] + lines[1:]))
    proc = make("report", results, "PRESET=smoke")
    assert f"{gaps} has no column 'computed_commit'" in proc.stderr
    report = (results[1] / "REPORT.md").read_text()
    assert "**Numbers of unknown commit**: gaps.csv" in report


@pytest.mark.parametrize("flags, words", [
    (("--bdmc-points", "0"), ("--bdmc-points=0", "[1, 2147483647]")),                  # 7
    (("--eval-splits", "foo"), ("'foo' is not a split",)),                             # 8
    (("--eval-splits", "test,foo"), ("'foo' is not a split",)),
    (("--qstar-lr-decay", "2"), ("--qstar-lr-decay=2.0", "(0, 1]")),                   # 13
    (("--af-points", "99999999"), ("99999999 test points", "holds 300")),
])
def test_42_7_8_13_bad_evaluation_flags_are_one_line_before_any_evaluation(results, flags, words):
    out = results[1] / "exp52_testgap"
    before = snapshot(out)
    proc = one_line_error(script("exp52_testgap.evaluate", results, *flags), *words)
    assert "[exp52]" not in proc and snapshot(out) == before


def test_42_10_a_renamed_column_and_a_subset_evaluation_leave_a_whole_table(results):
    """A gaps.csv with renamed columns plus `--families ffg`: KeyError, and the file was left
    with empty log p^ cells that broke the next run."""
    out = results[1] / "exp52_testgap"
    gaps = out / "gaps.csv"
    n_rows = len(rows(gaps))
    lines = gaps.read_text().split("\n")
    gaps.write_text("\n".join([lines[0].replace("logpx,", "log_p,", 1)] + lines[1:]))
    flags = ("--datasets", "mnist", "--families", "ffg", "--eval-splits", "test")
    proc = script("exp52_testgap.evaluate", results, *flags)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "has no column 'logpx'" in proc.stdout and "rewritten from this run's rows" in proc.stdout
    table = rows(gaps)
    assert len(table) == 1 and all(table[0][k] not in ("", None) for k in ("logpx", "approx_gap"))
    proc = script("exp52_testgap.evaluate", results)      # the next full run: every row again
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert len(rows(gaps)) == n_rows and all(r["logpx"] for r in rows(gaps))


def test_42_11_a_full_disk_while_training_is_one_line(results, tmp_path):
    """A full disk during training printed torch's "[enforce fail at inline_container.cc] .
    unexpected pos 576 vs 534" (its message on a full tmpfs) instead of one line."""
    full = tmp_path / "full"
    full.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=96k", "tmpfs", str(full)],
                             capture_output=True).returncode == 0
    if mounted:   # a real full disk (root, as in CI)
        try:
            proc = script("exp52_testgap.train", (results[0], full / "results"), "--families",
                          "ffg", "--datasets", "mnist")
            one_line_error(proc, "no space left on device writing", "last.pt")
            assert not [p for p in full.rglob("*.part")]
        finally:
            subprocess.run(["umount", str(full)])
    # and torch's message itself, where the disk is nearly full (the check every machine runs)
    import shutil as sh
    import torch
    from common.config import WriteFailed
    from common.runs.train import save_checkpoint
    real_save, real_usage = torch.save, sh.disk_usage

    def short_write(obj, f, *a, **k):
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 576 vs 534")
    try:
        torch.save = short_write
        sh.disk_usage = lambda p: real_usage(p)._replace(free=1000)
        model = torch.nn.Linear(2, 2)
        with pytest.raises(WriteFailed, match="^no space left on device writing .*last.pt"):
            save_checkpoint(tmp_path / "last.pt", model, torch.optim.Adam(model.parameters()), 1, {})
        sh.disk_usage = real_usage
        with pytest.raises(WriteFailed, match="torch's file writer failed"):
            save_checkpoint(tmp_path / "last.pt", model, torch.optim.Adam(model.parameters()), 1, {})
    finally:
        torch.save, sh.disk_usage = real_save, real_usage


INJECTIONS = ['out"; touch {m}; echo "', "a$(touch {m})", "a`touch {m}`", "a\ntouch {m}",
              "a$(shell touch {m})"]


@pytest.mark.parametrize("target", ["clean", "report", "help", "exp52", "screenshot", "all"])
@pytest.mark.parametrize("variable", ["RESULTS_DIR", "DATA_DIR", "REPORT"])
def test_42_12_no_path_variable_reaches_a_shell(tmp_path, target, variable):
    """`make clean RESULTS_DIR='out"; touch INJECTED; echo "'` ran the touch before refusing."""
    marker = tmp_path / "INJECTED"
    for payload in INJECTIONS:
        value = str(tmp_path / payload.format(m=marker))
        proc = subprocess.run(["make", "--no-print-directory", target, f"{variable}={value}"],
                              cwd=ROOT, capture_output=True, text=True, timeout=60)
        assert not marker.exists(), (variable, payload, target)
        assert proc.returncode == 2 and f"{variable} holds a character the shell" in proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1
    # a path with spaces, quotes of the other kind and parentheses is a path: quoted, not run
    odd = tmp_path / "a b's (c); touch INJECTED"
    proc = subprocess.run(["make", "--no-print-directory", "clean", f"RESULTS_DIR={odd}"],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and "nothing to clean" in proc.stdout and not marker.exists()
    assert not (ROOT / "INJECTED").exists()


@pytest.mark.parametrize("variable", ["SEED", "NOISE", "SEEDS", "EVAL_ARGS", "LADDER_EPOCHS",
                                      "EPOCHS", "JOBS", "STUDIES", "TEST_WORKERS"])
def test_42_12_no_value_variable_reaches_a_shell(tmp_path, variable):
    marker = tmp_path / "INJECTED"
    for payload in INJECTIONS + ["1; touch {m}", "1 && touch {m}", "1 | touch {m}"]:
        proc = subprocess.run(["make", "--no-print-directory", "help",
                               f"{variable}={payload.format(m=marker)}"], cwd=ROOT,
                              capture_output=True, text=True, timeout=60)
        assert not marker.exists(), (variable, payload)
        assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr


def test_42_13_a_set_aside_claims_file_is_named_on_the_report(results):
    """A set-aside claims.json.corrupt was not mentioned in REPORT.md, and its warning was cut
    ("...invalid );")."""
    claims = results[1] / "exp52_testgap" / "claims.json"
    claims.write_text('[{"study": "exp52", invalid json')
    proc = make("report", results, "PRESET=smoke")
    warning = [line for line in proc.stderr.splitlines() if "claims.json is unreadable" in line]
    assert len(warning) == 1 and "JSONDecodeError: Expecting property name" in warning[0]
    assert "set aside as claims.json.corrupt; rerun its study" in warning[0]
    assert "exp52_testgap/claims.json.corrupt" in (results[1] / "REPORT.md").read_text()


def test_42_13_clean_of_a_read_only_folder_is_one_line(tmp_path):
    """`make clean` on a folder it may not delete printed 82 `rm:` lines."""
    if os.geteuid() == 0 and subprocess.run(["chattr", "--help"], capture_output=True).returncode > 1:
        pytest.skip("root deletes anything and chattr is missing")
    from common.config import check_results_dir
    res = tmp_path / "res"
    check_results_dir(res)
    for i in range(5):
        (res / f"d{i}").mkdir()
        (res / f"d{i}" / "f").write_text("x")
    locked = []
    if os.geteuid() == 0:   # root ignores permissions: make the files immutable instead
        for i in range(5):
            if subprocess.run(["chattr", "+i", str(res / f"d{i}" / "f")]).returncode == 0:
                locked.append(res / f"d{i}" / "f")
        if not locked:
            pytest.skip("this file system has no immutable flag")
    else:
        for i in range(5):
            (res / f"d{i}").chmod(0o500)
    try:
        proc = subprocess.run(["make", "--no-print-directory", "clean", f"RESULTS_DIR={res}"],
                              cwd=ROOT, capture_output=True, text=True)
        assert proc.returncode == 2, proc.stdout + proc.stderr
        err = [line for line in proc.stderr.strip().splitlines()
               if not re.match(r"make(\[\d+\])?: \*\*\*", line)]   # make's own trailer
        assert len(err) == 1 and err[0].startswith("error: could not delete all of"), err
        assert "5 paths refused" in err[0]
    finally:
        for f in locked:
            subprocess.run(["chattr", "-i", str(f)])
        for i in range(5):
            if (res / f"d{i}").exists():
                (res / f"d{i}").chmod(0o700)
