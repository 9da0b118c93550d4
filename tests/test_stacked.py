"""Stacked training (common/runs/stacked.py) is training each model alone, batched: same weights,
metrics, Adam state and checkpoints within float tolerance, resume included."""
import shutil

import pytest
import torch

from common.models.families import FAMILIES
from common.runs.stacked import train_stacked
from common.runs.train import TrainConfig, read_checkpoint, train
from tests.test_vae_train import synthetic_binary, tiny_model

SEEDS = (3, 4, 5)


def _models(family):
    out = []
    for seed in SEEDS:
        torch.manual_seed(seed)
        out.append(tiny_model(family))
    return out


def _data(grey=False):
    xs = [synthetic_binary(200, seed=1), synthetic_binary(200, seed=2)]
    if grey:   # grey levels for dynamic binarisation
        xs = [x * 0.8 + 0.1 for x in xs]
    return [xs[0], xs[1], xs[0]], synthetic_binary(40, seed=9)   # two datasets, one shared


def _alone(tmp_path, family, cfg, xs, valid):
    dirs = [tmp_path / "alone" / str(s) for s in SEEDS]
    for model, x, d, seed in zip(_models(family), xs, dirs, SEEDS):
        train(model, x, valid, cfg, d, seed)
    return dirs


def _assert_same_runs(dirs_a, dirs_b):
    for a, b in zip(dirs_a, dirs_b):
        sa, sb = read_checkpoint(a / "last.pt"), read_checkpoint(b / "last.pt")
        assert sa["epoch"] == sb["epoch"] and sa["identity"] == sb["identity"]
        for k in sa["model"]:
            assert torch.allclose(sa["model"][k], sb["model"][k], atol=2e-5, rtol=1e-4), k
        adam_a, adam_b = sa["optimizer"]["state"], sb["optimizer"]["state"]
        assert adam_a.keys() == adam_b.keys()
        for i in adam_a:
            for k in ("exp_avg", "exp_avg_sq"):
                assert torch.allclose(adam_a[i][k], adam_b[i][k], atol=1e-6, rtol=1e-3)
            assert adam_a[i]["step"] == adam_b[i]["step"]
        for ra, rb in zip(sa["metrics"], sb["metrics"]):
            for k in ("train_elbo", "valid_elbo", "enc_grad_norm", "dec_grad_norm", "lr"):
                assert ra[k] == pytest.approx(rb[k], rel=1e-4, abs=1e-4, nan_ok=True), k
        assert len(sa["metrics"]) == len(sb["metrics"])
        assert (b / "metrics.csv").read_text().count("\n") == len(sb["metrics"]) + 1


@pytest.mark.parametrize("family,dynamic", [(f, False) for f in FAMILIES if f != "cflow"] +
                         [("cflow", True)])
def test_stacked_training_equals_training_each_model_alone(tmp_path, family, dynamic):
    cfg = TrainConfig(epochs=3, batch_size=50, warmup_epochs=2, n_valid_monitor=20,
                      dynamic_binarisation=dynamic)
    xs, valid = _data(grey=dynamic)
    alone = _alone(tmp_path, family, cfg, xs, valid)
    stacked = [tmp_path / "stacked" / str(s) for s in SEEDS]
    train_stacked(_models(family), xs, [valid] * 3, cfg, stacked, list(SEEDS))
    _assert_same_runs(alone, stacked)


def test_stacked_resume_from_checkpoints_written_alone_and_frozen_decoder(tmp_path):
    cfg = TrainConfig(epochs=3, batch_size=50, warmup_epochs=2, n_valid_monitor=20,
                      checkpoint_epochs=(2,), freeze_decoder=True)
    xs, valid = _data()
    alone = _alone(tmp_path, "flow", cfg, xs, valid)
    resumed = [tmp_path / "resumed" / str(s) for s in SEEDS]
    for a, r in zip(alone, resumed):   # a run killed after epoch 2
        r.mkdir(parents=True)
        shutil.copy(a / "epoch_2.pt", r / "last.pt")
    models = _models("flow")
    decoders = [{k: v.clone() for k, v in m.decoder.state_dict().items()} for m in models]
    train_stacked(models, xs, [valid] * 3, cfg, resumed, list(SEEDS))
    _assert_same_runs(alone, resumed)
    for model, decoder in zip(models, decoders):   # frozen: exactly the starting decoder
        assert all(torch.equal(v, decoder[k]) for k, v in model.decoder.state_dict().items())


def test_models_of_two_architectures_are_not_stacked(tmp_path):
    xs, valid = _data()
    with pytest.raises(ValueError, match="one architecture"):
        train_stacked([tiny_model("ffg"), tiny_model("flow")], xs[:2], [valid] * 2,
                      TrainConfig(epochs=1), [tmp_path / "a", tmp_path / "b"], [0, 1])


def test_exp52_trains_a_family_stacked_over_both_data_sets(dirs, tmp_path):
    import os
    import subprocess
    import sys
    env = dict(os.environ, DATA_DIR=str(dirs[0]), RESULTS_DIR=str(tmp_path))
    cmd = [sys.executable, "-m", "exp52_testgap.train", "--preset", "smoke", "--device", "cpu",
           "--families", "ffg"]
    out = subprocess.run(cmd + ["--stack", "on"], env=env, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr
    assert "mnist/ffg, fashion/ffg stacked" in out.stdout
    runs = tmp_path / "exp52_testgap" / "runs" / "smoke-seed0"
    stamps = {}
    for dataset in ("mnist", "fashion"):
        assert read_checkpoint(runs / f"{dataset}_ffg" / "last.pt")["epoch"] == 2
        stamps[dataset] = (runs / f"{dataset}_ffg" / "last.pt").stat().st_mtime_ns
    again = subprocess.run(cmd + ["--stack", "off"], env=env, capture_output=True, text=True,
                           timeout=300)   # a finished run is the same run, however trained
    assert again.returncode == 0, again.stderr
    assert all((runs / f"{d}_ffg" / "last.pt").stat().st_mtime_ns == t for d, t in stamps.items())
    bad = subprocess.run(cmd + ["--stack", "maybe"], env=env, capture_output=True, text=True)
    assert bad.returncode == 2 and "--stack=maybe is not allowed" in bad.stderr
    bad = subprocess.run(cmd + ["--compile", "true"], env=env, capture_output=True, text=True)
    assert bad.returncode == 2 and "--compile=true is not allowed; use one of: on, off, auto" \
        in bad.stderr


@pytest.mark.parametrize("stacked", [False, True])
def test_a_compiled_step_trains_the_same_run(tmp_path, monkeypatch, capsys, stacked):
    import dataclasses

    import common.runs.train as trainer
    from common.runs.train import run_identity
    from torch._dynamo.utils import counters
    monkeypatch.setattr(trainer, "COMPILE_BACKEND", "aot_eager")   # no C compiler needed
    counters.clear()
    cfg = TrainConfig(epochs=2, batch_size=50, warmup_epochs=2, n_valid_monitor=20)
    xs, valid = _data()
    runs = {}
    for compiled in ("off", "on"):
        c = dataclasses.replace(cfg, compile=compiled)
        dirs = [tmp_path / str(compiled) / str(s) for s in SEEDS]
        if stacked:
            train_stacked(_models("flow"), xs, [valid] * 3, c, dirs, list(SEEDS))
        else:
            for model, x, d, seed in zip(_models("flow"), xs, dirs, SEEDS):
                train(model, x, valid, c, d, seed)
        runs[compiled] = dirs
    assert "running the step eagerly" not in capsys.readouterr().out   # it did compile...
    assert counters["frames"]["ok"] >= 1                              # ... through dynamo
    _assert_same_runs(runs["off"], runs["on"])
    # how, not what: a compiled run is the same run (resumable either way)
    assert run_identity(tiny_model().config, cfg, 0) == \
        run_identity(tiny_model().config, dataclasses.replace(cfg, compile="on"), 0)


def test_compile_auto_means_on_a_gpu_only():
    from common.runs.train import compiles
    assert not compiles("auto", "cpu") and compiles("auto", "cuda") and compiles("auto", "cuda:0")
    assert compiles("on", "cpu") and not compiles("off", "cuda")
    with pytest.raises(ValueError, match="use one of: on, off, auto"):
        compiles(True, "cpu")


def test_a_stacked_run_that_fails_falls_back_to_training_one_by_one(tmp_path, monkeypatch, capsys):
    import common.runs.stacked as stacked
    from common.runs.experiment import train_many

    def unsupported(*args, **kwargs):
        raise RuntimeError("vmap: an op this device cannot batch")
    monkeypatch.setattr(stacked, "train_stacked", unsupported)
    xs, valid = _data()
    dirs = [tmp_path / "a", tmp_path / "b"]
    models = train_many(dirs, tiny_model().config, TrainConfig(epochs=1, batch_size=50),
                        xs[:2], [valid] * 2, 0, "cpu", ["a", "b"], stack=True)
    assert "training the runs one by one" in capsys.readouterr().out and len(models) == 2
    assert all(read_checkpoint(d / "last.pt")["epoch"] == 1 for d in dirs)


def test_runs_at_different_epochs_are_trained_one_by_one_to_the_same_result(tmp_path, capsys):
    cfg = TrainConfig(epochs=3, batch_size=50, warmup_epochs=2, n_valid_monitor=20,
                      checkpoint_epochs=(2,))
    xs, valid = _data()
    alone = _alone(tmp_path, "ffg", cfg, xs, valid)
    mixed = [tmp_path / "mixed" / str(s) for s in SEEDS]
    mixed[0].mkdir(parents=True)
    shutil.copy(alone[0] / "epoch_2.pt", mixed[0] / "last.pt")   # one run is further along
    train_stacked(_models("ffg"), xs, [valid] * 3, cfg, mixed, list(SEEDS))
    assert "runs at different epochs ([0, 2]): training each alone" in capsys.readouterr().out
    _assert_same_runs(alone, mixed)
