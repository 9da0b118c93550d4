"""exp_refit: the encoder of exp52's MNIST ffg VAE refit on images with flipped pixels."""
from dataclasses import dataclass

from common.config import ConfigError
from common.runs.presets import RunConfig, presets
from common.studies import Results, Study


@dataclass(frozen=True)
class RefitConfig(RunConfig):
    noise: tuple = (10, 50, 100)     # flipped pixels per image
    refit_epochs: int = 200          # brief's repository: 200
    refit_lr: float = 1e-4           # Adam lr of the refit (brief's repository)
    refit_batch: int = 64
    eval_every: int = 5              # IWAE and L[q] on A and B every ... epochs
    iwae_k: int = 50                 # IWAE samples (brief's repository: 50)
    n_refit: int = 10000             # size of set A (valid) and of set B (test)
    n_curve_points: int = 1000       # points of A and B on which the curves are measured
    qstar_points: int = 200          # points of A and B for L[q*] before and after
    corruption_seed: int = 2018      # seed of the flipped pixels (A and B reproducible)

    def validate(self):
        super().validate()
        if self.refit_epochs % self.eval_every:
            raise ConfigError(f"--refit-epochs={self.refit_epochs} is not a multiple of "
                              f"--eval-every={self.eval_every}; make it one so the curve ends "
                              f"at the last epoch")
        for n in self.noise:
            if not isinstance(n, int) or not 0 <= n <= 784:
                raise ConfigError(f"NOISE={n} is not allowed; use whole numbers in [0, 784]")


PRESETS = presets(RefitConfig,
                  smoke=dict(noise=(10,), refit_epochs=2, eval_every=1, n_refit=200,
                             n_curve_points=50, qstar_points=16, iwae_k=8),
                  quick=dict(refit_epochs=100, eval_every=5, n_refit=10000,
                             n_curve_points=1000, qstar_points=200),
                  paper=dict(refit_epochs=200, n_refit=10000, n_curve_points=10000,
                             qstar_points=1000),
                  # long: quick's refit (100 epochs) of exp52's 300-epoch base
                  long={})

REFIT_SIZE = 10_000   # set A (the corrupted validation split)


def cost(units, preset, qstar_steps, stacked=False) -> dict:
    """Per noise level: the encoder refit, the IWAE curves on A and B, and L[q*] before and
    after on both."""
    from common.speed.costmodel import eval_s, evaluation, study_cost, train_s
    from common.models.families import GAUSSIAN
    c = PRESETS[preset]
    curve_rows = 2 * c.n_curve_points * c.iwae_k * (c.refit_epochs // c.eval_every + 1)
    return {"exp_refit": study_cost(
        [("", len(c.noise) * train_s(units, "ffg/standard", c.refit_epochs, c.refit_batch,
                                     REFIT_SIZE))],
        [evaluation(curve_rows * units["iwae_row"]
                    + 2 * 2 * eval_s(units, c, GAUSSIAN, c.qstar_points, qstar_steps),
                    0.0, c.qstar_points) for _ in c.noise],
        c.point_chunk, shardable=False)}


STUDY = Study(
    name="exp_refit", folder="exp_refit", presets=PRESETS, cost=cost,
    models=lambda preset: {"ffg/standard"},
    results=(Results("exp_refit", "Encoder refitting under pixel-flip noise",
                     "IWAE first rises on both A and B, then mostly on A.", ("refit",)),))
