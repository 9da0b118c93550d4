"""The cost model multiplies measured units by counts taken from the presets: check the counts
on cases worked by hand, and that every study and phase is predicted."""
import pytest

from common.speed.costmodel import TRAIN_SIZE, ais_chain_moves, predict
from common.speed.bench import model_names
from common.models.families import FAMILIES, local_name
from common.studies import study


def units(train=1.0, ais=0.0, qstar=0.0, iwae=0.0):
    return {"train_step": {n: train for n in model_names()}, "ais_row": ais,
            "qstar_row": {local_name(f): qstar for f in FAMILIES}, "iwae_row": iwae}


def test_training_time_is_steps_times_the_step_cost():
    c = study("exp52").presets["paper"]
    out = predict(units(train=1e-3), "paper", qstar_steps=1000)
    steps = c.epochs * TRAIN_SIZE // c.batch_size
    models = len(c.datasets) * len(c.families)
    assert out["exp52"]["train"] == pytest.approx(models * steps * 1e-3)
    assert out["exp52"]["evaluate"] == 0.0


def test_ais_time_counts_points_chains_steps_and_leapfrog_of_every_evaluation():
    c = study("exp52").presets["paper"]
    out = predict(units(train=0.0, ais=1.0), "paper", qstar_steps=0)
    per_eval = c.n_points * ais_chain_moves(c) * c.ais_leapfrog
    bdmc = 2 * c.bdmc_points * ais_chain_moves(c) * c.ais_leapfrog
    # every model on test points, Table 3's families of both data sets on training points
    models = len(c.datasets) * len(c.families)
    train_split = len(c.datasets) * len(set(c.train_split_families) & set(c.families))
    assert out["exp52"]["evaluate"] == pytest.approx(models * (per_eval + bdmc) +
                                                     train_split * per_eval)


def test_every_study_is_predicted_and_qstar_steps_scale_evaluation_linearly():
    one = predict(units(train=1e-4, ais=1e-8, qstar=1e-8, iwae=1e-9), "smoke", qstar_steps=100)
    two = predict(units(train=1e-4, ais=1e-8, qstar=1e-8, iwae=1e-9), "smoke", qstar_steps=200)
    names = ("exp51", "exp52", "exp52_large_encoder", "exp52_no_annealing", "exp53", "exp54",
             "exp55", "exp66", "exp_refit")
    for name in names:
        assert one[name]["train"] > 0 and one[name]["evaluate"] > 0, name
        assert one[name]["total"] == pytest.approx(one[name]["train"] + one[name]["evaluate"])
        if name != "exp66":   # exp66 fits no q* (Figure 5 draws the bounds of q)
            assert two[name]["evaluate"] > one[name]["evaluate"]
    assert one["all_h"] == pytest.approx(one["all_s"] / 3600)
    assert one["all_s"] == pytest.approx(sum(one[s]["total"] for s in names))


def test_stacked_training_uses_the_measured_stacked_step_and_only_where_it_stacks():
    u = {**units(train=1e-3), "train_step_stacked": {n: 4e-4 for n in model_names()}}
    alone, stacked = predict(u, "paper", 0), predict(u, "paper", 0, stacked=True)
    assert stacked["exp52"]["train"] == pytest.approx(0.4 * alone["exp52"]["train"])
    assert stacked["exp55"]["train"] == pytest.approx(alone["exp55"]["train"])   # not stacked
    assert predict(units(train=1e-3), "paper", 0, stacked=True)["exp52"]["train"] == \
        pytest.approx(alone["exp52"]["train"])      # no stacked unit measured: the single one


def test_exp53_fits_qstar_and_runs_ais_once_per_decoder_not_per_encoder():
    c = study("exp53").presets["paper"]
    out = predict(units(train=0.0, ais=1.0), "paper", qstar_steps=0)
    per_split = c.n_points * ais_chain_moves(c) * c.ais_leapfrog
    bdmc = 2 * c.bdmc_points * ais_chain_moves(c) * c.ais_leapfrog
    assert out["exp53"]["evaluate"] == pytest.approx(len(c.eval_splits) * per_split + bdmc)
    q = predict(units(train=0.0, qstar=1.0), "paper", qstar_steps=10)["exp53"]["evaluate"]
    fits = c.n_points * c.qstar_samples * 10 + c.qstar_probe_points * c.qstar_samples * \
        c.qstar_patience * c.qstar_check_every     # the probe continues each fit
    bdmc_fit = c.bdmc_points * c.qstar_samples * 10 if c.ais_proposal == "qstar" else 0
    assert q == pytest.approx(len(c.eval_splits) * 2 * fits + bdmc_fit)   # ffg and flow, once


def test_tf32_check_runs_and_finds_no_change_where_there_is_no_tf32(dirs, tmp_path):
    import json
    import os
    import subprocess
    import sys
    env = dict(os.environ, DATA_DIR=str(dirs[0]), RESULTS_DIR=str(tmp_path))
    out = subprocess.run([sys.executable, "tools/tf32_check.py", "--device", "cpu", "--points",
                          "20", "--k", "10"], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    result = json.loads((tmp_path / "bench" / "tf32.json").read_text())
    assert result["points"] == 20 and result["mean_change_nats"] == 0.0 and result["within_target"]


def test_ais_moves_count_what_sets_the_step():
    """From the prior a pilot sweep of PILOT_CHAINS chains sets the steps; from a proposal a
    warm-up at beta = 0 on every chain; the paper's in-run adaptation adds nothing."""
    import dataclasses
    from common.inference.estimators import PILOT_CHAINS
    paper, quick = study("exp52").presets["paper"], study("exp52").presets["quick"]
    assert paper.ais_proposal == "prior" and quick.ais_proposal == "qstar"
    assert ais_chain_moves(paper) == (paper.ais_chains + PILOT_CHAINS) * paper.ais_steps
    assert ais_chain_moves(quick) == quick.ais_chains * (quick.ais_steps + quick.ais_warmup)
    adapted = dataclasses.replace(paper, ais_adapt=True)
    assert ais_chain_moves(adapted) == paper.ais_chains * paper.ais_steps


def test_exp66_never_asks_for_a_qstar_proposal():
    """exp66 fits no q*; the shared quick sizes say ais_proposal=qstar, which made its quick
    evaluation fail in the timed make all (a TypeError on the missing q* parameters). Every
    preset starts AIS elsewhere, and asking for qstar is a one-line config error."""
    import dataclasses
    from common.config import ConfigError
    from exp66_small_data.config import PRESETS
    assert all(c.ais_proposal != "qstar" for c in PRESETS.values())
    with pytest.raises(ConfigError, match="exp66 fits no q"):
        dataclasses.replace(PRESETS["quick"], ais_proposal="qstar").validate()
