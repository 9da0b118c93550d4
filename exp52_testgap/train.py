"""Train one VAE per dataset x family (same decoder, same encoder trunk). Resumes; skips finished
runs. With --stack (default on a GPU) the datasets' models of one family train as one batched
computation; with --seeds 0,1,2 (SEEDS= in make) every seed's runs too (each in its own
runs/<preset>-seed<k>/ folder), stacked over datasets and seeds."""
from common.config import guarded
from common.runs.experiment import Experiment, train_many


def run_dir(exp: Experiment, dataset: str, family: str):
    return exp.runs / f"{dataset}_{family}"


def seed_runs(exp: Experiment, seed: int):
    """The runs folder of another seed of the same preset and length."""
    return exp.runs.with_name(exp.runs.name.rsplit("-seed", 1)[0] + f"-seed{seed}")


def main(argv=None):
    exp = Experiment("exp52", argv, __doc__, stage="train")
    cfg = exp.config
    x_train = {d: exp.train_data(d) for d in cfg.datasets}
    x_valid = {d: exp.data(d, "valid") for d in cfg.datasets}
    seeds = list(cfg.seeds) or [exp.seed]
    pairs = [(d, s) for s in seeds for d in cfg.datasets]
    for family in cfg.families:   # one family on every dataset and seed: one architecture
        train_many([seed_runs(exp, s) / f"{d}_{family}" for d, s in pairs],
                   cfg.model_config(family), cfg.train_config(), [x_train[d] for d, _ in pairs],
                   [x_valid[d] for d, _ in pairs], [s for _, s in pairs], exp.device,
                   [f"{d}/{family}" + (f" seed {s}" if len(seeds) > 1 else "") for d, s in pairs],
                   cfg.stacks(exp.device), [exp.data_identity(d) for d, _ in pairs])
    exp.write_provenance("train_provenance.json")


if __name__ == "__main__":
    guarded(main)
