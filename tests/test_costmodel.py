"""The cost model multiplies measured units by counts taken from the presets: check the counts
on cases worked by hand, and that every study and phase is predicted."""
import pytest

from common.costmodel import TRAIN_SIZE, predict
from common.bench import model_names
from common.presets import PRESETS


def units(train=1.0, ais=0.0, qstar=0.0, iwae=0.0):
    return {"train_step": {n: train for n in model_names()}, "ais_row": ais,
            "qstar_row": {"ffg": qstar, "flow": qstar}, "iwae_row": iwae}


def test_training_time_is_steps_times_the_step_cost():
    c = PRESETS["exp52"]["paper"]
    out = predict(units(train=1e-3), "paper", qstar_steps=1000)
    steps = c.epochs * TRAIN_SIZE // c.batch_size
    assert out["exp52"]["train"] == pytest.approx(6 * steps * 1e-3)   # 2 data sets x 3 families
    assert out["exp52"]["evaluate"] == 0.0


def test_ais_time_counts_points_chains_steps_and_leapfrog_of_every_evaluation():
    c = PRESETS["exp52"]["paper"]
    out = predict(units(train=0.0, ais=1.0), "paper", qstar_steps=0)
    per_eval = c.n_points * c.ais_chains * (c.ais_steps + c.ais_warmup) * c.ais_leapfrog
    bdmc = 2 * c.bdmc_points * c.ais_chains * (c.ais_steps + c.ais_warmup) * c.ais_leapfrog
    assert out["exp52"]["evaluate"] == pytest.approx(6 * (2 * per_eval + bdmc))


def test_every_study_is_predicted_and_qstar_steps_scale_evaluation_linearly():
    one = predict(units(train=1e-4, ais=1e-8, qstar=1e-8, iwae=1e-9), "smoke", qstar_steps=100)
    two = predict(units(train=1e-4, ais=1e-8, qstar=1e-8, iwae=1e-9), "smoke", qstar_steps=200)
    studies = ("exp51", "exp52", "exp52_large_encoder", "exp52_no_annealing", "exp53", "exp54",
               "exp55", "exp_refit")
    for study in studies:
        assert one[study]["train"] > 0 and one[study]["evaluate"] > 0, study
        assert one[study]["total"] == pytest.approx(one[study]["train"] + one[study]["evaluate"])
        assert two[study]["evaluate"] > one[study]["evaluate"]
    assert one["all_h"] == pytest.approx(one["all_s"] / 3600)
    assert one["all_s"] == pytest.approx(sum(one[s]["total"] for s in studies))
