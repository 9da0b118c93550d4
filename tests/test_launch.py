"""LAUNCH=slurm's graph of units, make plan's schedule and the Makefile's STEP= (no Slurm needed:
the real-Slurm run is tests/test_slurm_e2e.py)."""
import json
import math
import subprocess
from pathlib import Path

import pytest

from common.config import ConfigError
from common.runs import plan, slurm
from common.runs.units import ALL_STUDIES, BASE_USERS, Unit, graph
from common.speed.costmodel import evaluate_wall_s, predict

ROOT = Path(__file__).resolve().parent.parent
UNITS, QSTAR_STEPS, _, _ = plan.load_units(plan.CPU_UNITS)


def names(units):
    return [u.name for u in units]


@pytest.mark.parametrize("shards", [1, 3])
def test_graph_orders_every_unit_after_its_dependencies(shards):
    units = graph(["all"], "paper", shards, UNITS, QSTAR_STEPS)
    seen = set()
    for u in units:
        assert set(u.deps) <= seen, f"{u.name} comes before {set(u.deps) - seen}"
        seen.add(u.name)
    assert len(seen) == len(units), "unit names repeat"
    assert units[-1].name == "report" and set(units[-1].deps) >= {
        f"{s} plot" for s in ALL_STUDIES + ("exp_gradients",)}


def test_graph_shards_only_the_sharded_evaluations():
    units = graph(["all"], "quick", 4, UNITS, QSTAR_STEPS)
    evaluations = {}
    for u in units:
        if u.kind == "evaluate":
            evaluations.setdefault(u.goal, []).append(u)
    for study in ("exp52", "exp53", "exp54", "exp55", "exp52_large_encoder"):
        assert len(evaluations[study]) == 4, study
        assert all(u.variables == {"STEP": "evaluate"} for u in evaluations[study])
    for study in ("exp51", "exp66", "exp_refit", "exp_gradients"):   # their own estimators
        assert len(evaluations[study]) == 1, study
    # every shard waits for every training part of its study; the base model before its users
    by = {u.name: u for u in units}
    assert set(by["exp52 evaluate 2/4"].deps) == {n for n in by if n.startswith("exp52 train")}
    assert set(by["exp_gradients evaluate"].deps) == {n for n in by
                                                      if n.startswith("exp55 train")}
    for u in units:
        if u.kind == "train" and u.goal in BASE_USERS:
            assert "base" in u.deps, u.name
    assert by["exp52 train --families flow"].make_args() == [
        "exp52", "STEP=train", "TRAIN_ARGS=--families flow"]


def test_graph_of_one_study_and_unknown_goal():
    units = graph(["exp55"], "smoke", 2, UNITS, QSTAR_STEPS)
    assert not any(u.name in ("base", "report") for u in units)
    assert {u.goal for u in units} == {"data", "exp55"}
    with pytest.raises(ConfigError, match="not a goal"):
        graph(["bench"], "smoke", 1, UNITS, QSTAR_STEPS)


@pytest.mark.parametrize("preset", ["smoke", "quick", "paper"])
def test_cost_parts_add_up_to_each_studys_totals(preset):
    for name, study in predict(UNITS, preset, QSTAR_STEPS).items():
        if not isinstance(study, dict) or "train_parts" not in study:
            continue
        assert math.isclose(sum(s for _, s in study["train_parts"]), study["train"]), name
        assert math.isclose(evaluate_wall_s(study, 1), study["evaluate"]), name
        # more shards never cost more wall time, and never less than the BDMCs alone
        walls = [evaluate_wall_s(study, n) for n in (1, 2, 4, 1000)]
        assert walls == sorted(walls, reverse=True), name
        assert walls[-1] >= sum(e["bdmc_s"] for e in study["evaluations"]) - 1e-9


def test_evaluate_wall_is_bounded_by_the_chunks():
    study = {"shardable": True, "point_chunk": 250,
             "evaluations": [{"work_s": 100.0, "bdmc_s": 10.0, "n_points": 500},
                             {"work_s": 60.0, "bdmc_s": 0.0, "n_points": 100}]}
    assert evaluate_wall_s(study, 1) == 170.0
    assert evaluate_wall_s(study, 2) == 10 + 50 + 60     # the 100-point one is one chunk
    assert evaluate_wall_s(study, 8) == evaluate_wall_s(study, 2)
    assert evaluate_wall_s({**study, "shardable": False}, 8) == 170.0


def toy():
    return [Unit("a", "x", {}, [], 10.0), Unit("b", "x", {}, ["a"], 5.0),
            Unit("c", "x", {}, ["a"], 7.0), Unit("d", "x", {}, [], 3.0),
            Unit("e", "x", {}, ["b", "c", "d"], 1.0)]


def test_schedule_respects_dependencies_and_slots():
    units = toy()
    for slots in (1, 2, 5):
        times = plan.schedule(units, slots)
        for u in units:
            assert all(times[d][1] <= times[u.name][0] for d in u.deps), (slots, u.name)
            assert times[u.name][1] - times[u.name][0] == u.seconds
        for t in {s for s, _ in times.values()}:   # never more running than slots
            assert sum(s <= t < e for s, e in times.values()) <= slots
    assert max(e for _, e in plan.schedule(units, 1).values()) == 26.0
    assert max(e for _, e in plan.schedule(units, 5).values()) == 18.0   # a -> c -> e
    assert plan.critical_path(units) == ["a", "c", "e"]


def test_plan_prints_the_schedule_and_refuses_bad_input():
    def run(*args):
        return subprocess.run([str(ROOT / ".venv/bin/python"), "-m", "common.runs.plan", *args],
                              cwd=ROOT, capture_output=True, text=True)
    ok = run("all", "--preset", "paper", "--device", "cpu", "--units", str(plan.CPU_UNITS),
             "--nodes", "2", "--gpus-per-node", "4", "--shards", "4")
    assert ok.returncode == 0, ok.stderr
    assert "8 job slot(s)" in ok.stdout and "critical path: " in ok.stdout
    assert "wall time: " in ok.stdout and "GPU-hours held: " in ok.stdout
    for args, message in ((["all", "--nodes", "0"], "NODES=0 is not allowed"),
                          (["bench"], "bench: not a goal"),
                          (["all", "--units", "/nonexistent.json"], "does not exist")):
        bad = run(*args)
        assert bad.returncode == 2 and message in bad.stderr and \
            len(bad.stderr.strip().splitlines()) == 1, (args, bad.stderr)


def dry_run(*variables):
    return subprocess.run(["make", "-n", "--no-print-directory", *variables], cwd=ROOT,
                          capture_output=True, text=True)


def test_make_step_runs_one_step_with_its_train_args():
    out = dry_run("exp52", "PRESET=smoke", "SHARED_BUILT=1", "STEP=train",
                  "TRAIN_ARGS=--families flow").stdout.splitlines()
    train = [l for l in out if "exp52_testgap.train" in l]
    assert len(train) == 1 and not train[0].startswith(":") and \
        train[0].endswith("--families flow")
    for step in ("evaluate", "plot"):   # skipped steps are the no-op `:`
        assert all(l.startswith(":") for l in out if f"exp52_testgap.{step}" in l)
    bad = dry_run("exp52", "STEP=fit")
    assert bad.returncode == 2 and "STEP=fit is not allowed" in bad.stderr
    bad = dry_run("bench", "LAUNCH=slurm")
    assert bad.returncode == 2 and "run bench without it" in bad.stderr


def test_exp55s_models_follow_train_args_when_make_trains_them_first():
    """`make exp55 TRAIN_ARGS=--models ...` trains only those models: the exp55_runs step that
    trains them before the evaluation passes TRAIN_ARGS too (it trained all six before)."""
    out = dry_run("exp55", "PRESET=smoke", "TRAIN_ARGS=--models ffg,flow").stdout.splitlines()
    train = [l for l in out if "exp55_dynamics.train" in l and not l.startswith(":")]
    assert train and all(l.endswith("--models ffg,flow") for l in train), train


def test_slurm_args_and_sbatch_parameters():
    assert slurm.parse_slurm_args("--qos=high --constraint=h100") == {
        "qos": "high", "constraint": "h100"}
    with pytest.raises(ConfigError, match="--name=value"):
        slurm.parse_slurm_args("-p gpu")
    a = slurm.parse_args(["all", "--device", "cuda", "--partition", "gpu", "--mem-gb", "32",
                          "--slurm-args=--qos=high"])
    unit = Unit("exp52 evaluate 1/2", "exp52", {"STEP": "evaluate"}, ["x"], 3600.0, "evaluate")
    p = slurm.sbatch_parameters(unit, a, 8, ["11", "12"])
    assert p["dependency"] == "afterok:11:12" and p["gpus_per_node"] == 1
    assert p["partition"] == "gpu" and p["mem"] == "32GB" and p["time"] == 2 * 60 + 15
    assert p["additional_parameters"] == {"qos": "high"}
    command = slurm.job_command(unit, {"PRESET": "paper"})
    assert command[-4:] == ["LAUNCH=local", "SHARED_BUILT=1", "JOBS=1", "SHARDS=1"]
    assert "STEP=evaluate" in command and "PRESET=paper" in command


def test_slurm_without_sbatch_is_one_line(monkeypatch, capsys):
    monkeypatch.setattr(slurm.shutil, "which", lambda tool: None)
    with pytest.raises(SystemExit) as err:
        slurm.main(["all"])
    assert err.value.code == 2
    assert "needs Slurm's sbatch on PATH" in capsys.readouterr().err


def test_slurm_state_marks_only_units_that_ended_well(tmp_path, monkeypatch):
    """A unit recorded as ended well with the same command is not submitted again; one with
    another command (another config) is."""
    monkeypatch.setenv("RESULTS_DIR", str(tmp_path))
    a = slurm.parse_args(["exp55", "--preset", "smoke"])
    units = graph(["exp55"], "smoke", 1, UNITS, QSTAR_STEPS)
    launch = slurm.Launch(a, units)
    launch.state = {u.name: {"key": launch.key(u), "done": True, "job": "1"} for u in units}
    launch.state[units[-1].name]["key"] = "another command"
    submitted = []

    class FakeExecutor:
        def __init__(self, folder):
            pass

        def update_parameters(self, **kw):
            submitted.append(kw)

        def submit(self, fn):
            return type("Job", (), {"job_id": str(100 + len(submitted))})()
    import submitit
    monkeypatch.setattr(submitit, "SlurmExecutor", FakeExecutor)
    monkeypatch.setattr(slurm, "queued", lambda ids: {})
    launch.submit_all()
    assert list(launch.jobs) == [units[-1].name] and "dependency" not in submitted[0]
    assert json.loads((tmp_path / "slurm" / "state.json").read_text())[units[-1].name][
        "done"] is False
