"""AF (common/family_af.py) against closed-form answers, beyond the checklist every family
passes (tests/test_families.py): its bound is log p(x) - E KL(q(v_T|z_T) || r(v_T|z_T))."""
import math

import torch

from common.family_af import AFLocal
from common.posteriors import log_standard_normal, log_weight
from common.vae import ModelConfig
from tests.linear_gaussian import LinearGaussian

MODEL = LinearGaussian(z_dim=1, x_dim=3, seed=2)   # a 1-D posterior: a factorised Gaussian
X, _ = MODEL.sample(8)
LL, LOG_PX = MODEL.likelihood(X), MODEL.log_px(X)
POST = MODEL.posterior(X)
MU, LOGVAR = POST.mean, POST.covariance_matrix[..., 0, 0, None].log()


def bound_terms(local, params, n=20_000):
    with torch.no_grad():
        z, log_q = local.rsample(params, n, torch.Generator().manual_seed(0))
        return log_weight(LL(z), log_standard_normal(z), log_q)


def test_with_the_exact_posterior_and_an_exact_reverse_model_the_bound_is_log_px():
    local = AFLocal(1, ModelConfig(z_dim=1, flow_steps=2, family_hidden=(8,)))
    w = bound_terms(local, local.from_gaussian(MU, LOGVAR))
    torch.testing.assert_close(w.mean(0), LOG_PX, atol=1e-4, rtol=0)
    assert w.std(0).max() < 1e-3          # every sample's term is log p(x)


def test_a_reverse_model_off_by_m_costs_exactly_its_kl():
    """r(v_T) = N(m, s^2) against v_T's law N(0, s^2): the bound drops by m^2 / (2 s^2)."""
    local = AFLocal(1, ModelConfig(z_dim=1, flow_steps=2, family_hidden=(8,)))
    params = local.from_gaussian(MU, LOGVAR)
    last = len(local.hidden)
    bias = params[f"r_{last}_b"].clone()
    m = 0.7
    bias[..., 0] += m
    params = {**params, f"r_{last}_b": bias}
    s2 = bias[..., 1].exp()
    w = bound_terms(local, params)
    expected = LOG_PX - m ** 2 / (2 * s2)
    sem = w.std(0) / math.sqrt(w.shape[0])
    assert ((w.mean(0) - expected).abs() < 4 * sem + 1e-3).all(), (w.mean(0) - expected)


def test_extreme_reverse_and_auxiliary_variances_leave_the_bound_finite():
    """Log-variances of q(v|z) and r driven to +-200 (where exp(-logvar) overflows float32, as
    AF's q* reached on MNIST) give a finite bound: they are kept within +-LOGVAR_BOUND."""
    local = AFLocal(1, ModelConfig(z_dim=1, flow_steps=2, family_hidden=(8,)))
    last = len(local.hidden)
    for value in (-200.0, 200.0):
        params = dict(local.from_gaussian(MU, LOGVAR))
        for net in ("qv", "r"):
            bias = params[f"{net}_{last}_b"].clone()
            bias[..., 1] = value
            params[f"{net}_{last}_b"] = bias
        w = bound_terms(local, params, n=5000)
        assert torch.isfinite(w).all(), value
        assert (w.mean(0) <= LOG_PX + 1e-3).all()


def test_a_huge_base_variance_against_closed_gates_cannot_buy_bound_by_rounding():
    """AF's q* on Fashion raised a base log-variance and closed the gates together until
    float32 lost the difference of log q0 and log|det| (a probe of +3.3e10 nats): both are
    bounded, so the bound stays a finite lower bound."""
    local = AFLocal(1, ModelConfig(z_dim=1, flow_steps=2, family_hidden=(8,)))
    last = len(local.hidden)
    params = dict(local.from_gaussian(MU, LOGVAR))
    params["logvar"] = torch.full_like(params["logvar"], 1e4)
    for t in range(2):
        for half in ("fv", "fz"):
            bias = params[f"{half}{t}_{last}_b"].clone()
            bias[..., 1] = -1e4
            params[f"{half}{t}_{last}_b"] = bias
    w = bound_terms(local, params, n=5000)
    assert torch.isfinite(w).all()
    assert (w.mean(0) <= LOG_PX + 1e-3).all(), w.mean(0) - LOG_PX


def test_the_ais_proposal_follows_the_bulk_of_heavy_tailed_samples():
    """AF's proposal is a Gaussian of its samples' median and MAD: a few far-out samples (AF's
    q* on MNIST had such points; plain moments started AIS at -2.6e13) leave it on the bulk,
    and on Gaussian samples it is their mean and s.d."""
    from common.family_af import moment_proposal
    g = torch.Generator().manual_seed(0)
    bulk = torch.randn(400, 3, 2, generator=g) * 0.5 + 1.0

    def sample(n, generator):
        z = bulk[:n].clone()
        z[:3] = 1e6                                    # three of n samples far out
        return z
    p = moment_proposal(sample)
    assert (p.mu - 1.0).abs().max() < 0.15
    assert ((0.5 * p.logvar).exp() - 0.5).abs().max() < 0.15
    clean = moment_proposal(lambda n, gen: bulk[:n])
    torch.testing.assert_close(clean.mu, bulk[:200].mean(0), atol=0.1, rtol=0)
    torch.testing.assert_close((0.5 * clean.logvar).exp(), bulk[:200].std(0), atol=0.1, rtol=0)
