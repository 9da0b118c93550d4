"""Train small encoders (ffg, flow, cflow; identical trunk: one hidden layer of 100, and a linear
one) against the frozen decoder of the base ffg VAE (exp52's standard model for the same preset
and seed, trained here if missing)."""
from common.config import guarded
from common.runs.experiment import Experiment, train_or_load
from exp52_testgap.base import base_ffg_model, base_run_dir


def encoder_run_dir(exp: Experiment, encoder: str, family: str):
    return exp.runs / f"{exp.config.dataset}_{encoder}_{family}"


def main(argv=None):
    exp = Experiment("exp53", argv, __doc__, stage="train")
    cfg = exp.config
    base_epochs = cfg.base_epochs or cfg.epochs
    base_ffg_model(exp.preset, exp.seed, cfg.dataset, exp.device, base_epochs)
    x_train, x_valid = exp.train_data(cfg.dataset), exp.data(cfg.dataset, "valid")
    base_checkpoint = base_run_dir(exp.preset, exp.seed, cfg.dataset, base_epochs) / "last.pt"
    for encoder in cfg.encoders:
        for family in cfg.families:
            train_or_load(encoder_run_dir(exp, encoder, family), cfg.model_config(family, encoder),
                          cfg.train_config(freeze_decoder=True), x_train, x_valid, exp.seed,
                          exp.device, init_from=base_checkpoint, label=f"frozen/{encoder}/{family}",
                          data=exp.data_identity(cfg.dataset))
    exp.write_provenance("train_provenance.json")


if __name__ == "__main__":
    guarded(main)
