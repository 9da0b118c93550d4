"""Train one VAE per dataset x family (same decoder, same encoder trunk). Resumes; skips finished
runs. With --stack (default on a GPU) the datasets' models of one family train as one batched
computation."""
from common.config import guarded
from common.experiment import Experiment, train_many


def run_dir(exp: Experiment, dataset: str, family: str):
    return exp.runs / f"{dataset}_{family}"


def main(argv=None):
    exp = Experiment("exp52", argv, __doc__, stage="train")
    cfg = exp.config
    x_train = {d: exp.train_data(d) for d in cfg.datasets}
    x_valid = {d: exp.data(d, "valid") for d in cfg.datasets}
    for family in cfg.families:   # one family on every dataset: one architecture, may stack
        train_many([run_dir(exp, d, family) for d in cfg.datasets], cfg.model_config(family),
                   cfg.train_config(), [x_train[d] for d in cfg.datasets],
                   [x_valid[d] for d in cfg.datasets], exp.seed, exp.device,
                   [f"{d}/{family}" for d in cfg.datasets], cfg.stacks(exp.device))
    exp.write_provenance("train_provenance.json")


if __name__ == "__main__":
    guarded(main)
