"""Train exp66's FFG and Flow VAEs on a seeded random subset of 1000 MNIST training points
(indices saved to the run folder's subset.json), keeping checkpoints at log-spaced epochs."""
import torch

from common.config import guarded, read_json, write_json
from common.runs.experiment import Experiment, train_or_load


def subset(exp: Experiment) -> torch.Tensor:
    """The training points' indices: seeded, the same for every family and rerun."""
    n = exp.train_data(exp.config.dataset).shape[0]
    g = torch.Generator().manual_seed(exp.config.subset_seed)
    return torch.randperm(n, generator=g)[:exp.config.n_small]


def run_dir(exp: Experiment, family: str):
    return exp.runs / f"{exp.config.dataset}_{family}"


def main(argv=None):
    exp = Experiment("exp66", argv, __doc__, stage="train")
    cfg = exp.config
    idx = subset(exp)
    x_train = exp.train_data(cfg.dataset)[idx.to(exp.device)]
    x_valid = exp.data(cfg.dataset, "valid")
    for family in cfg.families:
        path = run_dir(exp, family)
        path.mkdir(parents=True, exist_ok=True)
        saved = path / "subset.json"
        if saved.exists() and read_json(saved, f"delete {path} to retrain it") != idx.tolist():
            raise SystemExit(f"error: {saved} holds another subset; delete {path} to retrain")
        write_json(saved, idx.tolist())
        train_or_load(path, cfg.model_config(family), cfg.train_config(
            n_train=0, checkpoint_epochs=cfg.checkpoint_epochs()), x_train, x_valid, exp.seed,
            exp.device, label=f"{cfg.dataset}/{family} on {len(idx)} points",
            data=exp.data_identity(cfg.dataset))
    exp.write_provenance("train_provenance.json")


if __name__ == "__main__":
    guarded(main)
