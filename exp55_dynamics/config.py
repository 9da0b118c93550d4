"""exp55 (§5.5, Figures 3-4): the gaps of five models over training, on training and validation
points (the exp_gradients study reads the same runs)."""
from dataclasses import dataclass

from common.config import ConfigError
from common.runs.presets import RunConfig, presets
from common.studies import Results, Study

MODELS = {  # name: (family, architecture)
    "ffg": ("ffg", "standard"), "flow": ("flow", "standard"), "cflow": ("cflow", "standard"),
    "af": ("af", "standard"),   # the paper's Figure 4 model
    "large_encoder": ("ffg", "large_encoder"), "large_decoder": ("ffg", "large_decoder")}


@dataclass(frozen=True)
class Exp55Config(RunConfig):
    dataset: str = "fashion"
    z_dim: int = 20                  # the paper's Fashion-MNIST dynamics used 20
    family_hidden: tuple = (50,)     # AF's nets: one hidden layer of 50 (the §5.5 size)
    models: tuple = tuple(MODELS)
    eval_epochs: tuple = ()          # checkpoints evaluated; () = log-spaced over training
    qstar_ffg_fit: bool = False      # no flow model's ffg q*: the figure and the claim use each
                                     # model's own-family L[q*] only
    n_eval_epochs: int = 5           # how many log-spaced checkpoints when eval_epochs is ()
    ais_other_path: str = "prior"    # epoch-1 checkpoints: AIS from the prior where BDMC finds it
                                     # closer than from q*
    ais_budget_cap: int = 16         # AIS may double to 16 x ais_steps (quick's large encoder at
                                     # epoch 1: BDMC 0.555 at 8 x from q*)

    def checkpoint_epochs(self) -> tuple:
        if self.eval_epochs:
            return tuple(sorted(set(self.eval_epochs)))
        import numpy as np
        e = np.unique(np.round(np.geomspace(1, self.epochs, self.n_eval_epochs)).astype(int))
        return tuple(int(v) for v in e)

    def validate(self):
        super().validate()
        for m in self.models:
            if m not in MODELS:
                raise ConfigError(f"model {m!r} is not allowed; use: {', '.join(MODELS)}")


PRESETS = presets(Exp55Config, smoke=dict(n_points=16, n_eval_epochs=2),
                  # quick: 3 checkpoints (epochs 1, 5, 30) x 5 models x 2 splits of 100
                  # points, each with its own BDMC and probe on 25 points (a flow model's
                  # checkpoint: 3.3-4 min on 2 cores), 42 min of evaluation (measured)
                  quick=dict(epochs=30, n_points=100, n_eval_epochs=3, bdmc_points=25,
                             qstar_probe_points=25),
                  paper=dict(eval_epochs=(1, 10, 100, 300, 1000, 2000, 3280)),
                  # long: epoch 1 of a 300-epoch run may need 32 x (seed 1's large encoder:
                  # BDMC 1.31 / 0.55 nats at 800 / 1600 steps from q*, 13.5 from the prior at 100)
                  long=dict(ais_budget_cap=32))


def cost(units, preset, qstar_steps, stacked=False) -> dict:
    """Each model's training, then at each kept checkpoint both splits and its BDMC."""
    from common.speed.costmodel import bdmc_s, eval_s, evaluation, study_cost, train_s
    c = PRESETS[preset]
    return {"exp55": study_cost(
        [(f"--models {m}", train_s(units, "/".join(MODELS[m]), c.epochs, c.batch_size))
         for m in c.models],
        [evaluation(eval_s(units, c, MODELS[m][0], c.n_points, qstar_steps),
                    bdmc_s(units, c, qstar_steps, MODELS[m][0]) if split == 0 else 0.0,
                    c.n_points)
         for m in c.models for _ in c.checkpoint_epochs() for split in range(2)],
        c.point_chunk)}


STUDY = Study(
    name="exp55", folder="exp55_dynamics", presets=PRESETS, cost=cost,
    models=lambda preset: {"/".join(MODELS[m]) for m in PRESETS[preset].models},
    results=(Results("exp55_dynamics", "§5.5 Gaps over training, train vs validation",
                     "The approximation gap is similar on train and validation; the amortization "
                     "gap grows on validation for the large encoder.", ("dynamics",)),))
