"""exp53 (§5.3, Table 4): small encoders of every family trained on exp52's frozen ffg decoder."""
from dataclasses import dataclass

from common.config import ConfigError
from common.runs.presets import RunConfig, presets
from common.studies import Results, Study


@dataclass(frozen=True)
class Exp53Config(RunConfig):
    dataset: str = "mnist"
    families: tuple = ("ffg", "flow", "cflow")
    # encoder trunks trained on the frozen decoder: one hidden layer of 100, and none (the
    # paper's Table 4: linear encoders)
    encoders: tuple = ("small_encoder", "linear_encoder")
    base_epochs: int = 30            # epochs of the base ffg VAE whose decoder is frozen
                                     # (0: as many as the encoders', the long preset's rule)
    eval_splits: tuple = ("test", "train")
    stop_patience: int = 0           # P > 0: an encoder stops once its validation ELBO stops
                                     # improving (the mean of its last P epochs no higher than
                                     # of the P before; common/runs/train.plateaued), at most
                                     # `epochs`; 0: every epoch (long: 20, fixed before any run)

    def validate(self):
        super().validate()
        if self.stop_patience and not self.n_valid_monitor:
            raise ConfigError("--stop-patience needs the validation monitor: set "
                              "--n-valid-monitor to a number of points >= 1, e.g. 1000")
        for e in self.encoders:
            if e not in ("small_encoder", "linear_encoder"):
                raise ConfigError(f"--encoders={e} is not allowed; use small_encoder, "
                                  f"linear_encoder or both")


PRESETS = presets(Exp53Config, smoke=dict(base_epochs=2),
                  # quick: six encoders share one decoder and its q* (fitted once per family);
                  # the flow q* on this ffg-trained decoder needs a longer rule than exp52's to
                  # converge (with the former constant lr 1e-3: at 4000 steps / patience 3 28%
                  # capped, probe +0.135; at 12000 / patience 6 none capped, probe +0.061)
                  quick=dict(epochs=30, base_epochs=30, n_points=200, eval_splits=("test",),
                             qstar_max_steps=12_000, qstar_patience=3),
                  # long: the encoders on the 300-epoch decoder, each until its validation
                  # bound stops improving (at most 300 epochs)
                  paper=dict(base_epochs=3280), long=dict(base_epochs=0, stop_patience=20))


def cost(units, preset, qstar_steps, stacked=False) -> dict:
    """The base decoder is exp52's; per split: L[q] of every encoder, q* of each family ONCE
    (SharedQstar), AIS once; one BDMC."""
    from common.speed.costmodel import (ais_s, bdmc_s, evaluation, fits_of, qstar_s,
                                        study_cost, train_s)
    c = PRESETS[preset]
    shared = sorted({f for fam in c.families for f in fits_of(fam, c)})
    per_split = len(c.encoders) * len(c.families) * c.n_points * c.k_eval * units["iwae_row"] \
        + qstar_s(units, c, shared, c.n_points, qstar_steps, shared=True) \
        + ais_s(units, c, c.n_points)
    return {"exp53": study_cost(
        [(f"--families {f}", sum(train_s(units, f"{f}/{e}", c.epochs, c.batch_size)
                                 for e in c.encoders)) for f in c.families],
        [evaluation(per_split, bdmc_s(units, c, qstar_steps, c.families[0]) if i == 0 else 0.0,
                    c.n_points) for i, _ in enumerate(c.eval_splits)],
        c.point_chunk)}


STUDY = Study(
    name="exp53", folder="exp53_frozen_decoder", presets=PRESETS, cost=cost,
    models=lambda preset: {f"{f}/{e}" for e in PRESETS[preset].encoders
                           for f in PRESETS[preset].families},
    results=(Results("exp53_frozen_decoder", "§5.3 Frozen decoder, small encoders per family",
                     "With the decoder (so p(z|x)) fixed, flows reduce the amortization gap at "
                     "equal trunk size.", ("gaps",)),))
