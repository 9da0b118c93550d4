"""Estimators of log p(x) for a fixed batch of points, prior N(0, I).

`log_likelihood` is any callable mapping z [..., B, D] to log p(x_b|z) [..., B].

- elbo / iwae of a proposal: log w = log p(x|z) + log p(z) - log q(z), streamed over chunks,
  log-mean-exp done with logsumexp in float64.
- ais: annealed importance sampling along q0(z|x)^(1-beta) (p(z) p(x|z))^beta, from the prior
  (q0 = p(z), the paper's path) or from a per-point proposal (encoder q, fitted q*), one HMC
  move per transition in the proposal's whitened units, all chains and points in one batch
  [chains, points, D], chunked over chains.
- bdmc: forward AIS (stochastic lower bound) and reverse AIS along the same path started at
  exact posterior samples of simulated data (stochastic upper bound): the gap bounds AIS's
  own error.
"""
import math
from dataclasses import dataclass
from typing import NamedTuple

import torch

from ..models.posteriors import log_standard_normal, log_weight
from ..models.proposals import StandardNormal, log_prob_and_grad
from .timing import count


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
            log_w = log_weight(log_likelihood(z), log_standard_normal(z), log_q).double()
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
    step_size_mean: float  # final per-chain step sizes (in the proposal's whitened units)
    step_size_min: float
    step_size_max: float
    acceptance_min_point: float = float("nan")  # lowest per-point mean acceptance
    step: object = None    # the starting step size per point [1, B, 1] (or a float)


class PathState(NamedTuple):
    """A batch of chain states [C, B, D] with the terms of the annealing path evaluated there."""
    z: torch.Tensor
    ll: torch.Tensor         # log p(x|z)             [C, B]
    grad_ll: torch.Tensor    # d log p(x|z) / dz      [C, B, D]
    log_q0: torch.Tensor     # log q0(z|x)            [C, B]
    grad_log_q0: torch.Tensor


class AnnealingPath:
    """log f_beta(z) = (1 - beta) log q0(z|x) + beta (log p(z) + log p(x|z)),  beta in [0, 1].

    f_0 = q0 (normalised, exact samples), f_1 = p(x, z), so Z_1 / Z_0 = p(x). With q0 = p(z)
    (`StandardNormal`) this is the paper's path p(z) p(x|z)^beta. The AIS log-weight increment
    between beta_{t-1} and beta_t is (beta_t - beta_{t-1}) * log_ratio(z), with
    log_ratio = log p(z) + log p(x|z) - log q0(z|x)  (Neal, 2001, eq. 3).
    """

    def __init__(self, log_likelihood, proposal):
        self.log_likelihood, self.proposal = log_likelihood, proposal
        self.prior = isinstance(proposal, StandardNormal)

    def state(self, z) -> PathState:
        ll, grad_ll = _ll_and_grad(self.log_likelihood, z)
        if self.prior:  # q0 = p(z): closed form, no second gradient
            return PathState(z, ll, grad_ll, log_standard_normal(z), -z)
        return PathState(z, ll, grad_ll, *log_prob_and_grad(self.proposal, z))

    @staticmethod
    def log_ratio(s: PathState) -> torch.Tensor:
        return log_standard_normal(s.z) + s.ll - s.log_q0

    @staticmethod
    def log_f(s: PathState, beta: float) -> torch.Tensor:
        return (1 - beta) * s.log_q0 + beta * (log_standard_normal(s.z) + s.ll)

    @staticmethod
    def grad_log_f(s: PathState, beta: float) -> torch.Tensor:
        return (1 - beta) * s.grad_log_q0 + beta * (s.grad_ll - s.z)


def _where(accept, new: PathState, old: PathState) -> PathState:
    return PathState(*(torch.where(accept[..., None] if a.dim() == accept.dim() + 1 else accept,
                                   a, b) for a, b in zip(new, old)))


def leapfrog(path: AnnealingPath, s: PathState, p, beta: float, step, scale, n_leapfrog: int):
    """n_leapfrog steps of the leapfrog integrator for H(z, p) = -log f_beta(z) + |p|^2 / 2 in
    whitened coordinates u = z / scale (a diagonal mass matrix diag(1 / scale^2)):
        p <- p + (eps/2) scale * grad log f;  z <- z + eps scale * p;  p <- p + (eps/2) scale * grad
    (Neal, 2011, "MCMC using Hamiltonian dynamics", eqs. 5.18-5.20 and section 4.1)."""
    p = p + 0.5 * step * scale * path.grad_log_f(s, beta)
    for i in range(n_leapfrog):
        s = path.state(s.z + step * scale * p)
        p = p + (step if i < n_leapfrog - 1 else 0.5 * step) * scale * path.grad_log_f(s, beta)
    return s, p


def hmc_move(path: AnnealingPath, s: PathState, beta: float, step, n_leapfrog: int,
             generator=None, scale=None, return_accepted: bool = False):
    """One HMC transition leaving f_beta invariant, per chain: fresh momentum, a step size
    jittered uniformly in step * [1 - STEP_JITTER, 1 + STEP_JITTER] (drawn independently of the
    state, it keeps the kernel reversible and breaks the near-periodic trajectories of a fixed
    step: Neal 2011, section 4.2), leapfrog, then Metropolis accept/reject with probability
    min(1, exp(H_0 - H_1)). `step` [C, B, 1] is per chain; `scale` [B, D] (or None: identity
    metric) is the proposal's spread. Returns the new state and the acceptance probabilities
    (with return_accepted, the state is (state, accepted [C, B] as 0/1))."""
    scale = 1.0 if scale is None else scale
    p = torch.randn(s.z.shape, generator=generator, device=s.z.device, dtype=s.z.dtype)
    u = torch.rand(step.shape, generator=generator, device=s.z.device, dtype=s.z.dtype)
    step = step * (1 + STEP_JITTER * (2 * u - 1))
    h0 = -path.log_f(s, beta) + 0.5 * p.pow(2).sum(-1)
    new, p = leapfrog(path, s, p, beta, step, scale, n_leapfrog)
    h1 = -path.log_f(new, beta) + 0.5 * p.pow(2).sum(-1)
    accept_prob = torch.exp(torch.clamp(h0 - h1, max=0.0))
    accept_prob = torch.where(torch.isfinite(accept_prob), accept_prob, torch.zeros_like(h0))
    u = torch.rand(accept_prob.shape, generator=generator, device=s.z.device, dtype=s.z.dtype)
    accept = u < accept_prob
    moved = _where(accept, new, s)
    return ((moved, accept.to(s.z.dtype)) if return_accepted else moved), accept_prob


# Step size. AIS stays unbiased only if the HMC kernel of every transition is fixed independently
# of the chains that carry weights. So by default the step is set by chains of its own:
#   - from a proposal (whitened units already match the posterior's scale): `warmup_step`, a
#     warm-up at the first inverse temperature on independent chains (fast rate), one step per
#     point (median over its warm-up chains), then held fixed;
#   - from the prior (whitened units are the prior's, the posterior is far narrower):
#     `pilot_schedule`, a pilot sweep along the same path on PILOT_CHAINS independent chains per
#     point, adapting each pilot chain's step after every move; the step of transition t is the
#     median over a point's pilot chains, and the weighted chains follow that schedule.
# The paper's code (adapt_in_run=True, an explicit option) instead adapts each weighted chain's
# own step during the run, as the co-author's BDMC hmc.py does: x1.02 when the chain's running
# acceptance fraction (accepted moves / moves so far) exceeds 0.65, else x0.98, clamped to
# [1e-4, 0.5]. The step then depends on the chain's own past states, which biases AIS upward
# (measured on a 4-D linear-Gaussian model, 16 chains x 500 steps from the prior: README).
TARGET_ACCEPT = 0.65
MAIN_RATE = (1.02, 0.98)
WARMUP_RATE = (1.25, 0.8)
STEP_RANGE = (1e-4, 0.5)
STEP_JITTER = 0.5
PILOT_CHAINS = 4


def adapt_step(step, accept_rate, rate=MAIN_RATE, target: float = TARGET_ACCEPT):
    """step [C, B, 1] x up where accept_rate [C, B] > target, else x down; clamped."""
    up, down = rate
    return (step * torch.where(accept_rate > target, up, down)[..., None]).clamp(*STEP_RANGE)


def warmup_step(path: AnnealingPath, beta: float, z: torch.Tensor, *, init_step: float,
                n_warmup: int, n_leapfrog: int, scale=None, generator=None) -> torch.Tensor:
    """Per-point step size [1, B, 1]: n_warmup HMC moves at `beta` on chains z [C, B, D] (exact
    draws of f_beta, independent of the chains that will carry weights), adapting each chain's
    step at WARMUP_RATE; the median over a point's chains."""
    s = path.state(z)
    count(grad_rows=z.shape[0] * z.shape[1] * n_warmup * n_leapfrog)
    step = torch.full((*z.shape[:2], 1), init_step, device=z.device, dtype=z.dtype)
    for _ in range(n_warmup):
        s, accept_prob = hmc_move(path, s, beta, step, n_leapfrog, generator, scale)
        step = adapt_step(step, accept_prob, WARMUP_RATE)
    return step.median(0, keepdim=True).values


def pilot_schedule(path: AnnealingPath, betas: torch.Tensor, z: torch.Tensor, *,
                   init_step: float, n_leapfrog: int, scale=None, generator=None) -> torch.Tensor:
    """Per-transition, per-point steps [T, 1, B, 1] for the T = len(betas) - 1 transitions of a
    sweep: a pilot sweep on chains z [P, B, D] ~ f_{betas[0]} (independent of the weighted
    chains, whose weights it never touches), each pilot chain's step adapted at MAIN_RATE on
    its last move's acceptance probability; entry t is the median over a point's pilot chains
    of the step used for the move at betas[t + 1]."""
    s = path.state(z)
    count(grad_rows=z.shape[0] * z.shape[1] * (len(betas) - 1) * n_leapfrog)
    step = torch.full((*z.shape[:2], 1), init_step, device=z.device, dtype=z.dtype)
    out = torch.empty(len(betas) - 1, 1, z.shape[1], 1, device=z.device, dtype=z.dtype)
    for t in range(1, len(betas)):
        out[t - 1] = step.median(0, keepdim=True).values
        s, accept_prob = hmc_move(path, s, float(betas[t]), step, n_leapfrog, generator, scale)
        step = adapt_step(step, accept_prob)
    return out


def ais_run(path: AnnealingPath, betas: torch.Tensor, z0: torch.Tensor, *, n_leapfrog: int = 10,
            step=0.01, adapt_in_run: bool = False, scale=None, generator=None):
    """One AIS sweep over `betas` from state z0 [C, B, D] ~ f_{betas[0]}; returns
    (log w [C, B] float64, stats).

    Per transition, log w += (beta_t - beta_{t-1}) log_ratio(z_{t-1}), then one HMC move leaves
    f_{beta_t} invariant. Runs forward (0 -> 1) or reverse (1 -> 0). `step`: a float, a
    per-point [1, B, 1] tensor (`warmup_step`), or a per-transition schedule [T, 1, B, 1]
    (`pilot_schedule`); with adapt_in_run, each chain's step is adapted on its running
    acceptance fraction (the paper's code; biased). The path terms and their gradient at the
    current state are carried between transitions: a transition costs n_leapfrog gradient
    evaluations.
    """
    C, B, D = z0.shape
    count(grad_rows=C * B * (len(betas) - 1) * n_leapfrog)
    s = path.state(z0.clone())
    log_w = torch.zeros(C, B, dtype=torch.float64, device=z0.device)
    step = torch.as_tensor(step, device=z0.device, dtype=z0.dtype)
    schedule = step if step.dim() == 4 else None
    step = step.expand(C, B, 1).clone() if schedule is None else None
    accept_sum = torch.zeros(B, dtype=torch.float64, device=z0.device)
    accepted = torch.zeros(C, B, device=z0.device, dtype=z0.dtype)
    for t in range(1, len(betas)):
        log_w += (betas[t] - betas[t - 1]).item() * path.log_ratio(s).double()
        step_t = schedule[t - 1] if schedule is not None else step
        new, accept_prob = hmc_move(path, s, float(betas[t]), step_t, n_leapfrog, generator,
                                    scale, return_accepted=adapt_in_run)
        if adapt_in_run:
            s, took = new
            accepted += took
            step = adapt_step(step, accepted / t)
        else:
            s = new
        accept_sum += accept_prob.double().mean(0)
    per_point = accept_sum / max(1, len(betas) - 1)
    used = schedule if schedule is not None else step
    stats = AISStats(acceptance=per_point.mean().item(), step_size_mean=used.mean().item(),
                     step_size_min=used.min().item(), step_size_max=used.max().item(),
                     acceptance_min_point=per_point.min().item())
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


def _generator(device, seed):
    generator = torch.Generator(device=device)
    generator.manual_seed(seed if seed is not None else torch.seed() % 2 ** 31)
    return generator


def ais(log_likelihood, n_points: int, z_dim: int, *, n_chains: int, n_steps: int,
        proposal=None, n_leapfrog: int = 10, schedule: str = "sigmoid", seed=None,
        max_rows: int = 200_000, init_step: float = 0.01, n_warmup: int = 20,
        adapt_in_run: bool = False, step=None, verbose: bool = False,
        return_stats: bool = False, device=None):
    """AIS estimate of log p(x) per point, [n_points]: log-mean-exp of the chains' log weights.

    proposal: None (the prior: the paper's path) or a per-point density q0(z|x) with
    `sample(n, generator) -> [n, B, D]` and `log_prob(z) -> [n, B]` (common/models/proposals.py; its
    `scale`, if it has one, is the HMC metric); the path is q0^(1 - beta) (p(z) p(x|z))^beta and
    HMC runs in q0's whitened units. The estimate of p(x) is unbiased, so its log is a
    stochastic lower bound on log p(x), as long as the step sizes do not depend on the weighted
    chains (see the comment above `adapt_step`).

    Step size: `step` (per point [1, B, 1] or a schedule [T, 1, B, 1], e.g. a previous run's
    `stats.step`) if given; else, from a proposal with n_warmup > 0, a warm-up of n_warmup moves
    on independent chains at beta = 0 (`warmup_step`); else a pilot sweep on PILOT_CHAINS
    independent chains (`pilot_schedule`, the prior path's default). adapt_in_run: the paper's
    per-chain adaptation during the run instead (biased upward; kept for comparison).
    """
    device = device or _probe_device(log_likelihood, n_points, z_dim)
    proposal = proposal or StandardNormal(n_points, z_dim, device)
    scale = getattr(proposal, "scale", None)
    path = AnnealingPath(log_likelihood, proposal)
    generator = _generator(device, seed)
    betas = beta_schedule(n_steps, schedule)
    chunks = _chain_chunks(n_chains, n_points, max_rows)
    if adapt_in_run:
        step = init_step if step is None else step
    elif step is None and n_warmup > 0 and not path.prior:
        step = warmup_step(path, float(betas[0]), proposal.sample(chunks[0], generator),
                           init_step=init_step, n_warmup=n_warmup, n_leapfrog=n_leapfrog,
                           scale=scale, generator=generator)
    elif step is None:
        step = pilot_schedule(path, betas, proposal.sample(PILOT_CHAINS, generator),
                              init_step=init_step, n_leapfrog=n_leapfrog, scale=scale,
                              generator=generator)
    log_ws, all_stats = [], []
    for c in chunks:
        z0 = proposal.sample(c, generator)
        log_w, stats = ais_run(path, betas, z0, n_leapfrog=n_leapfrog, step=step,
                               adapt_in_run=adapt_in_run, scale=scale, generator=generator)
        log_ws.append(log_w)
        all_stats.append(stats)
    log_w = torch.cat(log_ws, 0)
    stats = _merge_stats(all_stats)
    step = torch.as_tensor(step, device=device)
    stats.step = step if step.dim() == 4 else step.expand(1, n_points, 1)
    if verbose:
        print(f"[ais] {n_points} points x {n_chains} chains x {n_steps} steps from "
              f"{type(proposal).__name__}: acceptance {stats.acceptance:.2f} (lowest point "
              f"{stats.acceptance_min_point:.2f}), step size mean {stats.step_size_mean:.3g} "
              f"[{stats.step_size_min:.3g}, {stats.step_size_max:.3g}]", flush=True)
    estimate = logmeanexp(log_w, 0).float()
    return (estimate, stats) if return_stats else estimate


def _merge_stats(stats):
    return AISStats(acceptance=sum(s.acceptance for s in stats) / len(stats),
                    step_size_mean=sum(s.step_size_mean for s in stats) / len(stats),
                    step_size_min=min(s.step_size_min for s in stats),
                    step_size_max=max(s.step_size_max for s in stats),
                    acceptance_min_point=min(s.acceptance_min_point for s in stats))


@dataclass
class BDMCResult:
    lower: torch.Tensor   # forward AIS, [n_points]
    upper: torch.Tensor   # reverse AIS from exact posterior samples, [n_points]

    @property
    def gap(self) -> float:
        """Mean upper - lower: a measured bound on AIS's error on this kind of data."""
        return (self.upper - self.lower).mean().item()


def bdmc(log_likelihood, posterior_samples: torch.Tensor, *, n_chains: int, n_steps: int,
         proposal=None, n_leapfrog: int = 10, schedule: str = "sigmoid", seed=None,
         max_rows: int = 200_000, init_step: float = 0.01, n_warmup: int = 20,
         adapt_in_run: bool = False, verbose: bool = False) -> BDMCResult:
    """Bidirectional Monte Carlo on simulated data (Grosse, Ghahramani & Adams, 2015).

    posterior_samples [B, D] are exact draws from p(z|x_b), e.g. the z that generated x_b.
    Reverse AIS along the same path (proposal q0 or the prior), from beta = 1 to 0, estimates
    1/p(x) unbiasedly, so -logmeanexp(log w_rev) is a stochastic upper bound on log p(x);
    forward AIS gives the lower bound. The reverse run reuses the forward run's steps (a
    warmed-up step, or the pilot schedule reversed: both independent of the exact samples, so
    it stays exact); with adapt_in_run it adapts in the run as the forward one does.
    """
    n_points, z_dim = posterior_samples.shape
    device = posterior_samples.device
    settings = dict(n_chains=n_chains, n_steps=n_steps, proposal=proposal, n_leapfrog=n_leapfrog,
                    schedule=schedule, max_rows=max_rows, init_step=init_step,
                    n_warmup=n_warmup, adapt_in_run=adapt_in_run)
    lower, stats = ais(log_likelihood, n_points, z_dim, seed=seed, device=device,
                       return_stats=True, **settings)
    proposal = proposal or StandardNormal(n_points, z_dim, device)
    path = AnnealingPath(log_likelihood, proposal)
    generator = _generator(device, (seed if seed is not None else 0) + 1)
    betas = beta_schedule(n_steps, schedule).flip(0)
    step = init_step if adapt_in_run else stats.step.flip(0) if stats.step.dim() == 4 \
        else stats.step
    log_ws = []
    for c in _chain_chunks(n_chains, n_points, max_rows):
        z0 = posterior_samples.unsqueeze(0).expand(c, -1, -1).contiguous()
        log_w, _ = ais_run(path, betas, z0, n_leapfrog=n_leapfrog, step=step,
                           adapt_in_run=adapt_in_run, scale=getattr(proposal, "scale", None),
                           generator=generator)
        log_ws.append(log_w)
    upper = (-logmeanexp(torch.cat(log_ws, 0), 0)).float()
    result = BDMCResult(lower=lower, upper=upper)
    if verbose:
        print(f"[bdmc] {n_points} simulated points, {type(proposal).__name__} path: forward "
              f"{lower.mean():.3f}, reverse {upper.mean():.3f}, gap {result.gap:.3f} nats",
              flush=True)
    return result
