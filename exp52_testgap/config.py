"""exp52 (§5.2, Tables 2 and 3): test-set inference gaps of every family on MNIST and
Fashion-MNIST, and Table 3's variants on a training subset."""
import dataclasses
from dataclasses import dataclass

from common.config import ConfigError
from common.runs.presets import RunConfig, presets
from common.studies import Results, Study

# Table 3's variants (the paper's 6.1.2 / Table 3, on the training set): what each one changes;
# a flag given on the command line wins over its variant's value
VARIANTS = {
    "standard": {},
    "large_encoder": dict(enc_hidden=(500, 500), families=("ffg", "flow"), eval_splits=("train",)),
    "no_annealing": dict(warmup_epochs=0, families=("ffg", "flow"), eval_splits=("train",)),
}


@dataclass(frozen=True)
class Exp52Config(RunConfig):
    datasets: tuple = ("mnist", "fashion")
    families: tuple = ("ffg", "flow", "cflow", "af")   # af: the paper's Table 2 flow
    eval_splits: tuple = ("test", "train")  # test points, and a training subset of the same size
    train_split_families: tuple = ("ffg", "flow")  # families evaluated on the training subset:
                                     # Table 3's (the paper has no cflow there; it would add two
                                     # flow-q* evaluations, about 13 min at quick)
    enc_hidden: tuple = (200, 200)   # encoder trunk of every family (Table 3 left: 500, 500)
    variant: str = "standard"        # standard | large_encoder | no_annealing (Table 3);
                                     # results go to exp52_testgap_<variant>/
    stack: str = "auto"              # train one family's models of every dataset as ONE batched
                                     # computation (common/runs/stacked.py): on | off | auto (on a
                                     # GPU)
    train_points: int = 0            # points of the training-split evaluation (Table 3, the
                                     # standard models and the variants alike; 0: n_points)
    af_points: int = 0               # test points of the AF models (0: n_points); their q*
                                     # optimises ~150k parameters per point, 3.6-4.2x a flow's
                                     # time per point (quick: 150, the first 150 of the 500)
    seeds: tuple = ()                # train step: train these seeds' runs too, stacked with
                                     # --stack on (make's SEEDS=); () = --seed alone

    def stacks(self, device) -> bool:
        return self.stack == "on" or (self.stack == "auto" and device.type == "cuda")

    def variant_overrides(self) -> dict:
        if self.stack not in ("on", "off", "auto"):
            raise ConfigError(f"--stack={self.stack} is not allowed; use on, off or auto")
        if self.variant not in VARIANTS:
            raise ConfigError(f"VARIANT={self.variant} is not allowed; use one of: "
                              f"{', '.join(VARIANTS)}")
        return VARIANTS[self.variant]

    def points(self, split: str, family: str = None) -> int:
        """Evaluation points of a split (and family): the first n of it."""
        if split == "train":
            return self.train_points or self.n_points
        return (self.af_points or self.n_points) if family == "af" else self.n_points


# quick: Table 3 (training split: the standard ffg and flow models and both variants) on 250
# points; a flow model's evaluation on 500 takes about 7 min on 2 cores, and 500 would add
# ~25 min to make all for paired comparisons whose s.e. were a fifth of the differences.
# AF on the first 150 test points: on 500 its evaluation took 23 and 26 min (MNIST, Fashion;
# the timed run of 2c63564), half of exp52's 85 min, and kept make all above 90 min; its gaps'
# s.e. grow by sqrt(500/150) = 1.8x (0.09 -> ~0.17 nats on MNIST's amortization gap). BDMC on
# 25 simulated points (each a q* fit, then forward and reverse AIS): its gaps on 50 were -0.03
# to 0.11 nats for ffg, flow and cflow, far inside the 0.5-nat target
PRESETS = presets(Exp52Config, quick=dict(train_points=250, af_points=150, bdmc_points=25),
                  paper=dict(n_points=1000), long={})


def _evaluations(units, c, family, qstar_steps) -> list:
    """One model's evaluations, as the evaluate step makes them: every split it is evaluated on
    (the training split: Table 3's families, on c.points("train")), its decoder's BDMC with the
    first (common/speed/costmodel.py: evaluation)."""
    from common.speed.costmodel import bdmc_s, eval_s, evaluation
    splits = [s for s in c.eval_splits if s != "train" or family in c.train_split_families]
    return [evaluation(eval_s(units, c, family, c.points(s, family), qstar_steps),
                       bdmc_s(units, c, qstar_steps, family) if i == 0 else 0.0,
                       c.points(s, family)) for i, s in enumerate(splits)]


def cost(units, preset, qstar_steps, stacked=False) -> dict:
    """The standard models and each variant (as exp52's units: the 500-500 trunk costs a
    little more); stacked: one family's models of both data sets as one computation."""
    from common.speed.costmodel import study_cost, train_s
    out = {}
    for variant, overrides in VARIANTS.items():
        c = dataclasses.replace(PRESETS[preset], **overrides)
        stack = stacked and len(c.datasets) > 1
        # a training job per family (its data sets stacked or one after the other)
        parts = [(f"--families {f}", sum(train_s(units, f"{f}/standard", c.epochs, c.batch_size,
                                                 stacked=stack) for _ in c.datasets))
                 for f in c.families]
        out["exp52" + ("" if variant == "standard" else f"_{variant}")] = study_cost(
            parts, [e for _ in c.datasets for f in c.families
                    for e in _evaluations(units, c, f, qstar_steps)], c.point_chunk)
    return out


STUDY = Study(
    name="exp52", folder="exp52_testgap", presets=PRESETS, cost=cost, variants=VARIANTS,
    models=lambda preset: {f"{f}/standard" for f in PRESETS[preset].families},
    results=(
        Results("exp52_testgap", "§5.2 Test-set inference gaps (MNIST, Fashion-MNIST)",
                "The amortization gap dominates for ffg; flows reduce the gaps, more on "
                "Fashion-MNIST.", ("gaps",)),
        Results("exp52_testgap_large_encoder",
                "Table 3 (left): exp52 with a 500-500 encoder, training set",
                "A larger encoder mainly shrinks the amortization gap.", ("gaps",),
                "large_encoder"),
        Results("exp52_testgap_no_annealing",
                "Table 3 (right): exp52 without entropy annealing, training set",
                "Without annealing the true posterior is more Gaussian: L[q*_FFG] close to "
                "L[q*_flow] for flow models.", ("gaps",), "no_annealing")))
