"""The gap computation: for a trained model and a fixed set of points,

    L[q]      mean ELBO of the amortised q over k_eval samples (and IWAE of q, same samples)
    L[q*]     q* fitted per point (common/local_opt.py), for the model's own family and for ffg
    log p^    max(AIS, IWAE of every q*, IWAE of q) per point, once per decoder
    approximation gap = log p^ - L[q*],  amortization gap = L[q*] - L[q],  total = log p^ - L[q]

Every quantity is averaged over the same points; mean and standard error over points. A gap
below zero by more than 3 standard errors is reported as an estimator failure, not hidden.

q* of the model's own family is the best member found. The encoder's q is itself a member, and
so is every factorised Gaussian for the flow family (a coupling with zero weights in its heads
is an affine map with constant scale and shift), so where local optimisation ends below one of
them (noisy steps, too few steps), L[q*] = max(L[q*_opt], L[q], L[q*_ffg] for flows) per point.
How often the optimised member loses is reported (`qstar_fallback`, fraction of points) rather
than hidden. The ffg q* of a flow model has no floor from q (q is not a Gaussian).
"""
import csv
import math
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from .estimators import ais, bdmc
from .local_opt import flatten, optimize_local
from .vae import VAE, BatchLikelihood

EVAL_VERSION = 2  # bump when what an evaluation computes changes: cached evaluations are redone
MOMENT_SAMPLES = 200  # samples of a flow q whose moments start the ffg q* of a flow model
QUANTITIES = ("logpx", "L_qstar", "L_q", "approx_gap", "amort_gap", "total_gap")


@dataclass(frozen=True)
class EvalConfig:
    n_points: int = 500             # evaluation points per split (paper: 1000)
    k_eval: int = 1000              # samples for L[q], IWAE of q and L[q*] (paper: 5000)
    qstar_samples: int = 10         # samples per q* step (paper: 50)
    qstar_lr: float = 1e-3          # Adam lr of q* (paper: 1e-3)
    qstar_check_every: int = 100    # stopping rule: compare mean loss every ... steps (paper: 100)
    qstar_patience: int = 10        # ... and stop after more than this many checks without gain
    qstar_max_steps: int = 5000     # step cap (paper: none)
    qstar_warm_start: bool = True   # start q* at the encoder's output (paper: at the prior)
    ais_chains: int = 8             # paper: 100
    ais_steps: int = 200            # intermediate distributions (paper: 5000-10000)
    ais_leapfrog: int = 5           # paper: 10
    ais_init_step: float = 0.1      # initial HMC step (paper: 0.01, adapted per chain)
    bdmc_points: int = 50           # simulated points for the BDMC bound on AIS's error
    point_chunk: int = 1000         # points evaluated together (memory bound)


def own_family(model: VAE) -> str:
    return "ffg" if model.config.family == "ffg" else "flow"


def encoder_init(model: VAE, x: torch.Tensor, family: str) -> dict:
    """The encoder's q(z|x) as per-point parameters of a local family (warm start of q*)."""
    with torch.no_grad():
        mu, logvar, layers = model.encoder.encode(x)
        if family == "ffg" and layers:
            # a flow model's q is not Gaussian: start from its moments, not from its base
            z, _ = model.encoder.sample_and_log_prob(x, MOMENT_SAMPLES)
            mu, logvar = z.mean(0), z.var(0).clamp_min(1e-6).log()
    if family == "ffg":
        return {"mu": mu, "logvar": logvar}
    n = x.shape[0]
    per_point = []
    for update_second, params in layers:
        expanded = {}
        for name, v in params.items():
            shared = v.dim() == 2 if name.startswith("w_") else v.dim() == 1
            expanded[name] = v.detach().unsqueeze(0).expand(n, *v.shape).clone() if shared \
                else v.detach().clone()
        per_point.append((update_second, expanded))
    return flatten(mu, logvar, per_point)


def amortised_bounds(model: VAE, x: torch.Tensor, k: int):
    """(L[q], IWAE of q) per point over the same k samples."""
    return tuple(v.float() for v in model.bounds(x, k))


def local_bounds(model: VAE, x: torch.Tensor, family: str, cfg: EvalConfig, seed: int,
                 verbose: bool = False):
    if model.config.family == "ffg" and family == "flow":
        raise ValueError("the flow q* is only evaluated for flow and cflow models")
    init = encoder_init(model, x, family) if cfg.qstar_warm_start else None
    for p in model.decoder.parameters():
        p.requires_grad_(False)
    return optimize_local(BatchLikelihood(model, x), x.shape[0], model.z_dim, family=family,
                          n_samples=cfg.qstar_samples, lr=cfg.qstar_lr,
                          check_every=cfg.qstar_check_every, patience=cfg.qstar_patience,
                          max_steps=cfg.qstar_max_steps, eval_samples=cfg.k_eval, init=init,
                          flow_steps=model.config.flow_steps, flow_hidden=model.config.flow_hidden,
                          seed=seed, verbose=verbose, device=x.device)


def encoder_bounds(model: VAE, x: torch.Tensor, cfg: EvalConfig, seed: int,
                   verbose: bool = False) -> dict:
    """Per-point L[q], IWAE q, and q* bounds for ffg and (flow models) the flow family."""
    out = {k: [] for k in ("L_q", "iwae_q", "L_qstar_ffg", "iwae_qstar_ffg", "qstar_steps_ffg")}
    families = ["ffg"] + (["flow"] if own_family(model) == "flow" else [])
    if "flow" in families:
        out.update({"L_qstar_flow": [], "iwae_qstar_flow": [], "qstar_steps_flow": []})
    for start in range(0, x.shape[0], cfg.point_chunk):
        xc = x[start:start + cfg.point_chunk]
        torch.manual_seed(seed + start)
        l_q, i_q = amortised_bounds(model, xc, cfg.k_eval)
        out["L_q"].append(l_q)
        out["iwae_q"].append(i_q)
        members = [(l_q, i_q)]                  # other members of the own family found
        for family in families:
            r = local_bounds(model, xc, family, cfg, seed + start, verbose)
            elbo, iwae = r.elbo, r.iwae
            if family == own_family(model):
                fallback = torch.zeros_like(elbo, dtype=torch.bool)
                for other_elbo, other_iwae in members:
                    better = other_elbo > elbo
                    elbo = torch.where(better, other_elbo, elbo)
                    iwae = torch.where(better, other_iwae, iwae)
                    fallback |= better
                out.setdefault("qstar_fallback", []).append(fallback.float())
            else:                               # the ffg q* of a flow model is a flow member
                members.append((elbo, iwae))
            out[f"L_qstar_{family}"].append(elbo)
            out[f"iwae_qstar_{family}"].append(iwae)
            out[f"qstar_steps_{family}"].append(r.steps.float())
    out = {k: torch.cat(v).cpu() for k, v in out.items()}
    out["L_qstar"] = out[f"L_qstar_{own_family(model)}"]
    return out


def ais_logpx(model: VAE, x: torch.Tensor, cfg: EvalConfig, seed: int, verbose: bool = False):
    """AIS estimate of log p(x) per point for the model's decoder."""
    parts = []
    for start in range(0, x.shape[0], cfg.point_chunk):
        xc = x[start:start + cfg.point_chunk]
        parts.append(ais(BatchLikelihood(model, xc), xc.shape[0], model.z_dim,
                         n_chains=cfg.ais_chains, n_steps=cfg.ais_steps,
                         n_leapfrog=cfg.ais_leapfrog, init_step=cfg.ais_init_step,
                         seed=seed + start, verbose=verbose, device=x.device))
    return torch.cat(parts).cpu()


def simulate(model: VAE, n: int, seed: int):
    """(x, z) with z ~ p(z), x ~ p(x|z): z is an exact posterior sample of x."""
    g = torch.Generator().manual_seed(seed)
    device = next(model.parameters()).device
    z = torch.randn(n, model.z_dim, generator=g).to(device)
    with torch.no_grad():
        probs = torch.sigmoid(model.decoder(z)).cpu()
    return torch.bernoulli(probs, generator=g).to(device), z


def bdmc_bound(model: VAE, cfg: EvalConfig, seed: int) -> dict:
    """Forward and reverse AIS on data simulated from the decoder: mean bounds and their gap."""
    x, z = simulate(model, cfg.bdmc_points, seed)
    r = bdmc(BatchLikelihood(model, x), z, n_chains=cfg.ais_chains, n_steps=cfg.ais_steps,
             n_leapfrog=cfg.ais_leapfrog, init_step=cfg.ais_init_step, seed=seed)
    return {"bdmc_lower": r.lower.mean().item(), "bdmc_upper": r.upper.mean().item(),
            "bdmc_gap": r.gap}


def logpx_from(ais_values: torch.Tensor, bounds_list) -> torch.Tensor:
    """log p^ = max over AIS and every IWAE (of q and of each q*) computed on this decoder."""
    candidates = [ais_values] + [b[k] for b in bounds_list for k in b if k.startswith("iwae")]
    return torch.stack(candidates).max(0).values


def add_gaps(bounds: dict, logpx: torch.Tensor, ais_values: torch.Tensor) -> dict:
    out = dict(bounds, ais=ais_values, logpx=logpx)
    out["approx_gap"] = logpx - bounds["L_qstar"]
    out["amort_gap"] = bounds["L_qstar"] - bounds["L_q"]
    out["total_gap"] = logpx - bounds["L_q"]
    return out


def summarise(per_point: dict, names=QUANTITIES) -> dict:
    """mean and standard error over points; flags gaps below zero by more than 3 sem."""
    summary, failures = {}, []
    for name in names:
        v = per_point[name].double()
        mean, sem = v.mean().item(), (v.std() / math.sqrt(len(v))).item() if len(v) > 1 else 0.0
        summary[name], summary[f"{name}_sem"] = mean, sem
        if name.endswith("_gap") and mean < -3 * sem:
            failures.append(f"{name} = {mean:.3f} +- {sem:.3f} < 0: estimator failure")
    summary["n_points"] = len(per_point[names[0]])
    summary["failures"] = "; ".join(failures)
    return summary


def write_per_point(path: Path, per_point: dict) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    names = list(per_point)
    tmp = path.with_name(path.name + ".part")
    with open(tmp, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["point"] + names)
        cols = [per_point[k].tolist() for k in names]
        for i, row in enumerate(zip(*cols)):
            writer.writerow([i] + [f"{v:.5f}" for v in row])
    os.replace(tmp, path)
