"""Every experiment's presets, in one place. A preset is a frozen dataclass; any field can be
overridden from the command line (`--n-points 200`, `--families ffg,flow`).

smoke: end to end in well under 2 minutes on 2 CPU cores (tiny slices); what the tests run.
quick: real, meaningful numbers on real data on a 2-core CPU (see each experiment's README).
paper: the paper's settings (3280 epochs, 1000 points, AIS with 100 chains), meant for a GPU.
long: quick's certified estimators on models trained 300 epochs (the studies whose models train
      on the full data: exp52, exp53, exp55); `--epochs 100` gives another length of the ladder.
"""
import math
from dataclasses import dataclass, fields

from .config import ConfigError
from .data import DATASETS
from .gaps import AIS_PROPOSALS, PROBE_MODES, EvalConfig
from .families import FAMILIES
from .train import TrainConfig
from .vae import ModelConfig, model_config


# fields only evaluation scripts take (a train script has no flag for them)
EVAL_ONLY = tuple(f.name for f in fields(EvalConfig)) + ("eval_splits", "train_split_families",
                                                         "train_points", "qstar_points")

# whole-number fields where 0 means "all" or "none"; every other one must be >= 1
MAY_BE_ZERO = {"warmup_fraction", "n_points", "n_train", "n_valid_monitor", "warmup_epochs", "ais_warmup",
               "qstar_probe_points", "bdmc_points", "corruption_seed", "train_points"}


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


@dataclass(frozen=True)
class RunConfig(EvalConfig):
    epochs: int = 30                # training epochs (paper: 3280, the whole IWAE schedule)
    batch_size: int = 100           # paper: 100
    warmup_epochs: int = 5          # entropy warm-up (paper: 400, appendix 6.1.2)
    warmup_fraction: float = 0.0    # > 0: the warm-up is this share of the epochs (rounded),
                                    # in place of warmup_epochs (long: 1/6, as quick's 5 of 30)
    n_train: int = 0                # training points used, 0 = all 50k
    n_valid_monitor: int = 1000     # validation points for the per-epoch ELBO in metrics.csv
    dynamic_binarisation: bool = False  # train on fresh Bernoulli bits each batch (evaluation
                                        # always uses the static bits)
    compile: bool = False           # torch.compile the training step (CUDA graphs on a GPU);
                                    # not measured on a GPU yet, so off by default
    z_dim: int = 50                 # latent size (paper: 50 on MNIST)
    activation: str = "elu"         # the same for every model
    flow_steps: int = 2             # coupling steps of flow / cflow
    flow_hidden: int = 50           # hidden units per coupling net
    context_dim: int = 20           # cflow context size
    family_hidden: tuple = ()       # hidden layers of a family's own nets (AF's); () = default

    def train_config(self, **overrides) -> TrainConfig:
        """The training part of this config: every TrainConfig field this config has."""
        mine = {f.name for f in fields(self)}
        shared = {f.name: getattr(self, f.name) for f in fields(TrainConfig) if f.name in mine}
        if self.warmup_fraction:
            shared["warmup_epochs"] = round(self.warmup_fraction * self.epochs)
        return TrainConfig(**{**shared, **overrides})

    def model_config(self, family: str, architecture: str = "standard"):
        """The model part: every ModelConfig field this config has, on an architecture."""
        mine = {f.name for f in fields(self)}   # enc_hidden / dec_hidden, if set, override the
        shared = {f.name: getattr(self, f.name) for f in fields(ModelConfig) if f.name in mine}
        return model_config(architecture, **{**shared, "family": family})

    def validate(self) -> None:
        """Every field range-checked in one place: a bad value is one line, exit 2."""
        for field in fields(self):
            name, value, flag = field.name, getattr(self, field.name), _flag(field.name)
            if isinstance(value, bool) or not isinstance(value, (int, float, tuple)):
                continue
            if isinstance(value, float) and not (math.isfinite(value) and (
                    value > 0 or (value == 0 and name in MAY_BE_ZERO))):
                raise ConfigError(f"{flag}={value} is not allowed; use a finite number "
                                  f"{'>= 0' if name in MAY_BE_ZERO else '> 0'}")
            if isinstance(value, int) and value < (0 if name in MAY_BE_ZERO else 1):
                raise ConfigError(f"{flag}={value} is not allowed; use a whole number >= "
                                  f"{0 if name in MAY_BE_ZERO else 1}")
            if isinstance(value, tuple) and name.endswith("_hidden") and \
                    any(not isinstance(v, int) or v < 1 for v in value):
                raise ConfigError(f"{flag}={','.join(map(str, value))} is not allowed; use "
                                  f"layer sizes >= 1, e.g. 500,500")
            if isinstance(value, tuple) and not name.endswith("_hidden") and \
                    len(set(value)) != len(value):   # layer sizes may repeat; selections not
                raise ConfigError(f"{flag}={','.join(map(str, value))} lists a value twice; "
                                  f"give each once")
        if self.warmup_fraction > 1:
            raise ConfigError(f"--warmup-fraction={self.warmup_fraction} is not allowed; use a "
                              f"share of the epochs in [0, 1]")
        if self.qstar_probe_mode not in PROBE_MODES:
            raise ConfigError(f"--qstar-probe-mode={self.qstar_probe_mode} is not allowed; use "
                              f"one of: {', '.join(PROBE_MODES)}")
        if self.ais_proposal not in AIS_PROPOSALS:
            raise ConfigError(f"--ais-proposal={self.ais_proposal} is not allowed; use one of: "
                              f"{', '.join(AIS_PROPOSALS)}")
        for name in ("families", "train_split_families"):
            for f in getattr(self, name, ()):
                if f not in FAMILIES:
                    raise ConfigError(f"family {f!r} is not allowed; use: {', '.join(FAMILIES)}")
        for d in tuple(getattr(self, "datasets", ())) + ((self.dataset,) if hasattr(self, "dataset")
                                                          else ()):
            if d not in DATASETS:
                raise ConfigError(f"DATASET={d} is not allowed; use one of: {', '.join(DATASETS)}")


# evaluation and training sizes shared by the smoke presets of every experiment
SMOKE = dict(epochs=2, warmup_epochs=1, n_train=1000, n_valid_monitor=100, n_points=24,
             k_eval=64, qstar_samples=4, qstar_lr=1e-2, qstar_check_every=10, qstar_patience=1,
             qstar_max_steps=40, ais_chains=2, ais_steps=10, ais_leapfrog=2, ais_warmup=3,
             bdmc_points=8, qstar_probe_points=8)
QUICK = dict(epochs=30, warmup_epochs=5, n_points=500, k_eval=1000, qstar_samples=10,
             qstar_lr=1e-3, qstar_check_every=100, qstar_patience=3, qstar_max_steps=4000,
             ais_chains=4, ais_steps=100, ais_leapfrog=5, ais_init_step=0.3, ais_warmup=20,
             ais_proposal="qstar", bdmc_points=50, qstar_probe_points=50)
# long: quick's estimators, 300 epochs under quick's rule (the paper's eight learning rates in
# equal stages of 37.5 epochs), the entropy warm-up scaled with the length as quick's 5 of 30
# (a sixth: 50 epochs at 300, 17 at 100; the paper: 400 of 3280, an eighth)
LONG = dict(QUICK, epochs=300, warmup_fraction=1 / 6)
PAPER = dict(epochs=3280, warmup_epochs=400,  # entropy warm-up: the paper's 6.1.2 says 400
             n_points=1000, k_eval=5000, qstar_samples=50,
             qstar_lr=1e-3, qstar_check_every=100, qstar_patience=10, qstar_max_steps=100_000,
             qstar_warm_start=False, ais_chains=100, ais_steps=5000, ais_leapfrog=10,
             ais_init_step=0.01, ais_proposal="prior", ais_warmup=0, bdmc_points=100,
             qstar_probe_points=100)


# exp52's Table-3 variants (the paper's 6.1.2 / Table 3, on the training set): what each one
# changes; a flag given on the command line wins over its variant's value
EXP52_VARIANTS = {
    "standard": {},
    "large_encoder": dict(enc_hidden=(500, 500), families=("ffg", "flow"), eval_splits=("train",)),
    "no_annealing": dict(warmup_epochs=0, families=("ffg", "flow"), eval_splits=("train",)),
}


@dataclass(frozen=True)
class Exp52Config(RunConfig):
    datasets: tuple = ("mnist", "fashion")
    families: tuple = ("ffg", "flow", "cflow")
    eval_splits: tuple = ("test", "train")  # test points, and a training subset of the same size
    train_split_families: tuple = ("ffg", "flow")  # families evaluated on the training subset:
                                     # Table 3's (the paper has no cflow there; it would add two
                                     # flow-q* evaluations, about 13 min at quick)
    enc_hidden: tuple = (200, 200)   # encoder trunk of every family (Table 3 left: 500, 500)
    variant: str = "standard"        # standard | large_encoder | no_annealing (Table 3);
                                     # results go to exp52_testgap_<variant>/
    stack: str = "auto"              # train one family's models of every dataset as ONE batched
                                     # computation (common/stacked.py): on | off | auto (on a GPU)
    train_points: int = 0            # points of the training-split evaluation (Table 3, the
                                     # standard models and the variants alike; 0: n_points)

    def stacks(self, device) -> bool:
        return self.stack == "on" or (self.stack == "auto" and device.type == "cuda")

    def variant_overrides(self) -> dict:
        if self.stack not in ("on", "off", "auto"):
            raise ConfigError(f"--stack={self.stack} is not allowed; use on, off or auto")
        if self.variant not in EXP52_VARIANTS:
            raise ConfigError(f"VARIANT={self.variant} is not allowed; use one of: "
                              f"{', '.join(EXP52_VARIANTS)}")
        return EXP52_VARIANTS[self.variant]

    def points(self, split: str) -> int:
        """Evaluation points of a split: the first n of it."""
        return (self.train_points or self.n_points) if split == "train" else self.n_points


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

    def validate(self):
        super().validate()
        for e in self.encoders:
            if e not in ("small_encoder", "linear_encoder"):
                raise ConfigError(f"--encoders={e} is not allowed; use small_encoder, "
                                  f"linear_encoder or both")


EXP55_MODELS = {  # name: (family, architecture)
    "ffg": ("ffg", "standard"), "flow": ("flow", "standard"), "cflow": ("cflow", "standard"),
    "large_encoder": ("ffg", "large_encoder"), "large_decoder": ("ffg", "large_decoder")}


@dataclass(frozen=True)
class Exp55Config(RunConfig):
    dataset: str = "fashion"
    z_dim: int = 20                  # the paper's Fashion-MNIST dynamics used 20
    models: tuple = tuple(EXP55_MODELS)
    eval_epochs: tuple = ()          # checkpoints evaluated; () = log-spaced over training
    qstar_ffg_fit: bool = False      # no flow model's ffg q*: the figure and the claim use each
                                     # model's own-family L[q*] only
    n_eval_epochs: int = 5           # how many log-spaced checkpoints when eval_epochs is ()

    def checkpoint_epochs(self) -> tuple:
        if self.eval_epochs:
            return tuple(sorted(set(self.eval_epochs)))
        import numpy as np
        e = np.unique(np.round(np.geomspace(1, self.epochs, self.n_eval_epochs)).astype(int))
        return tuple(int(v) for v in e)

    def validate(self):
        super().validate()
        for m in self.models:
            if m not in EXP55_MODELS:
                raise ConfigError(f"model {m!r} is not allowed; use: {', '.join(EXP55_MODELS)}")


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


@dataclass(frozen=True)
class Exp54Config(RunConfig):
    """Table 5: FFG VAEs on MNIST whose decoders have 0, 2 or 4 hidden layers (same encoder)."""
    dataset: str = "mnist"
    decoder_layers: tuple = (0, 2, 4)   # hidden layers of the decoder
    decoder_units: int = 200            # units per decoder hidden layer (ours: as exp52)
    eval_splits: tuple = ("test",)

    def validate(self):
        super().validate()
        if any(not isinstance(n, int) or n < 0 for n in self.decoder_layers):
            raise ConfigError(f"--decoder-layers={self.decoder_layers} is not allowed; use "
                              f"whole numbers >= 0, e.g. 0,2,4")


def _presets(cls, smoke=None, quick=None, paper=None, long=None):
    """A study's presets; `long` (a dict, {} for quick's own values) only for the studies that
    have one: it starts from quick's values and this study's quick overrides."""
    out = {"smoke": cls(**{**SMOKE, **(smoke or {})}), "quick": cls(**{**QUICK, **(quick or {})}),
           "paper": cls(**{**PAPER, **(paper or {})})}
    if long is not None:
        out["long"] = cls(**{**LONG, **(quick or {}), "epochs": LONG["epochs"], **long})
    return out


PRESETS = {
    "exp51": _presets(Exp51Config,
                      smoke=dict(n_candidates=12, grid_size=41, fine_grid=61),
                      quick=dict(epochs=30, n_candidates=200, qstar_probe_points=50),
                      paper=dict(epochs=3000, lr=1e-4, constant_lr=True, n_candidates=1000,
                                 fine_grid=301)),
    # quick: Table 3 (training split: the standard ffg and flow models and both variants) on 250
    # points; a flow model's evaluation on 500 takes about 7 min on 2 cores, and 500 would add
    # ~25 min to make all for paired comparisons whose s.e. were a fifth of the differences
    "exp52": _presets(Exp52Config, quick=dict(train_points=250), paper=dict(n_points=1000),
                      long={}),
    "exp53": _presets(Exp53Config, smoke=dict(base_epochs=2),
                      # quick: six encoders share one decoder and its q* (fitted once per
                      # family); the flow q* on this ffg-trained decoder needs a longer rule
                      # than exp52's to converge (at 4000 steps / patience 3: 28% capped, probe
                      # +0.135; here none capped, probe +0.061), 6.6 min on 200 test points
                      quick=dict(epochs=30, base_epochs=30, n_points=200, eval_splits=("test",),
                                 qstar_max_steps=12_000, qstar_patience=6),
                      paper=dict(base_epochs=3280), long=dict(base_epochs=0)),
    "exp54": _presets(Exp54Config, quick=dict(n_points=300)),
    "exp55": _presets(Exp55Config, smoke=dict(n_points=16, n_eval_epochs=2),
                      # quick: 3 checkpoints (epochs 1, 5, 30) x 5 models x 2 splits of 100
                      # points, each with its own BDMC and probe on 25 points (a flow model's
                      # checkpoint: 3.3-4 min on 2 cores), 42 min of evaluation (measured)
                      quick=dict(epochs=30, n_points=100, n_eval_epochs=3, bdmc_points=25,
                                 qstar_probe_points=25),
                      paper=dict(eval_epochs=(1, 10, 100, 300, 1000, 2000, 3280)), long={}),
    "exp_refit": _presets(RefitConfig,
                          smoke=dict(noise=(10,), refit_epochs=2, eval_every=1, n_refit=200,
                                     n_curve_points=50, qstar_points=16, iwae_k=8),
                          quick=dict(refit_epochs=100, eval_every=5, n_refit=10000,
                                     n_curve_points=1000, qstar_points=200),
                          paper=dict(refit_epochs=200, n_refit=10000, n_curve_points=10000,
                                     qstar_points=1000)),
}
