"""What every study's presets share: RunConfig (training, model and evaluation fields), the sizes
of each preset, and `presets()`, with which each study's folder builds its own presets in its
config.py (common/studies.py). A preset is a frozen dataclass; any field can be overridden from
the command line (`--n-points 200`, `--families ffg,flow`).

smoke: end to end in well under 2 minutes on 2 CPU cores (tiny slices); what the tests run.
quick: real, meaningful numbers on real data on a 2-core CPU (see each experiment's README).
paper: the paper's settings (3280 epochs, 1000 points, AIS with 100 chains), meant for a GPU.
long: quick's certified estimators on models trained 300 epochs (the studies whose models train
      on the full data: exp52, exp53, exp55); `--epochs 100` gives another length of the ladder.
"""
import math
from dataclasses import dataclass, fields, replace

from ..config import ConfigError
from ..data import DATASETS
from ..inference.gaps import AIS_PROPOSALS, PROBE_MODES, EvalConfig
from ..models.families import FAMILIES
from .train import COMPILE_MODES, TrainConfig
from ..models.vae import ModelConfig, model_config


# fields only evaluation scripts take (a train script has no flag for them)
EVAL_ONLY = tuple(f.name for f in fields(EvalConfig)) + ("eval_splits", "train_split_families",
                                                         "train_points", "qstar_points",
                                                         "af_points", "last_budget_cap")

# whole-number fields where 0 means "all" or "none"; every other one must be >= 1
MAY_BE_ZERO = {"warmup_fraction", "qstar_tol", "n_points", "n_train", "n_valid_monitor",
               "warmup_epochs", "ais_warmup", "qstar_probe_points",
               "corruption_seed", "train_points", "af_points", "base_epochs", "stop_patience"}
LARGEST = 2 ** 31 - 1   # every whole number (a seed too: torch and the make variables take this)

# lists of whole numbers: the smallest each element may be
WHOLE_NUMBER_LISTS = {"seeds": 0, "checkpoint_epochs": 1, "eval_epochs": 1, "decoder_layers": 0,
                      "noise": 0, "enc_hidden": 1, "dec_hidden": 1, "family_hidden": 1}
SPLITS = ("test", "train")   # what --eval-splits may name


# tuple fields that may be empty (no hidden layer, no extra seed, the default checkpoints); every
# other one selects what to run (families, datasets, splits, models, ...): empty is an error
MAY_BE_EMPTY = {"enc_hidden", "dec_hidden", "family_hidden", "eval_epochs", "seeds",
                "train_split_families", "checkpoint_epochs"}


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
    compile: str = "auto"           # torch.compile the training step (CUDA graphs on a GPU):
                                    # on | off | auto (on a GPU; measured there,
                                    # common/runs/train.py)
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

    def with_given(self, given: set) -> "RunConfig":
        """This config once the fields in `given` were set on purpose (by a flag or a named
        variant): a warm-up length asked for turns off the preset's warm-up share, which would
        otherwise take its place in train_config."""
        if "warmup_epochs" in given and "warmup_fraction" not in given and self.warmup_fraction:
            return replace(self, warmup_fraction=0.0)
        return self

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
            if isinstance(value, int) and not (0 if name in MAY_BE_ZERO else 1) <= value <= LARGEST:
                raise ConfigError(f"{flag}={value} is not allowed; use a whole number in "
                                  f"[{0 if name in MAY_BE_ZERO else 1}, {LARGEST}]")
            if isinstance(value, tuple) and name in WHOLE_NUMBER_LISTS and any(
                    isinstance(v, bool) or not isinstance(v, int) or
                    not WHOLE_NUMBER_LISTS[name] <= v <= LARGEST for v in value):
                raise ConfigError(f"{flag}={','.join(map(str, value))} is not allowed; use whole "
                                  f"numbers in [{WHOLE_NUMBER_LISTS[name]}, {LARGEST}], "
                                  f"comma-separated")
            if isinstance(value, tuple) and not value and name not in MAY_BE_EMPTY:
                raise ConfigError(f"{flag} is empty; give at least one value (the preset's: "
                                  f"leave the flag out)")
            if isinstance(value, tuple) and not name.endswith("_hidden") and \
                    len(set(value)) != len(value):   # layer sizes may repeat; selections not
                raise ConfigError(f"{flag}={','.join(map(str, value))} lists a value twice; "
                                  f"give each once")
        if self.qstar_probe_points > self.point_chunk:
            raise ConfigError(f"--qstar-probe-points={self.qstar_probe_points} is more than "
                              f"--point-chunk={self.point_chunk}: the probe runs on the first "
                              f"chunk; give a point chunk of at least the probe's points")
        if not 0 < self.qstar_lr_decay <= 1:
            raise ConfigError(f"--qstar-lr-decay={self.qstar_lr_decay} is not allowed: the q* "
                              f"rate may only shrink; use a factor in (0, 1] (1: constant)")
        for split in getattr(self, "eval_splits", ()):
            if split not in SPLITS:
                raise ConfigError(f"--eval-splits: {split!r} is not a split; use test, train "
                                  f"or test,train")
        if self.warmup_fraction > 1:
            raise ConfigError(f"--warmup-fraction={self.warmup_fraction} is not allowed; use a "
                              f"share of the epochs in [0, 1]")
        if self.compile not in COMPILE_MODES:
            raise ConfigError(f"--compile={self.compile} is not allowed; use one of: "
                              f"{', '.join(COMPILE_MODES)}")
        if self.qstar_probe_mode not in PROBE_MODES:
            raise ConfigError(f"--qstar-probe-mode={self.qstar_probe_mode} is not allowed; use "
                              f"one of: {', '.join(PROBE_MODES)}")
        if self.ais_proposal not in AIS_PROPOSALS:
            raise ConfigError(f"--ais-proposal={self.ais_proposal} is not allowed; use one of: "
                              f"{', '.join(AIS_PROPOSALS)}")
        if self.ais_other_path not in ("",) + AIS_PROPOSALS:
            raise ConfigError(f"--ais-other-path={self.ais_other_path} is not allowed; use one "
                              f"of: {', '.join(AIS_PROPOSALS)} (or '' for none)")
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
             k_eval=64, qstar_samples=4, qstar_lr=1e-2, qstar_lr_decay=0.5,
             qstar_check_every=10, qstar_patience=1,
             qstar_max_steps=40, ais_chains=2, ais_steps=10, ais_leapfrog=2, ais_warmup=3,
             ais_budget_cap=2, bdmc_points=8, qstar_probe_points=8, point_chunk=8)
# quick's q* rule: Adam from lr 1e-2, halved per point at every window of 100 steps without a new
# best (a gain of more than 0.05 nats), stop after 3 such windows in a row (patience 2), S = 10,
# cap 6000. Measured on 200 MNIST test points of a 100-epoch flow model against the former rule
# (lr 1e-3 constant, patience 3, cap 4000): its flow q* ended 0.68 nats higher (-88.37 vs -89.05;
# the constant rate stalled at Adam's noise floor, which its probe could not see), the flow
# model's ffg q* 0.19 higher in 57% fewer steps, an ffg model's q* the same (-90.83) in 38% fewer
# steps; the 0.05-nat tolerance then cut the quick flow model's fits by 27% for 0.035 nats
# (tools/qstar_rules.py; docs/estimators.md, "q* rule")
QUICK = dict(epochs=30, warmup_epochs=5, n_points=500, k_eval=1000, qstar_samples=10,
             qstar_lr=1e-2, qstar_lr_decay=0.5, qstar_tol=0.05, qstar_check_every=100,
             qstar_patience=2, qstar_max_steps=6000,
             ais_chains=4, ais_steps=100, ais_leapfrog=5, ais_init_step=0.3, ais_warmup=20,
             ais_proposal="qstar", bdmc_points=50, qstar_probe_points=50, point_chunk=250)
# long: quick's estimators, 300 epochs under quick's rule (the paper's eight learning rates in
# equal stages of 37.5 epochs), the entropy warm-up scaled with the length as quick's 5 of 30
# (a sixth: 50 epochs at 300, 17 at 100; the paper: 400 of 3280, an eighth)
LONG = dict(QUICK, epochs=300, warmup_fraction=1 / 6)
PAPER = dict(epochs=3280, warmup_epochs=400,  # entropy warm-up: the paper's 6.1.2 says 400
             n_points=1000, k_eval=5000, qstar_samples=50,
             qstar_lr=1e-3, qstar_check_every=100, qstar_patience=10, qstar_max_steps=100_000,
             qstar_warm_start=False, ais_chains=100, ais_steps=5000, ais_leapfrog=10,
             ais_init_step=0.01, ais_proposal="prior", ais_warmup=0, ais_budget_cap=2,
             bdmc_points=100,
             qstar_probe_points=100, point_chunk=250)


def presets(cls, smoke=None, quick=None, paper=None, long=None):
    """A study's presets; `long` (a dict, {} for quick's own values) only for the studies that
    have one: it starts from quick's values and this study's quick overrides."""
    out = {"smoke": cls(**{**SMOKE, **(smoke or {})}), "quick": cls(**{**QUICK, **(quick or {})}),
           "paper": cls(**{**PAPER, **(paper or {})})}
    if long is not None:
        out["long"] = cls(**{**LONG, **(quick or {}), "epochs": LONG["epochs"], **long})
    return out
