"""Train the five exp55 models (ffg, flow, cflow, ffg with a large encoder, ffg with a large
decoder; same activation everywhere), keeping checkpoints at log-spaced epochs."""
from common.config import guarded
from common.experiment import Experiment, train_dynamics_models

FOLDER = "exp55_dynamics"


def main(argv=None):
    exp = Experiment("exp55", FOLDER, argv, __doc__, stage="train")
    train_dynamics_models(exp)
    exp.write_provenance("train_provenance.json")


if __name__ == "__main__":
    guarded(main)
