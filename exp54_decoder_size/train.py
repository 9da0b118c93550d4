"""Train FFG VAEs on MNIST whose decoders have 0, 2 and 4 hidden layers (encoder as exp52).
The 2-layer one is exp52's standard ffg model when its settings match (trained once for both)."""
import dataclasses

from common.config import guarded
from common.runs.experiment import Experiment, train_or_load
from exp52_testgap.base import base_config, base_ffg_model, base_run_dir


def model_config(cfg, layers: int):
    return dataclasses.replace(cfg.model_config("ffg"), dec_hidden=(cfg.decoder_units,) * layers)


def run_dir(exp: Experiment, layers: int):
    """exp52's base run for the standard model (same preset and seed), else our own folder."""
    base = base_config(exp.preset)
    if exp.config.dataset in ("mnist", "fashion") and \
            model_config(exp.config, layers) == base.model_config("ffg") and \
            exp.config.train_config() == base.train_config():
        return base_run_dir(exp.preset, exp.seed, exp.config.dataset)
    return exp.runs / f"{exp.config.dataset}_ffg_dec{layers}"


def main(argv=None):
    exp = Experiment("exp54", argv, __doc__, stage="train")
    cfg = exp.config
    x_train, x_valid = exp.train_data(cfg.dataset), exp.data(cfg.dataset, "valid")
    for layers in cfg.decoder_layers:
        path = run_dir(exp, layers)
        if path == base_run_dir(exp.preset, exp.seed, cfg.dataset):
            base_ffg_model(exp.preset, exp.seed, cfg.dataset, exp.device)
        else:
            train_or_load(path, model_config(cfg, layers), cfg.train_config(), x_train, x_valid,
                          exp.seed, exp.device, label=f"{cfg.dataset}/ffg decoder {layers} hidden",
                          data=exp.data_identity(cfg.dataset))
    exp.write_provenance("train_provenance.json")


if __name__ == "__main__":
    guarded(main)
