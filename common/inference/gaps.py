"""The gap computation: for a trained model and a fixed set of points,

    L[q]      mean ELBO of the amortised q over k_eval samples (and IWAE of q, same samples)
    L[q*]     q* fitted per point (common/inference/local_opt.py), for the model's own family
              and for ffg
    log p^    AIS per point, once per decoder (LOGPX_RULE: one estimator fixed in advance, no
              per-point selection); beside it the paper's rule, max(AIS, IWAE of every q*, IWAE
              of q) per point (`logpx_paper`), and the same candidates pooled (`logpx_pooled`)
    approximation gap = log p^ - L[q*],  amortization gap = L[q*] - L[q],  total = log p^ - L[q]
    (and `approx_gap_paper`, `total_gap_paper` from the paper's rule; the amortization gap does
    not involve log p^)

Why not the paper's max: each candidate is the log of an unbiased estimate of p(x), but the
maximum of several picks, per point, whichever drew an upward fluctuation: on our models it sat
0.28-0.72 nats above the pooled candidates (max_rule_excess), and a referee's independent AIS
(2 x 16 chains x 10,000 steps) agreed with our AIS (+0.07 +- 0.07 nats) but not with our max
(+0.38 +- 0.16). AIS alone is a stochastic lower bound whose own error the BDMC gap bounds.

Every quantity is averaged over the same points; mean and standard error over points. A gap
below zero by more than 3 standard errors is reported as an estimator failure, not hidden.

q* of the model's own family is the best member found. The encoder's q is itself a member, and
so is every factorised Gaussian for the flow family (a coupling with zero weights in its heads
is an affine map with constant scale and shift), so where local optimisation ends below one of
them (noisy steps, too few steps), L[q*] = max(L[q*_opt], L[q], L[q*_ffg] for flows) per point.
How often the optimised member loses is reported (`qstar_fallback`, fraction of points) rather
than hidden. The ffg q* of a flow model has no floor from q (q is not a Gaussian). The flow q*
starts, per point, from the better of the amortised flow and the ffg q* written as a flow.

log p^'s AIS starts from a per-point proposal (cfg.ais_proposal): the prior (the paper's path),
the encoder's q, or the fitted q* (own family) of the decoder's first model (q* depends only on
the decoder and x). Certificates, per evaluation (CERTIFICATE_TARGETS): the BDMC gap of the same AIS on data
simulated from the decoder (computed once per decoder), the share of points where AIS (not an
IWAE) sets log p^, the share of q* fits stopped by the step cap, and the convergence probe (the
change of mean L[q*] on a fixed subset when the same fit may run twice as long). A flow model's
ffg q* (a floor of its L[q*], and Table 3's L[q*_FFG]) has its own cap share and probe
(`ffg_fit_certified`), which a claim on L[q*_FFG] requires.
"""
import csv
import hashlib
import math
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from ..config import atomic_file
from .estimators import ais, bdmc
from ..models.families import FAMILIES, GAUSSIAN, MOMENT_SAMPLES, moments_start
from .local_opt import continue_local, optimize_local
from ..models.posteriors import log_standard_normal, log_weight
from .timing import count, unit
from ..models.vae import VAE, BatchLikelihood

EVAL_VERSION = 14  # bump when what an evaluation computes changes: cached evaluations are redone
                  # (4: the ffg q* of a flow model starts from shrunk moments, has certificates;
                  # 5: the probe continues each fit, the max rule's pooled certificate;
                  # 6: q*'s non-finite guard, AF's bounded log-variances;
                  # 7: AIS starts from the member that set L[q*] where the fit lost;
                  # 8: AF's AIS and BDMC run in (z, v) from AF's exact joint density; the
                  # probe measures the reported L[q*], the best of the fit and its floor;
                  # 9: log p^ is AIS, the paper's max rule a column beside it;
                  # 10: certify or extend: AIS runs the steps its BDMC certified; a q* fit that
                  # lost to another member is retried from it at a tenth of the lr;
                  # 11: every chunk probes its own q* fits and extends them until certified;
                  # the probe scores both fits on common random numbers;
                  # 12: a q* fit lost to another member only by more than 3 s.e. of their
                  # paired difference (significant_losses): a tie keeps the fit's numbers;
                  # 13: ... the best of the fit and its retries is weighed, and kept at a tie;
                  # 14: a last retry at the fit's own rate, from a fresh seed: RETRY_RATES)
# earlier versions whose numbers today's code reproduces wherever no q* fit, retried, still lost
# to another member (12, 13 and 14 changed only those points: neither a fallback nor a tie):
# common/reporting/report.same_as_today
SAME_WITHOUT_FALLBACK = (11, 12, 13)
LOGPX_RULE = "ais"   # what sets log p^ (and so every gap): AIS, no per-point selection
AIS_PROPOSALS = ("prior", "encoder", "qstar")
# a number is certified when its decoder's BDMC gap, the q* cap share and the probe are within
# (qstar_fallback: the share of points whose q* fit, retried, still lost to another member by
# more than LOSS_SES standard errors; qstar_tie, shown beside it: lost within them)
CERTIFICATE_TARGETS = {"bdmc_gap": 0.5, "qstar_capped": 0.05, "qstar_probe": 0.1,
                       "qstar_fallback": 0.01}
# ... with its log-variance lowered by each of these (the best per point is the start): the
# moments cover the whole flow q, the ffg q* is narrower (mode-seeking). On MNIST quick (flow
# model, 500 test points) the moment start scored -159, the best shrink -124, and the ffg q* from
# it stopped at -114.24 after 2279 steps, none capped, against -115.07 with half the points
# capped at 4000 steps from the moments alone
LOGVAR_SHRINKS = (0.0, 1.0, 2.0, 3.0)
# the columns every gaps.csv carries after its gaps: what certifies them
CERTIFICATE_FIELDS = ["certified", "certificate_misses", "bdmc_gap", "bdmc_lower", "bdmc_upper",
                      "bdmc_path", "bdmc_paths_tried", "bdmc_settings", "ais_steps_used",
                      "bdmc_at_cap",
                      "ais_sets_logpx", "ais_below_logpx",
                      "max_rule_excess",
                      "ais_acceptance", "ais_acceptance_min",
                      "qstar_capped", "qstar_steps", "qstar_probe", "qstar_fallback",
                      "qstar_tie", "qstar_budget",
                      "ffg_fit_certified", "qstar_capped_ffg", "qstar_probe_ffg"]
# ... and what made them: the commit, command and time that COMPUTED each row (a cached row
# keeps its own), and the config it belongs to (rows of one config_id merge across subset runs)
COMPUTED_FIELDS = ["computed_commit", "computed_time", "computed_command", "config_id"]
QUANTITIES = ("logpx", "L_qstar", "L_q", "approx_gap", "amort_gap", "total_gap")
# the same under the paper's rule (log p^ = max over the estimators, per point)
PAPER_RULE_QUANTITIES = ("logpx_paper", "approx_gap_paper", "total_gap_paper")
# the columns a gaps.csv carries for them, and the rule that set its log p^ (a gaps.csv without
# `logpx_rule` was made by the paper's rule, before EVAL_VERSION 9)
PAPER_RULE_FIELDS = ["logpx_rule"] + [f for q in PAPER_RULE_QUANTITIES for f in (q, f"{q}_sem")]


@dataclass(frozen=True)
class EvalConfig:
    n_points: int = 500             # evaluation points per split (paper: 1000)
    k_eval: int = 1000              # samples for L[q], IWAE of q and L[q*] (paper: 5000)
    qstar_samples: int = 10         # samples per q* step (paper: 50)
    qstar_lr: float = 1e-3          # Adam lr of q* (paper: 1e-3)
    qstar_lr_decay: float = 1.0     # < 1: a point's lr x this at every check without a new best
    qstar_tol: float = 0.0          # a window is a new best only when it improves by more (nats)
    qstar_check_every: int = 100    # stopping rule: compare mean loss every ... steps (paper: 100)
    qstar_patience: int = 10        # ... and stop after more than this many checks without gain
    qstar_max_steps: int = 5000     # step cap (paper: none)
    qstar_warm_start: bool = True   # start q* at the encoder's output (paper: at the prior)
    qstar_ffg_fit: bool = True      # flow models: fit the ffg q* too (a start and a floor of the
                                    # flow q*, and Table 3's L[q*_FFG]); off where no table or
                                    # claim uses it (exp55)
    ais_chains: int = 8             # paper: 100
    ais_steps: int = 200            # intermediate distributions (paper: 5000-10000)
    ais_leapfrog: int = 5           # paper: 10
    ais_init_step: float = 0.1      # initial HMC step (paper: 0.01, adapted per chain)
    ais_proposal: str = "qstar"     # AIS start: prior (paper) | encoder (q) | qstar (fitted q*)
    ais_warmup: int = 20            # HMC moves at beta = 0 that set a fixed step from a proposal
                                    # (from the prior a pilot sweep sets a per-step schedule)
    ais_adapt: bool = False         # the paper's per-chain step adaptation during the run
                                    # instead: biased upward (docs/estimators.md, "AIS step size")
    ais_budget_cap: int = 8         # certify or extend: while the BDMC gap exceeds its target,
                                    # AIS's steps double, up to this multiple of ais_steps
    ais_other_path: str = ""        # a second AIS start (prior | encoder | qstar) that BDMC tries
                                    # when ais_proposal's path misses at ais_steps: the one with
                                    # the smaller gap there is extended and runs log p^'s AIS.
                                    # Early checkpoints: the encoder's q is far from a posterior
                                    # that is close to the prior (exp66's quick FFG at epoch 10,
                                    # BDMC at 100 steps: 130.8 nats from q, 1.9 from the prior)
    qstar_budget_cap: int = 4       # certify or extend q*: while a chunk's probe misses its
                                    # target, that family's fits of the chunk run on under twice
                                    # the patience and cap, up to this multiple (1: never)
    bdmc_points: int = 50           # simulated points for the BDMC bound on AIS's error
    qstar_probe_points: int = 50    # points on which q* may run twice as long (0: no probe)
    qstar_probe_mode: str = "continue"  # continue: each fit runs on from where it stopped under
                                    # twice the patience and cap (pays the extra steps only);
                                    # refit: the whole fit again with twice the budget (before)
    point_chunk: int = 1000         # points evaluated together: memory bound, and the unit of
                                    # SHARDS=N (each chunk draws from its own seed, so a result
                                    # depends on it and not on the shards). Smaller costs more:
                                    # a quick flow evaluation of 200 MNIST points took 112 s in
                                    # one chunk, 122 s in 2, 156 and 198 s in 4 (each chunk's
                                    # q* ends with a tail of few points; tools/chunk_cost.py);
                                    # quick and paper: 250


def own_local(model: VAE):
    """The local family of the model's own posterior family (common/models/families.py)."""
    return model.encoder.family.local


def own_family(model: VAE) -> str:
    """The name of that local family: the q* a row's L[q*] comes from."""
    return own_local(model).name


def local_of(model: VAE, family: str):
    """A local family a model's q* may be fitted in: its own, or the Gaussian (every model's)."""
    if family == own_family(model):
        return own_local(model)
    if family == GAUSSIAN:
        return FAMILIES[GAUSSIAN](model.z_dim, model.config).local
    raise ValueError(f"a {model.config.family} model's q* is fitted in its own family "
                     f"({own_family(model)}) or {GAUSSIAN}, not {family}")


def encoder_init(model: VAE, x: torch.Tensor, family: str, seed: int = 0) -> dict:
    """The encoder's q(z|x) as per-point parameters of a local family (warm start of q*): its
    own (q.local_params), or for the Gaussian q* of a non-Gaussian q its moments (samples drawn
    from a generator seeded by `seed`, so a cached result never depends on what ran before)."""
    with torch.no_grad():
        q = model.encoder.posterior(x)
        if family == own_family(model):
            return q.local_params()
        local_of(model, family)   # a family this model has a q* in, else ValueError
        mu, logvar = moments_start(q, MOMENT_SAMPLES,
                                   torch.Generator(device=x.device).manual_seed(seed))
        return {"mu": mu, "logvar": logvar}


def encoder_starts(model: VAE, x: torch.Tensor, family: str, seed: int = 0) -> list:
    """Candidate starts of a local family from the encoder: its q (encoder_init), and for the
    Gaussian q* of a non-Gaussian model also the moments with shrunk variances (LOGVAR_SHRINKS)."""
    init = encoder_init(model, x, family, seed)
    if family != GAUSSIAN or own_family(model) == GAUSSIAN:
        return [init]
    return [{"mu": init["mu"], "logvar": init["logvar"] - s} for s in LOGVAR_SHRINKS]


def amortised_bounds(model: VAE, x: torch.Tensor, k: int):
    """(L[q], IWAE of q) per point over the same k samples."""
    with unit("L[q] and IWAE of q over k"):
        count(fwd_rows=x.shape[0] * k)
        return tuple(v.float() for v in model.bounds(x, k))


def qstar_rule(cfg: EvalConfig, budget: int = 1) -> dict:
    """cfg's q* algorithm as optimize_local's keywords (samples, rate and its plateau decay, the
    stopping rule and its cap, final samples): one place, so the batched fit, the probe's
    continuation and the bench's per-point loop run the same algorithm. budget multiplies the
    step cap and the patience."""
    return dict(n_samples=cfg.qstar_samples, lr=cfg.qstar_lr, check_every=cfg.qstar_check_every,
                patience=cfg.qstar_patience * budget, max_steps=cfg.qstar_max_steps * budget,
                eval_samples=cfg.k_eval, lr_decay=cfg.qstar_lr_decay, tol=cfg.qstar_tol)


def qstar_start(model: VAE, x: torch.Tensor, family: str, cfg: EvalConfig, seed: int):
    """Where a q* fit starts: the best of the encoder's starts, or None (the family's prior
    start) when cfg.qstar_warm_start is off."""
    if not cfg.qstar_warm_start:
        return None
    starts = encoder_starts(model, x, family, seed)
    return starts[0] if len(starts) == 1 else best_start(model, x, starts, seed, family)


def local_bounds(model: VAE, x: torch.Tensor, family: str, cfg: EvalConfig, seed: int,
                 verbose: bool = False, init: dict = None, budget: int = 1):
    """q* of one local family on x. init: start (default: qstar_start's); budget: multiplies
    the step cap and the patience."""
    local = local_of(model, family)
    if init is None:
        init = qstar_start(model, x, family, cfg, seed)
    for p in model.decoder.parameters():
        p.requires_grad_(False)
    with unit(f"q* {family} fit"):
        return optimize_local(BatchLikelihood(model, x), local, x.shape[0], init=init, seed=seed,
                              verbose=verbose, device=x.device, **qstar_rule(cfg, budget))


START_SAMPLES = 100  # samples that score the candidate starts of a q*


def sample_chunks(samples: int, chunk: int) -> list:
    """Sizes of the chunks `samples` draws are taken in, `chunk` at a time (memory bound)."""
    return [chunk] * (samples // chunk) + ([samples % chunk] if samples % chunk else [])


def start_score(model: VAE, x: torch.Tensor, params: dict, seed: int,
                family: str, samples: int = START_SAMPLES, chunk: int = 500) -> torch.Tensor:
    """ELBO per point of a per-point q (flat parameters of a local family), over `samples`
    samples drawn from `seed` (chunk at a time): two members scored with the same seed share
    their base draws (common random numbers)."""
    local = local_of(model, family)
    generator = torch.Generator(device=x.device).manual_seed(seed)
    total = torch.zeros(x.shape[0], device=x.device)
    with unit("start scores"), torch.no_grad():
        count(fwd_rows=x.shape[0] * samples)
        for size in sample_chunks(samples, chunk):
            z, log_q = local.rsample(params, size, generator)
            total += log_weight(model.log_likelihood(x, z), log_standard_normal(z),
                                log_q).sum(0)
    return total / samples


def best_start(model: VAE, x: torch.Tensor, starts: list, seed: int, family: str) -> dict:
    """Per point, the start (flat parameters of one local family) with the highest ELBO; the
    first one on a tie."""
    scores = torch.stack([start_score(model, x, s, seed, family) for s in starts])
    best = scores.argmax(0)
    return {k: torch.stack([s[k] for s in starts])[best, torch.arange(x.shape[0])]
            for k in starts[0]}


def fit_qstar(model: VAE, x: torch.Tensor, cfg: EvalConfig, seed: int, budget: int = 1,
              verbose: bool = False) -> dict:
    """{local family: LocalOptResult}: the Gaussian q* (GAUSSIAN, for every model unless
    cfg.qstar_ffg_fit is off for a non-Gaussian one) and the model's own family's. The own q*
    starts, per point, from the better of the Gaussian q* written as a member of it and the
    amortised q: a flow-trained decoder's posterior is far from Gaussian (MNIST quick: L[q*_ffg]
    -115 against L[q] -98), so the Gaussian start alone left the fit 20 nats to climb."""
    out = {}
    own = own_family(model)
    if GAUSSIAN in row_fits(model, cfg):
        out[GAUSSIAN] = local_bounds(model, x, GAUSSIAN, cfg, seed, budget=budget,
                                     verbose=verbose)
    if own != GAUSSIAN:
        starts = [s for s in [gaussian_member(model, out[GAUSSIAN], seed)] if s is not None] \
            if GAUSSIAN in out else []
        if cfg.qstar_warm_start:
            starts.append(encoder_init(model, x, own, seed))
        init = best_start(model, x, starts, seed, own) if len(starts) > 1 else \
            (starts[0] if starts else None)
        out[own] = local_bounds(model, x, own, cfg, seed, init=init, budget=budget,
                                verbose=verbose)
    return out


def gaussian_member(model: VAE, gaussian_fit, seed: int):
    """The Gaussian q* written as a member of the model's own local family (a start of its q*),
    or None where the family has no such member."""
    return own_local(model).from_gaussian(gaussian_fit.params["mu"], gaussian_fit.params["logvar"],
                                          torch.Generator().manual_seed(seed))


class SharedQstar:
    """q* of ONE decoder, fitted once and shared by every encoder trained on it (exp53's frozen
    decoder). q* depends only on the decoder, the family and x, so fitting it once per family
    gives every encoder the same reference (its approximation gaps are then comparable) at a
    fraction of the cost. Each family's fit starts, per point, from the best of every encoder's
    q (and, for a non-Gaussian family, of the Gaussian q* written as a member). Called like
    fit_qstar on a chunk; results are kept per (seed, budget, size), so each chunk is fitted
    once. verbose: the fits print their progress."""

    def __init__(self, models: dict, cfg: EvalConfig, verbose: bool = False):
        self.models, self.cfg, self.fits = list(models.values()), cfg, {}
        self.verbose = verbose
        first = self.models[0].decoder.state_dict()
        for m in self.models[1:]:
            other = m.decoder.state_dict()
            if other.keys() != first.keys() or any(not torch.equal(first[k], other[k])
                                                   for k in first):
                raise ValueError("SharedQstar needs models with one decoder; these differ")
        self.by_family = {}   # non-Gaussian local family -> the models whose own family it is
        for m in self.models:
            if own_family(m) != GAUSSIAN:
                self.by_family.setdefault(own_family(m), []).append(m)

    def __call__(self, x: torch.Tensor, seed: int, budget: int = 1) -> dict:
        key = (seed, budget, x.shape[0])
        if key not in self.fits:
            self.fits[key] = self._fit(x, seed, budget)
        return self.fits[key]

    def longer(self, model: VAE, x: torch.Tensor, fits: dict, seed: int) -> dict:
        """The probe's longer fits of the first len(x) points, computed once for every encoder."""
        key = ("longer", seed, x.shape[0])
        if key not in self.fits:
            self.fits[key] = {f: longer_fits(ms[0] if (ms := self.by_family.get(f)) else model,
                                             x, {f: r}, self.cfg, seed, fit=self)[f]
                              for f, r in fits.items()}
        return self.fits[key]

    def _fit(self, x, seed, budget) -> dict:
        cfg, model = self.cfg, self.models[0]
        start = best_start(model, x, [s for m in self.models
                                      for s in encoder_starts(m, x, GAUSSIAN, seed)],
                           seed, GAUSSIAN) if cfg.qstar_warm_start else None
        out = {GAUSSIAN: local_bounds(model, x, GAUSSIAN, cfg, seed, init=start, budget=budget,
                                      verbose=self.verbose)}
        for family, models in self.by_family.items():
            model = models[0]
            starts = [s for s in [gaussian_member(model, out[GAUSSIAN], seed)] if s is not None]
            if cfg.qstar_warm_start:
                starts += [encoder_init(m, x, family, seed) for m in models]
            out[family] = local_bounds(model, x, family, cfg, seed,
                                       init=best_start(model, x, starts, seed, family)
                                       if len(starts) > 1 else starts[0], budget=budget,
                                       verbose=self.verbose)
        return out


PROBE_MODES = ("continue", "refit")


def reported_change(fitted: torch.Tensor, longer: torch.Tensor, floor: torch.Tensor = None):
    """Mean change of the reported L[q*] per point when the fit runs longer. Where other members
    of the family set a floor (the row reports max(fit, floor): the encoder's q, the Gaussian
    q*), the change is max(longer, floor) - max(fitted, floor): a fit that ended far below the
    floor (AF's q* on one MNIST point, quick: a finite bound near -1e23, where the table
    reported q's -76.8) changes nothing reported unless the longer run climbs above the floor."""
    if floor is not None:
        floor = floor.to(fitted)
        keep = lambda v: torch.maximum(torch.nan_to_num(v, nan=-math.inf), floor)  # noqa: E731
        fitted, longer = keep(fitted), keep(longer)
    return (longer.mean() - fitted.mean()).item()


def convergence_probe(model: VAE, x: torch.Tensor, fits: dict, cfg: EvalConfig, seed: int,
                      fit=None, floors: dict = None, budgets: dict = None) -> dict:
    """{family: mean L[q*] on the first cfg.qstar_probe_points points when the same fit may run
    twice as long (twice the patience, twice the step cap), minus the fitted one, both scored
    on the same k_eval draws (start_score from one seed: common random numbers)}
    for the fits a row uses (ffg, and the flow family for flow models); floors: {family: the
    best other member per point} where the row reports the better of the fit and those
    (reported_change). qstar_probe_mode "continue" lets each fit run on from where it stopped
    (continue_local: the extra steps only); "refit" repeats the whole fit (fit_qstar, or the
    given SharedQstar) with the doubled budget. budgets: {family: the budget its fits ran
    under} (default 1; the probe runs them on under twice that)."""
    n = min(cfg.qstar_probe_points, x.shape[0])
    if n == 0:
        return {f: float("nan") for f in row_fits(model, cfg)}
    floors = floors or {}
    with unit("probe"):
        longer = fit.longer(model, x[:n], fits, seed) if fit else \
            longer_fits(model, x[:n], fits, cfg, seed, budgets=budgets)
        # both fits scored on the same draws (common random numbers): their difference is what
        # the longer run changed, not the noise of two estimates (the ffg q* of quick's Fashion
        # flow model, 1000 samples each: +0.11 after twice the budget, -0.14 after four times)
        out = {}
        for f in [f for f in row_fits(model, cfg) if f in fits]:
            first = {k: v[:n] for k, v in fits[f].params.items()}
            scored = [start_score(model, x[:n], params, seed + 2, f, cfg.k_eval)
                      for params in (first, longer[f].params)]
            out[f] = reported_change(*scored, floors[f][:n] if f in floors else None)
    return out


def longer_fits(model: VAE, x: torch.Tensor, fits: dict, cfg: EvalConfig, seed: int,
                fit=None, budgets: dict = None) -> dict:
    """The fits of the first len(x) points (of the chunk `fits` was made on) allowed to run
    twice as long (twice the budget each ran under, budgets: {family: budget}, default 1), per
    family of `fits` (the probe's comparison)."""
    budgets = budgets or {}
    if cfg.qstar_probe_mode == "refit":
        return fit(x, seed, budget=2) if fit else fit_qstar(model, x, cfg, seed, budget=2)
    idx = torch.arange(x.shape[0], device=x.device)
    return {f: continue_local(BatchLikelihood(model, x), local_of(model, f), r, idx,
                              seed=seed + 1, **qstar_rule(cfg, budget=2 * budgets.get(f, 1)))
            for f, r in fits.items()}


def own_floor(model: VAE, l_q: torch.Tensor, fits: dict) -> torch.Tensor:
    """Per point, the best other member of the own family that a row reports where its q* fit
    ends below it: the encoder's q, and the Gaussian q* where it is a member."""
    floor = l_q
    if own_family(model) != GAUSSIAN and GAUSSIAN in fits and own_local(model).gaussian_member:
        floor = torch.maximum(floor, fits[GAUSSIAN].elbo)
    return floor


def certify_qstar(model: VAE, xc: torch.Tensor, fits: dict, cfg: EvalConfig, seed: int,
                  l_q: torch.Tensor) -> tuple:
    """Certify or extend the q* fits of one chunk: the convergence probe on its first points
    (convergence_probe); while a family's |probe| exceeds CERTIFICATE_TARGETS["qstar_probe"]
    and twice its budget is within cfg.qstar_budget_cap, every fit of that family in the chunk
    runs on under twice the budget (continue_local: twice the patience and step cap), and the
    probe is measured again from there. Each chunk decides alone, so shards give the same
    bits. Returns (fits, {family: probe}, {family: budget used})."""
    budgets, probes = {f: 1 for f in fits}, {}
    target = CERTIFICATE_TARGETS["qstar_probe"]
    idx = torch.arange(xc.shape[0], device=xc.device)
    probed = fits   # the fits to probe: all, then only those extended since
    while True:
        probes.update(convergence_probe(model, xc, probed, cfg, seed, None,
                                        {own_family(model): own_floor(model, l_q, fits)},
                                        budgets))
        short = [f for f in probed if abs(probes[f]) > target and
                 2 * budgets[f] <= cfg.qstar_budget_cap]
        if not short or cfg.qstar_probe_mode != "continue":
            return fits, probes, budgets
        for f in short:
            budgets[f] *= 2
            with unit(f"q* {f} extension"):
                fits[f] = continue_local(BatchLikelihood(model, xc), local_of(model, f), fits[f],
                                         idx, seed=seed + 1, **qstar_rule(cfg, budgets[f]))
        probed = {f: fits[f] for f in short}


def row_fits(model: VAE, cfg: EvalConfig = None) -> list:
    """The q* fits a model's row uses: the Gaussian one (for a non-Gaussian model unless
    cfg.qstar_ffg_fit is off), and the model's own local family's."""
    if own_family(model) == GAUSSIAN:
        return [GAUSSIAN]
    return ([GAUSSIAN] if cfg is None or cfg.qstar_ffg_fit else []) + [own_family(model)]


def encoder_bounds(model: VAE, x: torch.Tensor, cfg: EvalConfig, seed: int,
                   verbose: bool = False, fit: SharedQstar = None) -> tuple:
    """Per-point L[q], IWAE q, and q* bounds for ffg and (flow models) the flow family, with the
    q* fit's steps and cap flags; and per point the parameters of the own-family member that set
    L[q*] (the fitted q*, or q or the Gaussian q* where the fit ended below them): the AIS
    proposal. (The ffg q*
    is a poor one for a flow-trained decoder, whose posterior has adapted to the flow: on MNIST
    quick, AIS from it gave -94.02 against -93.14 from the flow q*, and a BDMC gap of 2.8 nats.)
    fit: a SharedQstar of the decoder, in place of this model's own q* fits. verbose: the q*
    fits print their progress (fit's own setting where one is given). Computed in chunks of
    cfg.point_chunk points (encoder_bounds_chunk), each from its own seed."""
    parts = [encoder_bounds_chunk(model, x[start:start + cfg.point_chunk], cfg, seed, start,
                                  verbose, fit)
             for start in chunk_starts(x.shape[0], cfg.point_chunk)]
    return assemble_bounds(model, [p[0] for p in parts], parts[0][2]), \
        {k: torch.cat([p[1][k] for p in parts]) for k in parts[0][1]}


def chunk_starts(n: int, point_chunk: int) -> range:
    """Where each chunk of points begins: every random draw of an evaluation is keyed to its
    chunk (seed + start), never to the process, so chunks computed apart (shards, common/runs/
    shards.py) give the same bits as one process computing them in turn."""
    return range(0, n, point_chunk)


def encoder_bounds_chunk(model: VAE, xc: torch.Tensor, cfg: EvalConfig, seed: int, start: int,
                         verbose: bool = False, fit: SharedQstar = None) -> tuple:
    """encoder_bounds on the chunk xc = x[start:start + len(xc)]: (its per-point columns, the
    AIS proposal's parameters, and the convergence probe {family: change} where start is 0,
    else None: the probe is measured on the first chunk and holds for the whole evaluation)."""
    families = row_fits(model, cfg)
    torch.manual_seed(seed + start)
    l_q, i_q = amortised_bounds(model, xc, cfg.k_eval)
    fits = fit(xc, seed + start) if fit else fit_qstar(model, xc, cfg, seed + start,
                                                       verbose=verbose)
    probes, budgets = None, {f: 1 for f in families}
    if fit is None:   # this model's own fits: every chunk probes them, extends until certified
        fits, probes, budgets = certify_qstar(model, xc, dict(fits), cfg, seed + start, l_q)
    columns, chosen_params = {"L_q": l_q, "iwae_q": i_q}, None
    # other members of the own family found, each with its parameters (the AIS proposal of
    # a point where it beats the fitted q*); the encoder's q first
    members = [(l_q, i_q, lambda: encoder_init(model, xc, own_family(model), seed + start))]
    for family in families:
        r = fits[family]
        elbo, iwae, chosen = r.elbo, r.iwae, r.params
        if family == own_family(model):
            fallback = torch.zeros_like(elbo, dtype=torch.bool)
            fitted = (r.elbo, r.iwae, r.params)
            for other_elbo, other_iwae, other_params in members:
                better = (other_elbo > elbo) | (~torch.isfinite(elbo) &
                                                 torch.isfinite(other_elbo))
                elbo = torch.where(better, other_elbo, elbo)
                iwae = torch.where(better, other_iwae, iwae)
                if better.any():
                    chosen = per_point_where(better, other_params(), chosen)
                fallback |= better
            # where the fit lost (AF's diverged at quick's lr 1e-2): again, slower
            elbo, iwae, chosen, fallback, fitted = retry_lost_fits(
                model, xc, cfg, seed + start, fallback, elbo, iwae, chosen, fitted)
            # a loss of the best own attempt within noise of the member is a tie: its own
            # numbers stand
            tie = fallback & ~significant_losses(model, xc, fitted, chosen, fallback,
                                                 seed + start, cfg.k_eval)
            if tie.any():
                elbo = torch.where(tie, fitted[0].to(elbo), elbo)
                iwae = torch.where(tie, fitted[1].to(iwae), iwae)
                chosen = per_point_where(tie, fitted[2], chosen)
            fallback = fallback & ~tie
            chosen_params = chosen
            columns["qstar_fallback"] = fallback.float()
            columns["qstar_tie"] = tie.float()
            columns["qstar_capped"] = r.capped.float()
            columns["qstar_steps"] = r.steps.float()
        elif own_local(model).gaussian_member:   # the Gaussian q* is a member of the
            members.append((elbo, iwae,          # own family (a floor of its L[q*])
                            lambda r=r: gaussian_member(model, r, seed + start)))
        columns.update({f"L_qstar_{family}": elbo, f"iwae_qstar_{family}": iwae,
                        f"qstar_steps_{family}": r.steps.float(),
                        f"qstar_capped_{family}": r.capped.float(),
                        f"qstar_budget_{family}": torch.full_like(elbo, budgets[family])})
    if fit is not None and start == 0:   # a shared q* (exp53): probed on the first chunk only,
        probes = convergence_probe(model, xc, fits, cfg, seed, fit,   # for the whole evaluation
                                   {own_family(model): own_floor(model, l_q, fits)})
    if probes is not None:
        for family, change in probes.items():
            columns[f"qstar_probe_{family}"] = torch.full_like(l_q, change)
    return {k: v.cpu() for k, v in columns.items()}, chosen_params, probes


def assemble_bounds(model: VAE, chunks: list, probes: dict) -> dict:
    """encoder_bounds' per-point columns from its chunks' (in order), with the probe as a
    column: each chunk's own (its points carry it), or a shared q*'s, measured on the first
    chunk (`probes`) and carried by every point."""
    chunks = [{**{f"qstar_probe_{f}": torch.full_like(c["L_q"], change)
                  for f, change in probes.items()}, **c} for c in chunks]
    out = {k: torch.cat([c[k] for c in chunks]) for k in chunks[0]}
    out["L_qstar"] = out[f"L_qstar_{own_family(model)}"]
    out["qstar_probe"] = out[f"qstar_probe_{own_family(model)}"]
    return out


# a q* fit that lost to another member runs again from it, where it still loses, at each of these
# multiples of the fit's rate in turn, each round from a fresh seed. Lower rates first: most
# losses are divergences (AF at quick's 1e-2 on 4-6% of points, ELBO -6e5 to -6e17). Then the
# fit's own rate: a fit can also stop at its start, the exact Gaussian member, whose zero output
# layer is a flat start (no gradient reaches the hidden layers): on exp52's 300-epoch Fashion AF
# the two points still lost after the lower rates (0.07 and 0.11 nat below the Gaussian q*)
# gained 2.8 and 1.4 nats from that member at the fit's rate with another seed, and lost 0.06
# and 0.08 at a tenth of it (version 14)
RETRY_RATES = (0.1, 0.01, 1.0)


def retry_lost_fits(model: VAE, x: torch.Tensor, cfg: EvalConfig, seed: int, lost: torch.Tensor,
                    elbo: torch.Tensor, iwae: torch.Tensor, chosen: dict,
                    fitted: tuple) -> tuple:
    """The own-family q* of the points `lost` (where the fit ended below another member:
    the encoder's q or the Gaussian q*), fitted again from that member (`chosen` holds its
    parameters there) at each RETRY_RATES multiple of the rate in turn, on the points still
    lost; kept where it beats the member. fitted: the fit's own (elbo, iwae, params).
    Returns (elbo, iwae, chosen, lost, fitted) with the points it won no longer lost, and
    `fitted` the best own-family attempt per point (the fit or a retry: what
    significant_losses weighs against the member; on exp52's 300-epoch Fashion AF a retry from
    the Gaussian q* ended 0.07 nat below it, the first fit 0.5 nat or more)."""
    elbo, iwae, lost = elbo.clone(), iwae.clone(), lost.clone()
    chosen = {k: v.clone() for k, v in chosen.items()}
    best_elbo = torch.nan_to_num(fitted[0].clone().to(elbo), nan=-math.inf)
    best_iwae = fitted[1].clone().to(iwae)
    best_params = {k: v.clone() for k, v in fitted[2].items()}
    for round_, factor in enumerate(RETRY_RATES):
        if not lost.any():
            break
        idx = torch.nonzero(lost).flatten()
        retry = local_bounds(model, x[idx], own_family(model),
                             replace(cfg, qstar_lr=cfg.qstar_lr * factor),
                             seed + 1 + round_, init={k: v[idx] for k, v in chosen.items()})
        won = retry.elbo > elbo[idx]
        write_where(retry, idx, won, elbo, iwae, chosen)
        lost[idx[won]] = False
        write_where(retry, idx, retry.elbo.to(best_elbo) > best_elbo[idx],
                    best_elbo, best_iwae, best_params)
    return elbo, iwae, chosen, lost, (best_elbo, best_iwae, best_params)


def write_where(result, idx: torch.Tensor, mask: torch.Tensor, elbo: torch.Tensor,
                iwae: torch.Tensor, params: dict) -> None:
    """In place: the points idx[mask] of (elbo, iwae, params) take a fit's `result` (computed
    on the points idx) where mask holds."""
    at = idx[mask]
    elbo[at], iwae[at] = result.elbo[mask].to(elbo), result.iwae[mask].to(iwae)
    for k in params:
        params[k][at] = result.params[k][mask].to(params[k])


# a fit counts as lost to another member (a fallback) only when the member's ELBO beats the
# fit's by more than LOSS_SES standard errors of their paired difference, or by more than
# TIE_NATS whatever its s.e. (a difference whose s.e. is that large comes from a heavy tail,
# which a mean-and-s.d. test does not see: AF's diverged fits, ELBO near -1e27 in a few draws,
# would pass as ties, t = mean / s.e. being about 1 when one draw dominates)
LOSS_SES = 3.0
TIE_NATS = 0.5


def significant_losses(model: VAE, x: torch.Tensor, fitted: tuple, member: dict,
                       lost: torch.Tensor, seed: int, samples: int, chunk: int = 500) -> torch.Tensor:
    """Per point, whether the member that beat the fitted q* (parameters `member`, where `lost`)
    beats it by more than LOSS_SES standard errors: both scored on the same `samples` base draws
    (common random numbers), d_s = log w_member(z_s) - log w_fit(z'_s), loss when
    mean(d) > LOSS_SES * sd(d) / sqrt(samples) or mean(d) > TIE_NATS, or where the fit's ELBO is
    not finite. Two estimates of one ELBO differ by noise alone: a fit that converged to the member (a retry
    from it at a lower rate) "loses" about half the time, and counting those as failures, then
    keeping the larger of two noisy estimates, overstates both the fallback share and L[q*]."""
    out = torch.zeros_like(lost, dtype=torch.bool)
    if not lost.any():
        return out
    idx = torch.nonzero(lost).flatten()
    fit_elbo, _, fit_params = fitted
    xs, local = x[idx], own_local(model)
    total = torch.zeros(idx.numel(), dtype=torch.float64, device=x.device)
    squares = torch.zeros_like(total)
    generators = [torch.Generator(device=x.device).manual_seed(seed + 3) for _ in range(2)]
    with unit("q* loss test"), torch.no_grad():
        count(fwd_rows=2 * idx.numel() * samples)
        for size in sample_chunks(samples, chunk):
            weights = []
            for params, generator in zip((member, fit_params), generators):
                z, log_q = local.rsample({k: v[idx] for k, v in params.items()}, size, generator)
                weights.append(log_weight(model.log_likelihood(xs, z), log_standard_normal(z),
                                          log_q).double())
            d = weights[0] - weights[1]
            total += d.sum(0)
            squares += (d * d).sum(0)
    mean = total / samples
    sd = (squares / samples - mean * mean).clamp_min(0).sqrt()
    lose = (mean > LOSS_SES * sd / math.sqrt(samples)) | (mean > TIE_NATS) | \
        ~torch.isfinite(mean) | ~torch.isfinite(fit_elbo[idx].to(mean))
    out[idx] = lose.to(out.device)
    return out


def per_point_where(condition: torch.Tensor, a: dict, b: dict) -> dict:
    """Flat per-point parameters: a's where condition [B] holds, else b's."""
    return {k: torch.where(condition.view(-1, *[1] * (b[k].dim() - 1)), a[k].to(b[k]), b[k])
            for k in b}


def encoder_density(model: VAE, x: torch.Tensor):
    """The encoder's q(z|x) as a density over a fixed batch (an AIS proposal)."""
    with torch.no_grad():
        return model.encoder.posterior(x).proposal()


def check_proposal(path: str) -> None:
    if path not in AIS_PROPOSALS:
        raise ValueError(f"unknown AIS proposal {path!r}; allowed: {', '.join(AIS_PROPOSALS)}")


def ais_proposal(model: VAE, x: torch.Tensor, cfg: EvalConfig, qstar_params: dict = None):
    """q0 of AIS for these points: None (the prior), the encoder's q, or the fitted q*."""
    check_proposal(cfg.ais_proposal)
    if cfg.ais_proposal == "prior":
        return None
    if cfg.ais_proposal == "encoder":
        return encoder_density(model, x)
    return own_local(model).proposal(qstar_params)


def ais_target(model: VAE, x: torch.Tensor, proposal) -> tuple:
    """(the path's likelihood, its dimension): p(x|z) over z, or over a proposal's extended
    space where it has one (AF's (z, v): `extend_likelihood`, common/family_af.AFJoint)."""
    likelihood = BatchLikelihood(model, x)
    if hasattr(proposal, "extend_likelihood"):
        return proposal.extend_likelihood(likelihood), proposal.dim
    return likelihood, model.z_dim


def ais_settings(cfg: EvalConfig) -> dict:
    return dict(n_chains=cfg.ais_chains, n_steps=cfg.ais_steps, n_leapfrog=cfg.ais_leapfrog,
                init_step=cfg.ais_init_step, n_warmup=cfg.ais_warmup, adapt_in_run=cfg.ais_adapt)


def ais_logpx(model: VAE, x: torch.Tensor, cfg: EvalConfig, seed: int, qstar_params: dict = None,
              verbose: bool = False):
    """AIS estimate of log p(x) per point for the model's decoder, from cfg.ais_proposal, and
    its HMC acceptance {ais_acceptance: mean, ais_acceptance_min: lowest point's mean}, in
    chunks of cfg.point_chunk points (ais_chunk)."""
    parts = [ais_chunk(model, x[start:start + cfg.point_chunk], cfg, seed, start,
                       None if qstar_params is None else
                       {k: v[start:start + cfg.point_chunk] for k, v in qstar_params.items()},
                       verbose)
             for start in chunk_starts(x.shape[0], cfg.point_chunk)]
    return torch.cat([p[0] for p in parts]), ais_acceptance([p[1] for p in parts])


def ais_chunk(model: VAE, xc: torch.Tensor, cfg: EvalConfig, seed: int, start: int,
              qstar_params: dict = None, verbose: bool = False) -> tuple:
    """ais_logpx on the chunk xc = x[start:start + len(xc)] (qstar_params: its points'):
    (log p^ per point, {acceptance, acceptance_min_point})."""
    with unit("AIS"):
        proposal = ais_proposal(model, xc, cfg, qstar_params)
        likelihood, dim = ais_target(model, xc, proposal)
        estimate, s = ais(likelihood, xc.shape[0], dim, proposal=proposal, seed=seed + start,
                          verbose=verbose, device=xc.device, return_stats=True,
                          **ais_settings(cfg))
    return estimate.cpu(), {"acceptance": float(s.acceptance),
                            "acceptance_min_point": float(s.acceptance_min_point)}


def ais_acceptance(chunk_stats: list) -> dict:
    """The HMC acceptance of an AIS computed in chunks: the mean of the chunks' means, and the
    lowest point's mean."""
    return {"ais_acceptance": sum(s["acceptance"] for s in chunk_stats) / len(chunk_stats),
            "ais_acceptance_min": min(s["acceptance_min_point"] for s in chunk_stats)}


def simulate(model: VAE, n: int, seed: int):
    """(x, z) with z ~ p(z), x ~ p(x|z): z is an exact posterior sample of x."""
    g = torch.Generator().manual_seed(seed)
    device = getattr(model, "device", None) or next(model.parameters()).device
    z = torch.randn(n, model.z_dim, generator=g).to(device)
    return model.sample_x(z, g), z


def bdmc_data(model: VAE, cfg: EvalConfig, seed: int) -> tuple:
    """(x, z, q* params): data simulated from the decoder with their exact posterior draws z,
    and, when the AIS path starts at q*, q* fitted to x (where it beats the encoder's q, as for
    log p^); None otherwise."""
    x, z = simulate(model, cfg.bdmc_points, seed)
    params = None
    if cfg.ais_proposal == "qstar":
        r = fit_qstar(model, x, cfg, seed)[own_family(model)]
        q = encoder_init(model, x, own_family(model), seed)
        lost = ~(r.elbo >= start_score(model, x, q, seed, own_family(model)))
        params = per_point_where(lost, q, r.params)
    return x, z, params


def bdmc_bound(model: VAE, cfg: EvalConfig, seed: int, data: tuple = None) -> dict:
    """Forward and reverse AIS on data simulated from the decoder (`data`, from bdmc_data when
    not given), along the same path as the AIS of log p^."""
    with unit("BDMC"):
        x, z, params = data if data is not None else bdmc_data(model, cfg, seed)
        proposal = ais_proposal(model, x, cfg, params)
        likelihood, _ = ais_target(model, x, proposal)
        if hasattr(proposal, "extend_posterior_samples"):   # exact draws of the extended target
            # (seed drew z and x, seed and seed + 1 drive the two AIS runs: v's noise is apart)
            z = proposal.extend_posterior_samples(
                z, torch.Generator(z.device).manual_seed(seed + 2))
        r = bdmc(likelihood, z, proposal=proposal, seed=seed, **ais_settings(cfg))
    return {"bdmc_lower": r.lower.mean().item(), "bdmc_upper": r.upper.mean().item(),
            "bdmc_gap": r.gap, "bdmc_path": cfg.ais_proposal,
            "bdmc_settings": f"{cfg.bdmc_points} simulated points, {cfg.ais_chains} chains x "
                             f"{cfg.ais_steps} steps x {cfg.ais_leapfrog} leapfrog"}


def certified_bdmc(model: VAE, cfg: EvalConfig, seed: int, verbose: bool = False) -> dict:
    """Certify or extend: BDMC at cfg.ais_steps and, while its gap exceeds the target
    (CERTIFICATE_TARGETS), again at twice the steps, up to cfg.ais_budget_cap x ais_steps (same
    simulated data and seeds). Where cfg.ais_proposal's path misses at ais_steps and
    cfg.ais_other_path names another start, that path is measured there too and the one with the
    smaller gap goes on (`bdmc_path`: the start log p^'s AIS must use). The choice reads only
    simulated data, never the evaluated points. Adds `ais_steps_used`, the steps the AIS of log
    p^ runs so that this certificate is its own, `bdmc_at_cap`, whether the gap still exceeds
    the target there, and `bdmc_paths_tried`. BDMC's gap bounds AIS's error on data from the
    decoder (Grosse et al. 2015, 2016)."""
    target, cap = CERTIFICATE_TARGETS["bdmc_gap"], cfg.ais_steps * cfg.ais_budget_cap
    tried = {}
    for path in bdmc_paths(cfg):
        path_cfg = replace(cfg, ais_proposal=path)
        data = bdmc_data(model, path_cfg, seed)
        tried[path] = (bdmc_bound(model, path_cfg, seed, data=data), path_cfg, data)
        if abs(tried[path][0]["bdmc_gap"]) <= target:
            break
    result, cfg, data = min(tried.values(), key=lambda t: abs(t[0]["bdmc_gap"]))
    if verbose and len(tried) > 1:
        print(f"[eval] BDMC at {cfg.ais_steps} steps: " + ", ".join(
            f"{p} path {t[0]['bdmc_gap']:.3f}" for p, t in tried.items()) +
            f": the {cfg.ais_proposal} path goes on", flush=True)
    steps = cfg.ais_steps
    while abs(result["bdmc_gap"]) > target and steps * 2 <= cap:
        if verbose:
            print(f"[eval] BDMC gap {result['bdmc_gap']:.3f} > {target} at {steps} AIS steps: "
                  f"extending to {steps * 2}", flush=True)
        steps *= 2
        result = bdmc_bound(model, replace(cfg, ais_steps=steps), seed, data=data)
    within = abs(result["bdmc_gap"]) <= target
    return {**result, "ais_steps_used": steps, "bdmc_at_cap": not within,
            "bdmc_paths_tried": ",".join(tried)}


def bdmc_paths(cfg: EvalConfig) -> tuple:
    """The AIS starts certified_bdmc may try, in order: ais_proposal, then ais_other_path."""
    paths = tuple(dict.fromkeys(p for p in (cfg.ais_proposal, cfg.ais_other_path) if p))
    for path in paths:
        check_proposal(path)
    return paths


def model_hash(model: torch.nn.Module, part: str = None) -> str:
    """Content hash of a model's (or one part's) parameters: the identity of a checkpoint."""
    module = getattr(model, part) if part else model
    h = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def logpx_candidates(ais_values: torch.Tensor, bounds_list) -> torch.Tensor:
    """[estimators, points]: AIS and every IWAE (of q and of each q*) computed on this decoder,
    each the log of an unbiased estimate of p(x)."""
    return torch.stack([ais_values] + [b[k] for b in bounds_list for k in b
                                       if k.startswith("iwae")])


def logpx_from(ais_values: torch.Tensor, bounds_list) -> torch.Tensor:
    """The paper's rule: max over AIS and every IWAE (of q and of each q*), per point (a column
    beside log p^ = AIS; biased upward by the per-point selection, see the module's doc)."""
    return logpx_candidates(ais_values, list(bounds_list)).max(0).values


def pooled_logpx_from(ais_values: torch.Tensor, bounds_list) -> torch.Tensor:
    """The same candidates pooled with no selection: log of the equally weighted average of
    their p(x) estimates (weights fixed in advance). The average is unbiased for p(x), so its
    log is a stochastic lower bound, and mean(max rule - pooled) bounds the max rule's upward
    selection bias from above: E[max] - log p(x) <= E[max - pooled]. It lies in [0, log n]."""
    c = logpx_candidates(ais_values, list(bounds_list)).double()
    return (torch.logsumexp(c, 0) - math.log(c.shape[0])).float()


def add_gaps(bounds: dict, ais_values: torch.Tensor, paper: torch.Tensor,
             pooled: torch.Tensor = None) -> dict:
    """Per-point gaps from log p^ = AIS (LOGPX_RULE), and the same gaps under the paper's max
    rule `paper` (`*_paper`) with where AIS is that max."""
    out = dict(bounds, ais=ais_values, logpx=ais_values, logpx_paper=paper)
    out["ais_sets_logpx"] = (ais_values >= paper).float()
    out["approx_gap"] = ais_values - bounds["L_qstar"]
    out["amort_gap"] = bounds["L_qstar"] - bounds["L_q"]
    out["total_gap"] = ais_values - bounds["L_q"]
    out["approx_gap_paper"] = paper - bounds["L_qstar"]
    out["total_gap_paper"] = paper - bounds["L_q"]
    if pooled is not None:
        out["logpx_pooled"] = pooled
    return out


def summarise(per_point: dict, names=QUANTITIES + PAPER_RULE_QUANTITIES) -> dict:
    """mean and standard error over points (of the names present); flags gaps below zero by
    more than 3 sem (those of log p^'s rule: the paper's max is never below AIS)."""
    summary, failures = {}, []
    names = tuple(n for n in names if n in per_point)
    for name in names:
        v = per_point[name].double()
        mean, sem = v.mean().item(), (v.std() / math.sqrt(len(v))).item() if len(v) > 1 else 0.0
        summary[name], summary[f"{name}_sem"] = mean, sem
        if name.endswith("_gap") and mean < -3 * sem:
            failures.append(f"{name} = {mean:.3f} +- {sem:.3f} < 0: estimator failure")
    for name in (*names, "ais"):                # the estimates; certificates may be NaN
        v = per_point.get(name)
        if v is not None and not torch.isfinite(v).all():
            failures.append(f"{name} has {int((~torch.isfinite(v)).sum())} non-finite values")
    summary["n_points"] = len(per_point[names[0]])
    summary["failures"] = "; ".join(failures)
    if "logpx_paper" in per_point:
        summary["logpx_rule"] = LOGPX_RULE
    return summary


def qstar_within_targets(capped: float, probe: float) -> bool:
    """A q* fit's certificate: cap share and |probe| within CERTIFICATE_TARGETS."""
    return capped <= CERTIFICATE_TARGETS["qstar_capped"] and \
        abs(probe) <= CERTIFICATE_TARGETS["qstar_probe"]


def worst_probe(column: torch.Tensor) -> float:
    """The probe of an evaluation: its chunks' (carried by their points) farthest from 0."""
    finite = column[torch.isfinite(column)]
    if finite.numel() == 0:
        return column[0].item()
    return finite[finite.abs().argmax()].item()


def certificates(per_point: dict, bdmc: dict) -> dict:
    """The evidence that a row's numbers converged, and whether it is within CERTIFICATE_TARGETS."""
    paper = per_point.get("logpx_paper", per_point["logpx"])
    cert = {"ais_sets_logpx": per_point["ais_sets_logpx"].mean().item(),
            "ais_below_logpx": (paper - per_point["ais"]).mean().item(),
            **({"max_rule_excess": (paper - per_point["logpx_pooled"]).mean().item()}
               if "logpx_pooled" in per_point else {}),
            "qstar_capped": per_point["qstar_capped"].mean().item(),
            "qstar_steps": per_point["qstar_steps"].mean().item(),
            "qstar_probe": worst_probe(per_point["qstar_probe"]),
            "qstar_fallback": per_point["qstar_fallback"].mean().item(),
            **({"qstar_tie": per_point["qstar_tie"].mean().item()}
               if "qstar_tie" in per_point else {}), **bdmc}
    budgets = [v.max().item() for k, v in per_point.items() if k.startswith("qstar_budget_")]
    if budgets:   # the largest multiple of the q* rule's budget a chunk's fits ran under
        cert["qstar_budget"] = max(budgets)
    misses = [f"{k} not measured" if k not in cert else f"{k} {cert[k]:.3g} > {t}"
              for k, t in CERTIFICATE_TARGETS.items() if not abs(cert.get(k, math.inf)) <= t]
    cert["certified"] = not misses
    cert["certificate_misses"] = "; ".join(misses)
    # the ffg q* behind L[q*_FFG] (for an ffg model: its own q*, certified above)
    if "qstar_capped_ffg" in per_point and "qstar_probe_ffg" in per_point:
        cert["qstar_capped_ffg"] = per_point["qstar_capped_ffg"].mean().item()
        cert["qstar_probe_ffg"] = worst_probe(per_point["qstar_probe_ffg"])
        cert["ffg_fit_certified"] = qstar_within_targets(cert["qstar_capped_ffg"],
                                                         cert["qstar_probe_ffg"])
    return cert


def read_per_point(path: Path, fix: str = "delete it and rerun the evaluation") -> dict:
    """The columns of a per_point.csv that write_per_point wrote, as lists of floats; one line
    (CorruptFile) naming the file when a cell is not a number."""
    from ..config import CorruptFile
    try:
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f))
        return {k: [float(r[k]) for r in rows] for k in rows[0]} if rows else {}
    except (ValueError, TypeError, csv.Error, UnicodeDecodeError) as err:
        raise CorruptFile(f"{path} is not a per-point table ({str(err)[:60]}); {fix}") from None


def write_per_point(path: Path, per_point: dict) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    names = list(per_point)
    with atomic_file(path) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["point"] + names)
        cols = [per_point[k].tolist() for k in names]
        for i, row in enumerate(zip(*cols)):
            writer.writerow([i] + [f"{v:.5f}" for v in row])
