"""Nothing is retrained here: this makes sure the exp55 runs (whose trainer logged the gradient
norms in metrics.csv) exist, training them if they are missing."""
from common.config import guarded
from common.runs.experiment import Experiment
from exp55_dynamics.train import train_dynamics_models


def main(argv=None):
    exp = Experiment("exp_gradients", argv, __doc__, stage="train")
    train_dynamics_models(exp)


if __name__ == "__main__":
    guarded(main)
