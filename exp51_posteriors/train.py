"""Train the 2-D MNIST VAE of Figure 2 (ffg encoder 784-100-4, decoder 2-100-784, tanh)."""
from common.config import guarded
from common.runs.experiment import Experiment, train_or_load


def run_dir(exp: Experiment):
    return exp.runs / "mnist_ffg_2d"


def main(argv=None):
    exp = Experiment("exp51", argv, __doc__, stage="train")
    cfg = exp.config
    train_or_load(run_dir(exp), cfg.model_config("ffg", "exp51"), cfg.train_config(),
                  exp.train_data("mnist"), exp.data("mnist", "valid"), exp.seed, exp.device,
                  label="mnist/ffg 2-D", data=exp.data_identity("mnist"))
    exp.write_provenance("train_provenance.json")


if __name__ == "__main__":
    guarded(main)
