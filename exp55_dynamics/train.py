"""Train the exp55 models (ffg, flow, cflow, ffg with a large encoder, ffg with a large
decoder; same activation everywhere), keeping checkpoints at log-spaced epochs. exp_gradients
reads the same runs."""
from pathlib import Path

from common.config import guarded, results_dir
from common.runs.experiment import Experiment, run_tag, train_or_load

from .config import MODELS

FOLDER = "exp55_dynamics"


def dynamics_run_dir(exp: Experiment, model_name: str) -> Path:
    """A model's run folder (exp55's own, whichever study asks: exp_gradients reads it too)."""
    return results_dir() / FOLDER / "runs" / \
        run_tag("exp55", exp.preset, exp.config.epochs, exp.seed) / \
        f"{exp.config.dataset}_{model_name}"


def train_dynamics_models(exp: Experiment) -> dict:
    """exp55's models, with checkpoints at the evaluated epochs. {model name: run folder}."""
    cfg = exp.config
    x_train, x_valid = exp.train_data(cfg.dataset), exp.data(cfg.dataset, "valid")
    dirs = {}
    for name in cfg.models:
        family, architecture = MODELS[name]
        dirs[name] = dynamics_run_dir(exp, name)
        train_or_load(dirs[name], cfg.model_config(family, architecture),
                      cfg.train_config(checkpoint_epochs=cfg.checkpoint_epochs()), x_train,
                      x_valid, exp.seed, exp.device, label=f"{cfg.dataset}/{name}",
                      data=exp.data_identity(cfg.dataset))
    return dirs


def main(argv=None):
    exp = Experiment("exp55", argv, __doc__, stage="train")
    train_dynamics_models(exp)
    exp.write_provenance("train_provenance.json")


if __name__ == "__main__":
    guarded(main)
