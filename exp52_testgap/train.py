"""Train one VAE per dataset x family (same decoder, same encoder trunk). Resumes; skips finished runs."""
from common.config import guarded
from common.experiment import Experiment, train_or_load

FOLDER = "exp52_testgap"


def run_dir(exp: Experiment, dataset: str, family: str):
    return exp.runs / f"{dataset}_{family}"


def main(argv=None):
    exp = Experiment("exp52", FOLDER, argv, __doc__, stage="train")
    cfg = exp.config
    for dataset in cfg.datasets:
        x_train, x_valid = exp.train_data(dataset), exp.data(dataset, "valid")
        for family in cfg.families:
            train_or_load(run_dir(exp, dataset, family), cfg.model_config(family),
                          cfg.train_config(), x_train, x_valid, exp.seed, exp.device,
                          label=f"{dataset}/{family}")
    exp.write_provenance("train_provenance.json")


if __name__ == "__main__":
    guarded(main)
