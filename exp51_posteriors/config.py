"""exp51 (Figure 2): the 2-D VAE, its true posteriors on a grid and the optimal FFG and flow q*."""
from dataclasses import dataclass

from common.config import ConfigError
from common.runs.presets import RunConfig, presets
from common.studies import Results, Study


@dataclass(frozen=True)
class Exp51Config(RunConfig):
    """The 2-D VAE of Figure 2 (appendix 6.1.1: decoder 2-100-784, encoder 784-100-4, tanh,
    batch 50, Adam lr 1e-4, 3000 epochs) and the true posterior on a grid."""
    z_dim: int = 2
    activation: str = "tanh"
    batch_size: int = 50
    lr: float = 1e-3                 # lr of the schedule's first stage (paper: 1e-4, constant)
    constant_lr: bool = False        # paper: True
    n_candidates: int = 200          # training points among which the four are chosen
    grid_size: int = 81              # coarse grid over [-grid_radius, grid_radius]^2 (locates p(z|x))
    fine_grid: int = 161             # per-point grid over the posterior's +-window_sds s.d.
    grid_radius: float = 6.0
    window_sds: float = 6.0

    def validate(self):
        super().validate()
        if self.z_dim != 2:
            raise ConfigError(f"--z-dim={self.z_dim} is not allowed: exp51 draws 2-D posteriors")


PRESETS = presets(Exp51Config,
                  smoke=dict(n_candidates=12, grid_size=41, fine_grid=61),
                  quick=dict(epochs=30, n_candidates=200, qstar_probe_points=50),
                  paper=dict(epochs=3000, lr=1e-4, constant_lr=True, n_candidates=1000,
                             fine_grid=301))


def cost(units, preset, qstar_steps, stacked=False) -> dict:
    """Grids are seconds; the q* fits (two FFG starts and a flow, by design) dominate."""
    from common.speed.costmodel import eval_s, evaluation, study_cost, train_s
    c = PRESETS[preset]
    return {"exp51": study_cost(
        [("", train_s(units, "ffg/exp51", c.epochs, c.batch_size))],
        [evaluation(eval_s(units, c, "flow", c.n_candidates, qstar_steps), 0.0, c.n_candidates)],
        c.point_chunk, shardable=False)}


STUDY = Study(
    name="exp51", folder="exp51_posteriors", presets=PRESETS, cost=cost,
    models=lambda preset: {"ffg/exp51"},
    results=(Results("exp51_posteriors",
                     "§5.1 True and approximate posteriors of a 2-D VAE (Figure 2)",
                     "The true posterior is often correlated or non-Gaussian; the optimal flow fits "
                     "it better than the optimal FFG, which fits it better than the amortised FFG.",
                     ("posteriors",)),))
