"""Estimators of log p(x) for a fixed batch of points, prior N(0, I).

`log_likelihood` is any callable mapping z [..., B, D] to log p(x_b|z) [..., B].

- elbo / iwae of a proposal: log w = log p(x|z) + log p(z) - log q(z), streamed over chunks,
  log-mean-exp done with logsumexp in float64.
- ais: annealed importance sampling along p(z) p(x|z)^beta, one HMC move per transition,
  all chains and points in one batch [chains, points, D], chunked over chains.
- bdmc: forward AIS (stochastic lower bound) and reverse AIS started at exact posterior samples
  of simulated data (stochastic upper bound): the gap bounds AIS's own error.
"""
import math
from dataclasses import dataclass

import torch

from .posteriors import log_standard_normal


def logmeanexp(a: torch.Tensor, dim: int = 0) -> torch.Tensor:
    return torch.logsumexp(a, dim=dim) - math.log(a.shape[dim])


def proposal_bounds(log_likelihood, sample_and_log_prob, k: int, chunk: int):
    """(mean ELBO over k samples, IWAE over the same k samples), each [B] in float64.

    sample_and_log_prob(n) -> z [n, B, D], log_q [n, B]; evaluated without gradients.
    """
    elbo_sum, lse = None, None
    with torch.no_grad():
        for start in range(0, k, chunk):
            z, log_q = sample_and_log_prob(min(chunk, k - start))
            log_w = (log_likelihood(z) + log_standard_normal(z) - log_q).double()
            s, l = log_w.sum(0), torch.logsumexp(log_w, 0)
            elbo_sum = s if elbo_sum is None else elbo_sum + s
            lse = l if lse is None else torch.logaddexp(lse, l)
    return elbo_sum / k, lse - math.log(k)


def elbo(log_likelihood, sample_and_log_prob, k: int, chunk: int = 500) -> torch.Tensor:
    return proposal_bounds(log_likelihood, sample_and_log_prob, k, chunk)[0]


def iwae(log_likelihood, sample_and_log_prob, k: int, chunk: int = 500) -> torch.Tensor:
    return proposal_bounds(log_likelihood, sample_and_log_prob, k, chunk)[1]


def beta_schedule(n_steps: int, schedule: str = "sigmoid", rad: float = 4.0,
                  dtype=torch.float64) -> torch.Tensor:
    """n_steps + 1 inverse temperatures from 0 to 1 (sigmoidal: Grosse et al.'s, rescaled)."""
    if schedule == "linear":
        return torch.linspace(0, 1, n_steps + 1, dtype=dtype)
    if schedule == "sigmoid":
        s = torch.sigmoid(torch.linspace(-rad, rad, n_steps + 1, dtype=dtype))
        return (s - s[0]) / (s[-1] - s[0])
    raise ValueError(f"unknown AIS schedule {schedule!r}; allowed: sigmoid, linear")


def _ll_and_grad(log_likelihood, z):
    with torch.enable_grad():
        z = z.detach().requires_grad_(True)
        ll = log_likelihood(z)
        grad, = torch.autograd.grad(ll.sum(), z)
    return ll.detach(), grad


@dataclass
class AISStats:
    acceptance: float      # mean HMC acceptance probability over transitions, chains, points
    step_size_mean: float  # final per-chain step sizes
    step_size_min: float
    step_size_max: float


def hmc_move(log_likelihood, z, ll, grad_ll, beta: float, step, n_leapfrog: int, generator=None):
    """One HMC transition leaving p(z) p(x|z)^beta invariant, per chain.

    U(z) = |z|^2 / 2 - beta log p(x|z),  grad U = z - beta grad log p(x|z); leapfrog with
    per-chain step sizes `step` [..., 1], Metropolis accept/reject per chain. Returns the new
    (z, ll, grad_ll) and the acceptance probabilities.
    """
    def energy(z_, ll_):
        return 0.5 * z_.pow(2).sum(-1) - beta * ll_

    p = torch.randn(z.shape, generator=generator, device=z.device, dtype=z.dtype)
    h0 = energy(z, ll) + 0.5 * p.pow(2).sum(-1)
    z_new, ll_new, g_new = z, ll, grad_ll
    p = p - 0.5 * step * (z_new - beta * g_new)
    for i in range(n_leapfrog):
        z_new = z_new + step * p
        ll_new, g_new = _ll_and_grad(log_likelihood, z_new)
        p = p - (step if i < n_leapfrog - 1 else 0.5 * step) * (z_new - beta * g_new)
    h1 = energy(z_new, ll_new) + 0.5 * p.pow(2).sum(-1)
    accept_prob = torch.exp(torch.clamp(h0 - h1, max=0.0))
    accept_prob = torch.where(torch.isfinite(accept_prob), accept_prob, torch.zeros_like(h0))
    u = torch.rand(accept_prob.shape, generator=generator, device=z.device, dtype=z.dtype)
    accept = u < accept_prob
    z = torch.where(accept[..., None], z_new, z)
    ll = torch.where(accept, ll_new, ll)
    grad_ll = torch.where(accept[..., None], g_new, grad_ll)
    return z, ll, grad_ll, accept_prob


def ais_run(log_likelihood, betas: torch.Tensor, z0: torch.Tensor, *, n_leapfrog: int = 10,
            init_step: float = 0.01, target_accept: float = 0.65, generator=None):
    """One AIS sweep over `betas` from state z0 [C, B, D]; returns (log w [C, B] float64, stats).

    log w = sum_t (beta_t - beta_{t-1}) log p(x|z_{t-1}); after each weight update one HMC move
    leaves p(z) p(x|z)^beta_t invariant. Runs forward (0 -> 1) or reverse (1 -> 0). The
    likelihood and its gradient at the current state are carried over between transitions, so a
    transition costs exactly n_leapfrog gradient evaluations.
    """
    z = z0.clone()
    C, B, D = z.shape
    ll, grad_ll = _ll_and_grad(log_likelihood, z)
    log_w = torch.zeros(C, B, dtype=torch.float64, device=z.device)
    step = torch.full((C, B, 1), init_step, device=z.device, dtype=z.dtype)
    accept_sum = torch.zeros((), dtype=torch.float64, device=z.device)
    for t in range(1, len(betas)):
        log_w += (betas[t] - betas[t - 1]).item() * ll.double()
        z, ll, grad_ll, accept_prob = hmc_move(log_likelihood, z, ll, grad_ll, float(betas[t]),
                                               step, n_leapfrog, generator)
        # per-chain step size towards the target acceptance rate (x1.02 / x0.98)
        step = (step * torch.where(accept_prob > target_accept, 1.02, 0.98)[..., None])
        step = step.clamp(1e-4, 0.5)
        accept_sum += accept_prob.double().mean()
    n_trans = max(1, len(betas) - 1)
    stats = AISStats(acceptance=(accept_sum / n_trans).item(), step_size_mean=step.mean().item(),
                     step_size_min=step.min().item(), step_size_max=step.max().item())
    return log_w, stats


def _probe_device(log_likelihood, n_points, z_dim):
    """The device a log-likelihood lives on: its `device` attribute, else one tiny CPU call."""
    if hasattr(log_likelihood, "device"):
        return torch.device(log_likelihood.device)
    with torch.no_grad():
        return log_likelihood(torch.zeros(1, n_points, z_dim)).device


def _chain_chunks(n_chains, n_points, max_rows):
    per = max(1, max_rows // max(1, n_points))
    return [min(per, n_chains - s) for s in range(0, n_chains, per)]


def ais(log_likelihood, n_points: int, z_dim: int, *, n_chains: int, n_steps: int,
        n_leapfrog: int = 10, schedule: str = "sigmoid", seed=None, max_rows: int = 200_000,
        init_step: float = 0.01, verbose: bool = False, return_stats: bool = False, device=None):
    """AIS estimate of log p(x) per point, [n_points]: log-mean-exp of the chains' log weights."""
    device = device or _probe_device(log_likelihood, n_points, z_dim)
    generator = torch.Generator(device=device)
    generator.manual_seed(seed if seed is not None else torch.seed() % 2 ** 31)
    betas = beta_schedule(n_steps, schedule)
    log_ws, all_stats = [], []
    for c in _chain_chunks(n_chains, n_points, max_rows):
        z0 = torch.randn((c, n_points, z_dim), generator=generator, device=device)
        log_w, stats = ais_run(log_likelihood, betas, z0, n_leapfrog=n_leapfrog,
                               init_step=init_step, generator=generator)
        log_ws.append(log_w)
        all_stats.append(stats)
    log_w = torch.cat(log_ws, 0)
    stats = _merge_stats(all_stats)
    if verbose:
        print(f"[ais] {n_points} points x {n_chains} chains x {n_steps} steps: acceptance "
              f"{stats.acceptance:.2f}, step size mean {stats.step_size_mean:.3g} "
              f"[{stats.step_size_min:.3g}, {stats.step_size_max:.3g}]", flush=True)
    estimate = logmeanexp(log_w, 0).float()
    return (estimate, stats) if return_stats else estimate


def _merge_stats(stats):
    return AISStats(acceptance=sum(s.acceptance for s in stats) / len(stats),
                    step_size_mean=sum(s.step_size_mean for s in stats) / len(stats),
                    step_size_min=min(s.step_size_min for s in stats),
                    step_size_max=max(s.step_size_max for s in stats))


@dataclass
class BDMCResult:
    lower: torch.Tensor   # forward AIS, [n_points]
    upper: torch.Tensor   # reverse AIS from exact posterior samples, [n_points]

    @property
    def gap(self) -> float:
        """Mean upper - lower: a measured bound on AIS's error on this kind of data."""
        return (self.upper - self.lower).mean().item()


def bdmc(log_likelihood, posterior_samples: torch.Tensor, *, n_chains: int, n_steps: int,
         n_leapfrog: int = 10, schedule: str = "sigmoid", seed=None, max_rows: int = 200_000,
         init_step: float = 0.01, verbose: bool = False) -> BDMCResult:
    """Bidirectional Monte Carlo on simulated data.

    posterior_samples [B, D] are exact draws from p(z|x_b), e.g. the z that generated x_b.
    Reverse AIS from beta = 1 to 0 estimates 1/p(x) unbiasedly, so -logmeanexp(log w_rev) is a
    stochastic upper bound on log p(x); forward AIS gives the lower bound.
    """
    n_points, z_dim = posterior_samples.shape
    device = posterior_samples.device
    lower = ais(log_likelihood, n_points, z_dim, n_chains=n_chains, n_steps=n_steps,
                n_leapfrog=n_leapfrog, schedule=schedule, seed=seed, max_rows=max_rows,
                init_step=init_step, device=device)
    generator = torch.Generator(device=device)
    generator.manual_seed((seed if seed is not None else 0) + 1)
    betas = beta_schedule(n_steps, schedule).flip(0)
    log_ws = []
    for c in _chain_chunks(n_chains, n_points, max_rows):
        z0 = posterior_samples.unsqueeze(0).expand(c, -1, -1).contiguous()
        log_w, _ = ais_run(log_likelihood, betas, z0, n_leapfrog=n_leapfrog, init_step=init_step,
                           generator=generator)
        log_ws.append(log_w)
    upper = (-logmeanexp(torch.cat(log_ws, 0), 0)).float()
    result = BDMCResult(lower=lower, upper=upper)
    if verbose:
        print(f"[bdmc] {n_points} simulated points: forward {lower.mean():.3f}, reverse "
              f"{upper.mean():.3f}, gap {result.gap:.3f} nats", flush=True)
    return result
