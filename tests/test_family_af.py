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
