"""exp54 (§5.4, Table 5): FFG VAEs whose decoders have 0, 2 or 4 hidden layers."""
from dataclasses import dataclass

from common.runs.presets import RunConfig, presets
from common.studies import Results, Study


@dataclass(frozen=True)
class Exp54Config(RunConfig):
    """Table 5: FFG VAEs on MNIST whose decoders have 0, 2 or 4 hidden layers (same encoder)."""
    dataset: str = "mnist"
    decoder_layers: tuple = (0, 2, 4)   # hidden layers of the decoder
    decoder_units: int = 200            # units per decoder hidden layer (ours: as exp52)
    eval_splits: tuple = ("test",)


PRESETS = presets(Exp54Config, quick=dict(n_points=300),
                  # long: the three decoders 300 epochs (the 2-layer one is exp52's long base)
                  long={})


def cost(units, preset, qstar_steps, stacked=False) -> dict:
    """Decoders of other depths counted as the standard one; the 2-layer one is exp52's."""
    from common.speed.costmodel import bdmc_s, eval_s, evaluation, study_cost, train_s
    from common.models.families import GAUSSIAN
    c = PRESETS[preset]
    return {"exp54": study_cost(
        [(f"--decoder-layers {n}", train_s(units, "ffg/standard", c.epochs, c.batch_size))
         for n in c.decoder_layers if n != 2],
        [evaluation(eval_s(units, c, GAUSSIAN, c.n_points, qstar_steps),
                    bdmc_s(units, c, qstar_steps) if i == 0 else 0.0, c.n_points)
         for _ in c.decoder_layers for i, _ in enumerate(c.eval_splits)],
        c.point_chunk)}


STUDY = Study(
    name="exp54", folder="exp54_decoder_size", presets=PRESETS, cost=cost,
    models=lambda preset: {"ffg/standard"},
    results=(Results("exp54_decoder_size", "§5.4 Decoder depth (Table 5)",
                     "A more flexible decoder has a smaller approximation gap for the same FFG "
                     "approximation: the true posterior adapts to the approximation.",
                     ("gaps",)),))
