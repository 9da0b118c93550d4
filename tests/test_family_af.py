"""AF (common/models/family_af.py) against closed-form answers, beyond the checklist every family
passes (tests/test_families.py): its bound is log p(x) - E KL(q(v_T|z_T) || r(v_T|z_T))."""
import math

import torch

from common.models.family_af import AFLocal
from common.models.posteriors import log_standard_normal, log_weight
from common.models.vae import ModelConfig
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


def perturbed_af(seed=0, scale=0.1):
    """An AF of the 4-D linear-Gaussian model's points, near but not at the posterior: the
    Gaussian member shifted, every net's weights perturbed (a q* that is not exact)."""
    from tests.linear_gaussian import LinearGaussian
    model = LinearGaussian(z_dim=4, x_dim=8)
    x, z = model.sample(32)
    post = model.posterior(x)
    var = post.covariance_matrix.diagonal(dim1=-2, dim2=-1)
    local = AFLocal(4, ModelConfig(z_dim=4, flow_steps=2, family_hidden=(8,)))
    g = torch.Generator().manual_seed(seed)
    params = local.from_gaussian(post.mean + 0.3 * var.sqrt(), (1.5 * var).log(), g)
    params = {k: v + scale * torch.randn(v.shape, generator=g) * v.abs().mean().clamp_min(0.05)
              for k, v in params.items()}
    return model, x, z, local, params


def test_the_joint_density_of_the_extended_proposal_is_that_of_afs_samples():
    """AFJoint.sample draws what AF draws (same noise), and log_prob through the closed-form
    inverse, minus log r, is the bound's term af_sample computes forward."""
    from common.models.family_af import AFJoint
    _, _, _, local, params = perturbed_af()
    params = {k: v.double() for k, v in params.items()}
    joint = AFJoint(params, local.steps, local.activation)
    u = joint.sample(6, torch.Generator().manual_seed(3))
    z, term = local.rsample(params, 6, torch.Generator().manual_seed(3))
    torch.testing.assert_close(u[..., :4], z)
    torch.testing.assert_close(joint.log_prob(u) - joint.log_reverse(u), term, atol=1e-9, rtol=0)
    assert joint.dim == 8 and joint.scale.shape == (32, 8)


def test_extended_ais_and_bdmc_from_an_inexact_af_recover_log_px():
    """AIS in (z, v) from AF's joint to p(x, z) r(v|x, z) estimates p(x) (r integrates to
    one): on the linear-Gaussian model its mean error over 32 points is within 3 s.e. of zero
    and no point is 0.3 nats off; BDMC from z ~ p(z|x), v ~ r brackets the truth."""
    from common.inference.estimators import ais, bdmc
    from common.models.family_af import AFJoint
    model, x, z, local, params = perturbed_af()
    joint = AFJoint(params, local.steps, local.activation)
    likelihood = joint.extend_likelihood(model.likelihood(x))
    log_px = model.log_px(x)
    with torch.no_grad():   # the start alone is an importance sampler of p(x): weights' mean 1
        u = joint.sample(20_000, torch.Generator().manual_seed(1))
        log_w = likelihood(u) + log_standard_normal(u) - joint.log_prob(u)
        iwae = torch.logsumexp(log_w, 0) - math.log(u.shape[0])
    assert ((iwae - log_px).abs() < 0.1).all(), iwae - log_px
    assert (log_w.mean(0) < log_px).all()   # and its ELBO is below log p(x): the start is inexact
    est = ais(likelihood, 32, 8, proposal=joint, n_chains=16, n_steps=200, n_leapfrog=5,
              n_warmup=20, init_step=0.3, seed=0)
    err = est - log_px
    assert err.mean().abs() < 3 * err.std() / math.sqrt(32) + 0.01, err
    assert err.abs().max() < 0.3, err
    exact = joint.extend_posterior_samples(z, torch.Generator().manual_seed(2))
    r = bdmc(likelihood, exact, proposal=joint, n_chains=8, n_steps=100, n_leapfrog=5,
             n_warmup=20, init_step=0.3, seed=0)
    truth = log_px.mean().item()
    assert r.lower.mean().item() <= truth + 0.03 and r.upper.mean().item() >= truth - 0.03
    assert 0 <= r.gap < 0.2, r.gap
