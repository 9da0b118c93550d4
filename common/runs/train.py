"""Trainer: Adam + the IWAE learning-rate schedule, entropy warm-up, gradient-norm logging,
atomic checkpoints, bit-identical resume on CPU, and a guard against non-finite losses.

Warm-up (as the paper's code): the training objective is
    log p(x|z) + log p(z) - w(epoch) * log q(z|x),   w = min(1, epoch / warmup_epochs),
so it anneals the entropy term of q, not the KL.

Schedule (IWAE paper): stage i = 0..7 lasts 3^i epochs at lr = 1e-3 * 10^(-i/7), 3280 epochs in
all. A shorter run of E epochs keeps the 8 stages and their learning rates but gives them equal
lengths (stage = floor(8 e / E)): compressing the 3^i lengths instead would spend two thirds of a
short run at the final lr 1e-4 and leave its models undertrained.
"""
import contextlib
import csv
import dataclasses
import fcntl
import math
import os
import socket
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from ..config import CorruptFile, UserError, atomic_file, write_json
from ..models.families import FAMILIES
from ..models.vae import ADDED_FIELDS, VAE, ModelConfig
from ..models.posteriors import log_weight

PAPER_EPOCHS = sum(3 ** i for i in range(8))  # 3280
TERMS = ("log p(x|z)", "log p(z)", "log q(z|x)")
METRIC_FIELDS = ["epoch", "lr", "train_elbo", "valid_elbo", "wall_s", "enc_grad_norm",
                 "dec_grad_norm", "enc_grad_norm_normalised", "dec_grad_norm_normalised",
                 "grad_ratio_normalised", "enc_params", "dec_params"]


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 30               # paper: 3280 (the whole IWAE schedule)
    batch_size: int = 100          # paper: 100
    lr: float = 1e-3               # lr of stage 0
    adam_eps: float = 1e-4         # paper's Adam epsilon
    warmup_epochs: int = 5         # entropy warm-up length (paper: 400, appendix 6.1.2)
    n_train: int = 0               # 0 = the whole training split
    n_valid_monitor: int = 1000    # validation points for the per-epoch single-sample ELBO
    checkpoint_epochs: tuple = ()  # extra kept checkpoints (exp55 evaluates at these)
    freeze_decoder: bool = False   # train only the encoder (exp53, exp_refit)
    constant_lr: bool = False      # keep lr fixed instead of the IWAE schedule (exp_refit)
    stop_patience: int = 0         # P > 0: stop before `epochs` once the validation ELBO stops
                                   # improving after the warm-up (plateaued(): the mean of its
                                   # last P epochs no higher than of the P before; exp53's long
                                   # encoders); 0: every epoch
    dynamic_binarisation: bool = False  # x_train holds grey levels: fresh bits at every batch
    compile: str = "auto"          # torch.compile the step's forward and backward (on CUDA with
                                   # CUDA graphs): on | off | auto (on a GPU: on an H200, flow 4.8
                                   # -> 1.9 s per epoch, ffg 2.2 -> 1.7 s, the same ELBOs); how,
                                   # not what: not part of a run's identity


class NonFiniteLoss(UserError, RuntimeError):
    """A non-finite loss or validation ELBO: the epoch is discarded, the last good checkpoint kept."""


class RunMismatch(UserError, ValueError):
    """A run folder holds a run of another identity: never reused, never resumed."""


def schedule_id(cfg: TrainConfig) -> str:
    """The learning-rate schedule a run follows (it depends on the epoch count, except for a
    constant lr and for the paper's fixed 3280-epoch schedule)."""
    if cfg.constant_lr:
        return f"constant {cfg.lr:g}"
    if cfg.epochs >= PAPER_EPOCHS:
        return f"IWAE stages from {cfg.lr:g}"
    return f"8 equal stages from {cfg.lr:g} over {cfg.epochs} epochs"


# training fields added after identities were first recorded: they count only when set off
# their default, so older runs keep their identity
ADDED_TRAIN_FIELDS = {"stop_patience": 0}


def plateaued(valid_elbos: list, patience: int) -> bool:
    """Whether training stops after these per-epoch validation ELBOs: the mean of the last
    `patience` is no higher than the mean of the `patience` before them (window means, not the
    best single epoch, so one lucky draw of the single-sample monitor does not stop a run that
    is still improving). patience 0: never."""
    if patience <= 0 or len(valid_elbos) < 2 * patience:
        return False
    last = valid_elbos[-patience:]
    before = valid_elbos[-2 * patience:-patience]
    return sum(last) <= sum(before)


def finished(state: dict, cfg: "TrainConfig") -> bool:
    """A checkpoint's run is done: all its epochs, or stopped early by plateaued()."""
    return state["epoch"] >= cfg.epochs or bool(state.get("stopped_early"))


def run_identity(model_config: ModelConfig, cfg: TrainConfig, seed: int, data: dict = None) -> dict:
    """What a run's weights depend on: the model, the training config (with the schedule in
    place of the epoch count, so a constant-lr run may be extended), the seed, and what the
    folder name does not say about the data (`data`, e.g. the corruption of exp_refit). Model
    fields added after identities were first recorded (vae.ADDED_FIELDS) count only when set
    off their default and read by the model's family, so older runs keep their identity."""
    train = {k: v for k, v in dataclasses.asdict(cfg).items()
             if k not in ("epochs", "checkpoint_epochs", "lr", "constant_lr", "compile")
             and not (k in ADDED_TRAIN_FIELDS and v == ADDED_TRAIN_FIELDS[k])}
    uses = FAMILIES[model_config.family].uses
    model = {k: v for k, v in dataclasses.asdict(model_config).items()
             if not (k in ADDED_FIELDS and (v == ADDED_FIELDS[k] or k not in uses))}
    return {"model": model, "seed": seed,
            "train": {**train, "schedule": schedule_id(cfg)}, "data": data or {}}


def _first_difference(stored, wanted, prefix=""):
    if isinstance(stored, dict) and isinstance(wanted, dict):
        for k in sorted(set(stored) | set(wanted)):
            found = _first_difference(stored.get(k), wanted.get(k), f"{prefix}{k}.")
            if found:
                return found
        return None
    stored = list(stored) if isinstance(stored, tuple) else stored
    wanted = list(wanted) if isinstance(wanted, tuple) else wanted
    return None if stored == wanted else (prefix.rstrip("."), stored, wanted)


# what a run's identity says about its data since the data set is recorded (data.data_identity);
# a checkpoint written before then records none of them and is compared without them
ADDED_DATA_FIELDS = ("dataset", "split", "binarisation")


def check_identity(state: dict, identity: dict, path: Path) -> None:
    """Refuse a checkpoint made with another identity, naming the first field that differs."""
    run_dir = Path(path).parent
    if "identity" not in state:
        raise RunMismatch(f"{path} records no run identity (written by an older version); "
                          f"delete {run_dir} to train it anew")
    stored = state["identity"]
    if "dataset" not in (stored.get("data") or {}):   # older than the data record: kept loadable
        identity = {**identity, "data": {k: v for k, v in (identity.get("data") or {}).items()
                                         if k not in ADDED_DATA_FIELDS}}
    diff = _first_difference(stored, identity)
    if diff:
        field, stored, wanted = diff
        raise RunMismatch(f"{run_dir} holds a run with {field}={stored!r}, not {wanted!r}; "
                          f"use another RESULTS_DIR or SEED, or delete {run_dir} to retrain")


def lr_at(epoch: int, total_epochs: int, base_lr: float = 1e-3) -> float:
    """lr of (0-based) epoch in a run of total_epochs: the IWAE schedule, or its 8 stages at
    equal lengths when the run is shorter than the paper's 3280 epochs."""
    if total_epochs >= PAPER_EPOCHS:
        stage, end = 0, 1
        while epoch >= end and stage < 7:
            stage += 1
            end += 3 ** stage
    else:
        stage = min(7, epoch * 8 // total_epochs)
    return base_lr * 10 ** (-stage / 7)


def encoder_decoder_params(model: VAE):
    enc = [p for p in model.encoder.parameters() if p.requires_grad]
    dec = [p for p in model.decoder.parameters() if p.requires_grad]
    return enc, dec


def grad_norm(params) -> torch.Tensor:
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return torch.zeros(())
    return torch.nn.utils.get_total_norm(grads)


def save_checkpoint(path: Path, model, optimizer, epoch: int, config: dict,
                    identity: dict = None, metrics: list = None, extra: dict = None) -> None:
    """Weights, optimiser, the run's noise stream (extra) and the metrics rows up to `epoch`,
    as ONE atomic file: a kill between this and the metrics.csv write loses nothing
    (metrics.csv is rebuilt from it)."""
    state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "epoch": epoch,
             "config": config, "identity": identity, "metrics": list(metrics or []),
             **(extra or {})}
    with atomic_file(path) as tmp:
        torch.save(state, tmp)


def read_checkpoint(path: Path, device="cpu") -> dict:
    """A checkpoint written by save_checkpoint; CorruptFile naming it when truncated or garbage."""
    path = Path(path)
    try:
        state = torch.load(path, map_location=device, weights_only=False)
    except FileNotFoundError:
        raise CorruptFile(f"{path} is missing; run the experiment's train step first") from None
    except Exception as err:  # noqa: BLE001 - any unpickling error means a bad file
        raise CorruptFile(f"{path} is truncated or not a checkpoint ({type(err).__name__}); "
                          f"delete {path.parent} to retrain it") from None
    if not isinstance(state, dict) or not {"model", "epoch", "config"} <= set(state):
        raise CorruptFile(f"{path} is not a checkpoint of this trainer; delete {path.parent} "
                          f"to retrain it")
    bad = [k for k, v in state["model"].items()
           if torch.is_tensor(v) and v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise CorruptFile(f"{path} holds non-finite weights ({bad[0]}"
                          f"{f' and {len(bad) - 1} more' if len(bad) > 1 else ''}); delete "
                          f"{path.parent} to retrain it")
    return state


def load_model(path: Path, device="cpu") -> VAE:
    """A trained VAE from a checkpoint written by this trainer."""
    return model_from_state(read_checkpoint(path, device), device)


def model_from_state(state: dict, device="cpu") -> VAE:
    model = VAE(ModelConfig(**state["config"]["model"])).to(device)
    model.load_state_dict(state["model"])
    return model


def restore_metrics(run_dir: Path, state: dict) -> list:
    """metrics.csv as the checkpoint records it (rows up to its epoch); rewritten when the file
    is missing, unreadable or differs (a kill after the checkpoint, a hand edit)."""
    rows = [{k: row.get(k) for k in METRIC_FIELDS} for row in state.get("metrics", [])]
    path = Path(run_dir) / "metrics.csv"
    if not metrics_file_matches(path, rows):
        _write_metrics(path, rows)
    return rows


def metrics_file_matches(path: Path, rows: list) -> bool:
    """metrics.csv holds exactly these rows, every field as the trainer writes it (a hand-edited
    value is a difference, not only a missing epoch)."""
    try:
        with open(path, newline="") as f:
            on_disk = list(csv.DictReader(f))
    except (OSError, csv.Error, UnicodeDecodeError):
        return False
    written = [{k: "" if r.get(k) is None else str(r.get(k)) for k in METRIC_FIELDS}
               for r in rows]
    return [{k: r.get(k) for k in METRIC_FIELDS} for r in on_disk] == written


def _write_metrics(path: Path, rows: list) -> None:
    with atomic_file(path) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=METRIC_FIELDS)
        writer.writeheader()
        writer.writerows(rows)


def eta_minutes(epoch_ends: list, epochs_left: int) -> float:
    """Minutes left: the median of the last (up to 10) epochs' whole durations times the epochs
    left. The median, not the run's mean, so that one long epoch (a suspended process, a laptop
    asleep, a neighbour's job) does not inflate every later estimate."""
    recent = epoch_ends[-11:]
    durations = [b - a for a, b in zip(recent, recent[1:])]
    if not durations:
        return float("nan")
    return statistics.median(durations) * epochs_left / 60


def _progress(line: str) -> None:
    end = "\r" if sys.stdout.isatty() else "\n"
    print(line, end=end, flush=True)


class RunLocked(RunMismatch):
    """Another process is training (or evaluating) in this folder."""


@contextlib.contextmanager
def run_lock(run_dir: Path, doing: str = "trained"):
    """An exclusive lock on a run (or evaluation) folder for as long as a process works in it;
    a second process stops at once with one line naming the holder."""
    Path(run_dir).mkdir(parents=True, exist_ok=True)
    with open(Path(run_dir) / ".lock", "a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip() or "another process"
            raise RunLocked(f"{run_dir} is being {doing} by {holder}; wait for it to finish or "
                            f"use another RESULTS_DIR") from None
        f.seek(0)
        f.truncate()
        f.write(f"pid {os.getpid()} on {socket.gethostname()}")
        f.flush()
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def train(model: VAE, x_train: torch.Tensor, x_valid: torch.Tensor, cfg: TrainConfig,
          run_dir: Path, seed: int, resume: bool = True, extra_config: dict = None,
          log_prefix: str = "", data_identity: dict = None) -> VAE:
    """Train `model` in place; checkpoints and metrics.csv go to run_dir. Returns the model.

    With resume=True a run whose `last.pt` exists continues from it (a finished run returns
    at once) if it is of the same identity (`run_identity`), else RunMismatch. The decoder is
    frozen when cfg.freeze_decoder. One process at a time per run folder (RunLocked).
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    with run_lock(run_dir):
        return _train(model, x_train, x_valid, cfg, run_dir, seed, resume, extra_config,
                      log_prefix, data_identity)


COMPILE_BACKEND = "inductor"   # torch.compile backend (tests use "aot_eager": no C compiler)


COMPILE_MODES = ("on", "off", "auto")


def compiles(mode: str, device) -> bool:
    """Whether a step is compiled under TrainConfig.compile `mode` on `device` (auto: on a GPU)."""
    if mode not in COMPILE_MODES:
        raise ValueError(f"compile={mode!r} is not allowed; use one of: {', '.join(COMPILE_MODES)}")
    return mode == "on" or (mode == "auto" and torch.device(device).type == "cuda")


def maybe_compile(fn, mode: str, device, label: str = ""):
    """fn, or torch.compile(fn) when `compiles(mode, device)` (on CUDA in "reduce-overhead" mode:
    the step's kernels replayed as CUDA graphs). Shapes are static (one batch size), so it
    compiles once. If compiling fails at the first call, the step runs eagerly, said in one
    line."""
    if not compiles(mode, device):
        return fn
    graph_mode = "reduce-overhead" if torch.device(device).type == "cuda" and \
        COMPILE_BACKEND == "inductor" else None
    state = {"fn": torch.compile(fn, backend=COMPILE_BACKEND, mode=graph_mode, dynamic=False),
             "first": True}

    def call(*args):
        if not state["first"]:
            return state["fn"](*args)
        state["first"] = False
        try:
            return state["fn"](*args)
        except Exception as err:  # noqa: BLE001 - any compiler failure: run as written
            print(f"{label}torch.compile failed ({type(err).__name__}: {str(err)[:120]}); "
                  f"running the step eagerly", flush=True)
            state["fn"] = fn
            return fn(*args)
    return call


def epoch_settings(cfg: TrainConfig, epoch: int) -> tuple:
    """(lr, entropy weight w) of 0-based epoch: the schedule and the warm-up of this module's
    docstring."""
    lr = cfg.lr if cfg.constant_lr else lr_at(epoch, cfg.epochs, cfg.lr)
    weight = min(1.0, (epoch + 1) / cfg.warmup_epochs) if cfg.warmup_epochs else 1.0
    return lr, weight


def epoch_order(n: int, seed: int, epoch: int, device) -> torch.Tensor:
    """The shuffle of one epoch: a function of the seed and the epoch only."""
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed * 100003 + epoch)).to(device)


def noise_generator(seed: int, device) -> torch.Generator:
    """The run's own stream of training noise (binarisation bits, posterior samples, the
    validation ELBO's samples). On CPU it is the stream torch.manual_seed(seed) gives."""
    return torch.Generator(device=device).manual_seed(seed)


def restore_generator(gen: torch.Generator, state: dict, label: str) -> None:
    """The noise stream where the checkpoint left it ("torch_rng" of older CPU checkpoints
    included); resuming on another kind of device restarts it from a seed derived from the
    epoch, said in one line."""
    device = gen.device.type
    saved = state.get("rng_state") if state.get("rng_device") == device else \
        state.get("torch_rng") if device == "cpu" and "rng_device" not in state else None
    if saved is not None:
        gen.set_state(saved.cpu() if hasattr(saved, "cpu") else saved)
    else:
        gen.manual_seed(gen.initial_seed() * 7919 + state["epoch"])
        print(f"{label}note: checkpoint saved on {state.get('rng_device', 'cpu')}, resumed on "
              f"{device}; the noise stream restarts (weights and optimiser are restored)")


def metrics_row(epoch: int, lr: float, train_elbo: float, valid_elbo: float, wall_s: float,
                enc_norm: float, dec_norm: float, n_enc: int, n_dec: int) -> dict:
    """One metrics.csv row; gradient norms are per-epoch means, normalised by sqrt(#params)."""
    enc_normalised = enc_norm / math.sqrt(max(n_enc, 1))
    dec_normalised = dec_norm / math.sqrt(max(n_dec, 1)) if n_dec else float("nan")
    return {"epoch": epoch, "lr": lr, "train_elbo": train_elbo, "valid_elbo": valid_elbo,
            "wall_s": wall_s, "enc_grad_norm": enc_norm,
            "dec_grad_norm": dec_norm if n_dec else float("nan"),
            "enc_grad_norm_normalised": enc_normalised, "dec_grad_norm_normalised": dec_normalised,
            "grad_ratio_normalised": enc_normalised / dec_normalised if n_dec else float("nan"),
            "enc_params": n_enc, "dec_params": n_dec}


def non_finite_message(epoch: int, step: int, bad_terms: list, last: Path) -> str:
    names = [k for k, b in zip(TERMS, bad_terms) if b] or ["loss"]
    return (f"non-finite loss at epoch {epoch + 1}, step {step + 1} (term: {', '.join(names)}); "
            f"the epoch is discarded, last good checkpoint kept at {last}")


def roll_back(model: VAE, last: Path) -> None:
    """Put the weights of the last good checkpoint back into the model in memory (or leave a
    fresh model as it is), so no caller goes on from corrupt weights."""
    if last.exists():
        model.load_state_dict(read_checkpoint(last, next(model.parameters()).device)["model"])


# last.pt (and metrics.csv) at most once a minute, always at a process's first and a run's
# last epoch and at its checkpoint epochs: exp66 (3000 epochs of 10 steps) spent about a quarter
# of its training writing them every epoch (25-27 ms a save, 10 ms the csv, against 70-150 ms
# of steps). A kill loses at most this much training; what is saved is unchanged.
SAVE_EVERY_S = 60.0


def save_due(epoch: int, cfg: TrainConfig, last_saved) -> bool:
    """Whether the end of `epoch` (0-based) writes the checkpoint; last_saved: time.monotonic()
    of this process's last save (None before the first)."""
    return last_saved is None or epoch + 1 == cfg.epochs or epoch + 1 in cfg.checkpoint_epochs \
        or time.monotonic() - last_saved >= SAVE_EVERY_S


def end_epoch(run_dir: Path, model, optimizer, gen, epoch: int, cfg: TrainConfig,
              config_for_ckpt: dict, identity: dict, rows: list, stopped: bool = False) -> None:
    """The checkpoint(s) of a finished epoch, then metrics.csv (rebuilt from the checkpoint if a
    kill falls between the two). Callers write it when save_due says so, and when the run stops
    early (stopped: recorded in last.pt, so the run reads as finished)."""
    extra = {"rng_state": gen.get_state(), "rng_device": gen.device.type}
    if stopped:
        extra["stopped_early"] = True
    if epoch + 1 in cfg.checkpoint_epochs:
        save_checkpoint(run_dir / f"epoch_{epoch + 1}.pt", model, optimizer, epoch + 1,
                        config_for_ckpt, identity, rows, extra)
    save_checkpoint(run_dir / "last.pt", model, optimizer, epoch + 1, config_for_ckpt, identity,
                    rows, extra)
    _write_metrics(run_dir / "metrics.csv", rows)


def prepare_run(model: VAE, cfg: TrainConfig, run_dir: Path, seed: int, resume: bool,
                extra_config: dict, data_identity: dict, device, log_prefix: str = "") -> tuple:
    """A run's optimiser, noise stream, start epoch and metrics rows: fresh, or restored from
    run_dir/last.pt after its identity is checked; then config.json. Freezes the decoder when
    cfg says so. Returns (optimizer, generator, start_epoch, rows, identity, config_for_ckpt)."""
    config = {"train": cfg, "model": model.config, "seed": seed, **(extra_config or {})}
    config_for_ckpt = {"model": model.config.__dict__, "seed": seed}
    identity = run_identity(model.config, cfg, seed, data_identity)
    if cfg.freeze_decoder:
        for p in model.decoder.parameters():
            p.requires_grad_(False)
    enc_params, dec_params = encoder_decoder_params(model)
    optimizer = torch.optim.Adam(enc_params + dec_params, lr=cfg.lr, eps=cfg.adam_eps)
    gen = noise_generator(seed, device)
    last = run_dir / "last.pt"
    start_epoch, rows = 0, []
    if resume and last.exists():
        state = read_checkpoint(last, device)
        check_identity(state, identity, last)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        restore_generator(gen, state, log_prefix)
        start_epoch = cfg.epochs if finished(state, cfg) else state["epoch"]   # nothing left
        if start_epoch < cfg.epochs:
            print(f"{log_prefix}resuming from epoch {start_epoch} ({last})", flush=True)
        rows = restore_metrics(run_dir, state)
    write_json(run_dir / "config.json", config)   # only once the identity is known to match
    return optimizer, gen, start_epoch, rows, identity, config_for_ckpt


def _train(model, x_train, x_valid, cfg, run_dir, seed, resume, extra_config, log_prefix,
           data_identity):
    device = x_train.device
    optimizer, gen, start_epoch, rows, identity, config_for_ckpt = prepare_run(
        model, cfg, run_dir, seed, resume, extra_config, data_identity, device, log_prefix)
    enc_params, dec_params = encoder_decoder_params(model)
    n_enc = sum(p.numel() for p in enc_params)
    n_dec = sum(p.numel() for p in dec_params)
    last = run_dir / "last.pt"

    x_train = x_train[:cfg.n_train] if cfg.n_train else x_train
    x_monitor = x_valid[:cfg.n_valid_monitor]
    n, bs = x_train.shape[0], cfg.batch_size
    terms = maybe_compile(model, cfg.compile, device, log_prefix)
    epoch_ends = [time.time()]   # for the ETA
    last_saved = None
    for epoch in range(start_epoch, cfg.epochs):
        t0 = time.time()
        lr, entropy_weight = epoch_settings(cfg, epoch)
        for group in optimizer.param_groups:
            group["lr"] = lr
        order = epoch_order(n, seed, epoch, device)
        model.train()
        elbo_sum = torch.zeros((), device=device)
        enc_norm_sum = torch.zeros((), device=device)
        dec_norm_sum = torch.zeros((), device=device)
        n_batches = 0
        # non-finite guard without a host sync per step: the first bad step and its terms are
        # recorded on the device and read once, at the end of the epoch
        first_bad = torch.full((), -1, dtype=torch.long, device=device)
        bad_terms = torch.zeros(3, dtype=torch.bool, device=device)
        for step, start in enumerate(range(0, n, bs)):
            x = x_train[order[start:start + bs]]
            if cfg.dynamic_binarisation:
                x = torch.bernoulli(x, generator=gen)
            eps = torch.randn((1, x.shape[0], model.encoder.family.noise_dim), generator=gen,
                              device=device)
            log_px_z, log_pz, log_q = terms(x, eps)
            objective = log_weight(log_px_z, log_pz, log_q, entropy_weight).mean()
            loss = -objective
            is_first = ~torch.isfinite(loss) & (first_bad < 0)
            terms_bad = torch.stack([~torch.isfinite(t).all() for t in (log_px_z, log_pz, log_q)])
            bad_terms = torch.where(is_first, terms_bad, bad_terms)
            first_bad = torch.where(is_first, step, first_bad)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            enc_norm_sum += grad_norm(enc_params)
            dec_norm_sum += grad_norm(dec_params)
            optimizer.step()
            with torch.no_grad():
                elbo_sum += log_weight(log_px_z, log_pz, log_q).sum()
            n_batches += 1
        if first_bad.item() >= 0:  # the epoch's weights are corrupt: never saved, rolled back
            roll_back(model, last)
            raise NonFiniteLoss(non_finite_message(epoch, first_bad.item(), bad_terms.tolist(),
                                                   last))
        model.eval()
        with torch.no_grad():
            valid_elbo = model.elbo(x_monitor, 1, generator=gen).mean().item() \
                if len(x_monitor) else float("nan")
        if len(x_monitor) and not math.isfinite(valid_elbo):
            roll_back(model, last)
            raise NonFiniteLoss(f"non-finite validation ELBO after epoch {epoch + 1}; the epoch "
                                f"is discarded, last good checkpoint kept at {last}")
        row = metrics_row(epoch + 1, lr, elbo_sum.item() / n, valid_elbo, time.time() - t0,
                          enc_norm_sum.item() / n_batches, dec_norm_sum.item() / n_batches,
                          n_enc, n_dec)
        rows.append(row)
        stop = epoch + 1 < cfg.epochs and plateaued(   # judged after the entropy warm-up
            [r["valid_elbo"] for r in rows if r["epoch"] > cfg.warmup_epochs], cfg.stop_patience)
        if stop or save_due(epoch, cfg, last_saved):
            end_epoch(run_dir, model, optimizer, gen, epoch, cfg, config_for_ckpt, identity, rows,
                      stopped=stop)
            last_saved = time.monotonic()
        epoch_ends.append(time.time())
        eta = eta_minutes(epoch_ends, cfg.epochs - epoch - 1)
        _progress(f"{log_prefix}epoch {epoch + 1}/{cfg.epochs} lr {lr:.2e} train elbo "
                  f"{row['train_elbo']:.2f} valid elbo {valid_elbo:.2f} "
                  f"({row['wall_s']:.1f}s, eta {eta:.1f} min)")
        if stop:
            print(f"\n{log_prefix}stopped after epoch {epoch + 1} of {cfg.epochs}: the mean "
                  f"validation ELBO of the last {cfg.stop_patience} epochs is no higher than of "
                  f"the {cfg.stop_patience} before (stop_patience)", flush=True)
            break
    if sys.stdout.isatty() and cfg.epochs > start_epoch:
        print()
    model.eval()
    return model
