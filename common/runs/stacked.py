"""Several VAEs of ONE architecture trained as one batched computation, each exactly as if it
were trained alone by common/runs/train.py.

On a GPU a training step of one small MLP is a few dozen tiny kernels, bounded by launch latency;
M models stacked along a leading model dimension (torch.func.stack_module_state + vmap) cost
about as much per step as one. Each model keeps what it would have alone: its run folder,
identity check, checkpoints, metrics.csv, its shuffle (seed, epoch), its noise stream, its
Adam state. Adam is elementwise, so one Adam over the stacked tensors is M independent Adams
(same lr schedule, same step count). Checkpoints are written in the single trainer's format,
so a run started stacked can be resumed alone and the other way round.

Models may differ in seed and in data (same number of training points), e.g. one family on
MNIST and Fashion-MNIST, or several seeds.
"""
import contextlib
import copy
import math
import sys
import time
from pathlib import Path

import torch
from torch.func import functional_call, stack_module_state

from .train import (NonFiniteLoss, TrainConfig, _progress, end_epoch, epoch_order, eta_minutes,
                    epoch_settings, maybe_compile, metrics_row, non_finite_message, prepare_run,
                    roll_back, run_lock, save_due)
from ..models.vae import VAE
from ..models.posteriors import log_weight


def stackable(models: list) -> bool:
    """Models stack when they have one architecture (the same ModelConfig)."""
    return len({m.config for m in models}) == 1


def _trainable_names(model: VAE) -> tuple:
    """Names of the trained parameters, in the order the single trainer's Adam holds them
    (encoder first, then decoder)."""
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    return ([n for n in names if n.startswith("encoder.")] +
            [n for n in names if n.startswith("decoder.")])


class StackedAdam:
    """One torch Adam over the stacked parameters, convertible to and from the per-model Adam
    state of the single trainer (for checkpoints)."""

    def __init__(self, stacked: dict, names: tuple, cfg: TrainConfig):
        self.names = names
        self.params = [stacked[n] for n in names]
        self.adam = torch.optim.Adam(self.params, lr=cfg.lr, eps=cfg.adam_eps)

    def set_lr(self, lr: float) -> None:
        for group in self.adam.param_groups:
            group["lr"] = lr

    def load_from(self, optimizers: list) -> None:
        """Stack the state of M single-model Adams (all at the same step, or all fresh)."""
        per_model = [[opt.state.get(p, {}) for p in opt.param_groups[0]["params"]]
                     for opt in optimizers]
        for i, p in enumerate(self.params):
            states = [states[i] for states in per_model]
            if not states[0]:
                continue
            self.adam.state[p] = {
                "step": states[0]["step"].clone(),
                "exp_avg": torch.stack([s["exp_avg"] for s in states]).contiguous(),
                "exp_avg_sq": torch.stack([s["exp_avg_sq"] for s in states]).contiguous()}

    def write_to(self, optimizer, m: int) -> None:
        """Model m's slice of the state, into its single-model Adam (for its checkpoint)."""
        for p_single, p in zip(optimizer.param_groups[0]["params"], self.params):
            state = self.adam.state.get(p)
            if state:
                optimizer.state[p_single] = {"step": state["step"].clone(),
                                             "exp_avg": state["exp_avg"][m].clone(),
                                             "exp_avg_sq": state["exp_avg_sq"][m].clone()}
        for group in optimizer.param_groups:
            group["lr"] = self.adam.param_groups[0]["lr"]


def train_stacked(models: list, x_trains: list, x_valids: list, cfg: TrainConfig, run_dirs: list,
                  seeds: list, labels: list = None, extra_config: dict = None,
                  datas: list = None) -> list:
    """Train models (one architecture) in place as one computation; each one's checkpoints and
    metrics.csv go to its run_dirs entry, exactly as train() would write them. A run folder
    with last.pt resumes (identity checked). Runs at different epochs are not stacked: each is
    then trained alone, said in one line."""
    from .train import train
    if not stackable(models):
        raise ValueError("train_stacked needs models of one architecture (the same ModelConfig)")
    labels = labels or [str(d) for d in run_dirs]
    datas = list(datas) if datas else [None] * len(run_dirs)
    run_dirs = [Path(d) for d in run_dirs]
    for d in run_dirs:
        d.mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as locks:
        for d in run_dirs:
            locks.enter_context(run_lock(d))
        device = x_trains[0].device
        runs = [prepare_run(m, cfg, d, s, True, extra_config, da, device, f"[{lab}] ")
                for m, d, s, lab, da in zip(models, run_dirs, seeds, labels, datas)]
        starts = {r[2] for r in runs}
        if len(starts) == 1:
            return _train_stacked(models, x_trains, x_valids, cfg, run_dirs, seeds, labels,
                                  runs, starts.pop())
    # released: train() takes each run's lock itself
    print(f"[stacked] runs at different epochs ({sorted(starts)}): training each alone",
          flush=True)
    return [train(m, xt, xv, cfg, d, s, extra_config=extra_config, log_prefix=f"[{lab}] ",
                  data_identity=da)
            for m, xt, xv, d, s, lab, da in zip(models, x_trains, x_valids, run_dirs, seeds,
                                                labels, datas)]


def _stack_data(xs: list, n: int) -> torch.Tensor:
    """[M, n, ...] without copying when every model trains on the same tensor."""
    if all(x is xs[0] for x in xs):
        return xs[0][:n].unsqueeze(0).expand(len(xs), *xs[0][:n].shape)
    return torch.stack([x[:n] for x in xs])


def _train_stacked(models, x_trains, x_valids, cfg, run_dirs, seeds, labels, runs, start_epoch):
    M, device = len(models), x_trains[0].device
    optimizers = [r[0] for r in runs]
    gens = [r[1] for r in runs]
    rows = [r[3] for r in runs]
    names = _trainable_names(models[0])
    enc = [n for n in names if n.startswith("encoder.")]
    dec = [n for n in names if n.startswith("decoder.")]
    n_enc = sum(models[0].get_parameter(n).numel() for n in enc)
    n_dec = sum(models[0].get_parameter(n).numel() for n in dec)

    params, buffers = stack_module_state(models)
    for name, p in params.items():          # frozen parameters stay frozen
        p.requires_grad_(name in names)
    adam = StackedAdam(params, tuple(names), cfg)
    adam.load_from(optimizers)
    base = copy.deepcopy(models[0]).to("meta")

    def terms(p, b, x, eps):
        return functional_call(base, (p, b), (x, eps))
    batched_terms = maybe_compile(torch.vmap(terms), cfg.compile, device, "[stacked] ")

    sizes = {x.shape[0] for x in x_trains}
    n = min(sizes) if not cfg.n_train else cfg.n_train
    if not cfg.n_train and len(sizes) > 1:
        raise ValueError(f"stacked models need training sets of one size, got {sorted(sizes)}")
    x_all = _stack_data(x_trains, n)
    monitors = [x[:cfg.n_valid_monitor] for x in x_valids]
    bs, arange = cfg.batch_size, torch.arange(M, device=device).unsqueeze(1)
    epoch_ends = [time.time()]   # for the ETA
    last_saved = None
    for epoch in range(start_epoch, cfg.epochs):
        t0 = time.time()
        lr, entropy_weight = epoch_settings(cfg, epoch)
        adam.set_lr(lr)
        order = torch.stack([epoch_order(n, s, epoch, device) for s in seeds])
        elbo_sum = torch.zeros(M, device=device)
        enc_norm_sum = torch.zeros(M, device=device)
        dec_norm_sum = torch.zeros(M, device=device)
        first_bad = torch.full((M,), -1, dtype=torch.long, device=device)
        bad_terms = torch.zeros(M, 3, dtype=torch.bool, device=device)
        n_batches = 0
        for step, start in enumerate(range(0, n, bs)):
            x = x_all[arange, order[:, start:start + bs]]               # [M, B, 784]
            if cfg.dynamic_binarisation:   # each model's bits from its own stream, as alone
                x = torch.stack([torch.bernoulli(x[m], generator=g) for m, g in enumerate(gens)])
            eps = torch.stack([torch.randn((1, x.shape[1], models[0].encoder.family.noise_dim),
                                           generator=g,
                                           device=device) for g in gens])
            log_px_z, log_pz, log_q = batched_terms(params, buffers, x, eps)   # each [M, 1, B]
            objective = log_weight(log_px_z, log_pz, log_q, entropy_weight).mean((1, 2))   # [M]
            is_first = ~torch.isfinite(objective) & (first_bad < 0)
            terms_bad = torch.stack([~torch.isfinite(t).flatten(1).all(1)
                                     for t in (log_px_z, log_pz, log_q)], 1)
            bad_terms = torch.where(is_first.unsqueeze(1), terms_bad, bad_terms)
            first_bad = torch.where(is_first, step, first_bad)
            adam.adam.zero_grad(set_to_none=True)
            (-objective).sum().backward()   # models are independent: each gets its own gradient
            enc_norm_sum += _norms(params, enc, M, device)
            dec_norm_sum += _norms(params, dec, M, device)
            adam.adam.step()
            with torch.no_grad():
                elbo_sum += log_weight(log_px_z, log_pz, log_q).sum((1, 2))
            n_batches += 1
        _unstack(params, models)
        bad = first_bad.tolist()
        if any(b >= 0 for b in bad):   # one model's bad step discards the epoch of all
            for model, d in zip(models, run_dirs):
                roll_back(model, d / "last.pt")
            m = next(i for i, b in enumerate(bad) if b >= 0)
            raise NonFiniteLoss(f"[{labels[m]}] " + non_finite_message(
                epoch, bad[m], bad_terms[m].tolist(), run_dirs[m] / "last.pt"))
        elbos, enc_norms, dec_norms = (elbo_sum / n).tolist(), \
            (enc_norm_sum / n_batches).tolist(), (dec_norm_sum / n_batches).tolist()
        wall = time.time() - t0
        for m, model in enumerate(models):
            model.eval()
            with torch.no_grad():
                valid = model.elbo(monitors[m], 1, generator=gens[m]).mean().item() \
                    if len(monitors[m]) else float("nan")
            if len(monitors[m]) and not math.isfinite(valid):
                for other, d in zip(models, run_dirs):
                    roll_back(other, d / "last.pt")
                raise NonFiniteLoss(f"[{labels[m]}] non-finite validation ELBO after epoch "
                                    f"{epoch + 1}; the epoch is discarded, last good checkpoint "
                                    f"kept at {run_dirs[m] / 'last.pt'}")
            rows[m].append(metrics_row(epoch + 1, lr, elbos[m], valid, wall / M, enc_norms[m],
                                       dec_norms[m], n_enc, n_dec))
        if save_due(epoch, cfg, last_saved):
            for m, model in enumerate(models):
                adam.write_to(optimizers[m], m)
                identity, config_for_ckpt = runs[m][4], runs[m][5]
                end_epoch(run_dirs[m], model, optimizers[m], gens[m], epoch, cfg,
                          config_for_ckpt, identity, rows[m])
            last_saved = time.monotonic()
        epoch_ends.append(time.time())
        eta = eta_minutes(epoch_ends, cfg.epochs - epoch - 1)
        _progress(f"[stacked x{M}] epoch {epoch + 1}/{cfg.epochs} lr {lr:.2e} train elbo "
                  f"{' '.join(f'{e:.2f}' for e in elbos)} ({wall:.1f}s, eta {eta:.1f} min)")
    if sys.stdout.isatty() and cfg.epochs > start_epoch:
        print()
    for model in models:
        model.eval()
    return models


def _norms(params: dict, names: list, M: int, device) -> torch.Tensor:
    """Per-model 2-norm of the gradients of the named stacked parameters, [M]."""
    squares = [params[n].grad.flatten(1).pow(2).sum(1) for n in names
               if params[n].grad is not None]
    return torch.stack(squares).sum(0).sqrt() if squares else torch.zeros(M, device=device)


def _unstack(params: dict, models: list) -> None:
    """Copy the stacked weights back into each model (checkpoints, validation)."""
    with torch.no_grad():
        for name, p in params.items():
            for m, model in enumerate(models):
                model.get_parameter(name).copy_(p[m])
