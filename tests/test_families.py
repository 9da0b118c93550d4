"""The checklist every posterior family passes (zuko-style), parametrised over the registry:
a family added to common/families.FAMILIES is tested here without a line changed.

- its bijection's log|det| equals the autograd Jacobian's;
- its log q is the density of its samples (log_prob where it has one);
- its bound is <= log p(x) on a linear-Gaussian model with closed-form log p(x);
- its AIS proposal integrates to one (importance weights' mean ~ 1);
- its local family (q*) contains q (same samples from q's per-point parameters) and the
  Gaussian (from_gaussian), and q* fitted from q never ends below q;
- checkpoints written before the families refactor load with the same weights, samples and
  run identity.
"""
from pathlib import Path

import pytest
import torch

from common.models.families import FAMILIES, GAUSSIAN, local_family
from common.inference.local_opt import optimize_local
from common.models.posteriors import log_standard_normal, log_weight
from common.models.proposals import DiagonalGaussian, log_prob_and_grad
from common.runs.train import check_identity, model_from_state, read_checkpoint, run_identity
from common.models.vae import Encoder, ModelConfig
from tests.linear_gaussian import LinearGaussian

FIXTURES = Path(__file__).parent / "fixtures" / "checkpoints_v1"
MODEL = LinearGaussian(z_dim=4, x_dim=8)
X, _ = MODEL.sample(16)
LL, LOG_PX = MODEL.likelihood(X), MODEL.log_px(X)


def config(family, **kw):
    small = {"family_hidden": (16, 16)} if family == "af" else {}   # AF's own nets: Table 2's
    return ModelConfig(**{"family": family, "z_dim": MODEL.D, "enc_hidden": (16,),  # 2 x 100
                          "flow_steps": 2, "flow_hidden": 8, "context_dim": 3, **small, **kw})


def encoder(family, seed=0, **kw):
    torch.manual_seed(seed)
    enc = Encoder(MODEL.M, config(family, **kw))
    with torch.no_grad():   # shared parameters away from their near-identity start (noise
        for name, p in enc.named_parameters():   # of their own scale: a well-conditioned map)
            if not name.startswith(("trunk", "head")):
                p.add_(torch.randn_like(p) * 0.5 * p.abs().mean().clamp_min(0.05))
    return enc


@pytest.mark.parametrize("family", list(FAMILIES))
def test_log_det_equals_the_autograd_jacobian(family):
    q = encoder(family).double().posterior(X.double())
    u = torch.randn(1, X.shape[0], q.base_dim if hasattr(q, "base_dim") else MODEL.D,
                    dtype=torch.float64)
    _, log_det = q.transform(u)
    for b in range(X.shape[0]):
        def one(v, b=b):
            full = u.clone()
            full[0, b] = v
            return q.transform(full)[0][0, b]
        jac = torch.autograd.functional.jacobian(one, u[0, b])
        torch.testing.assert_close(log_det[0, b], torch.linalg.slogdet(jac)[1], atol=1e-8,
                                   rtol=1e-8)


@pytest.mark.parametrize("family", list(FAMILIES))
def test_samples_are_reparameterised_and_log_q_is_their_density(family):
    enc = encoder(family)
    q = enc.posterior(X)
    z, log_q = q.rsample(5)
    assert z.shape == (5, X.shape[0], MODEL.D) and log_q.shape == (5, X.shape[0])
    (z.sum() + log_q.sum()).backward()
    assert all(p.grad is not None for p in enc.parameters())
    try:
        density = q.log_prob(z.detach())
    except NotImplementedError:   # an auxiliary family has no density in z alone
        return
    torch.testing.assert_close(density, log_q.detach(), atol=1e-4, rtol=1e-5)


@pytest.mark.parametrize("family", list(FAMILIES))
def test_the_bound_is_below_log_px(family):
    with torch.no_grad():
        z, log_q = encoder(family).posterior(X).rsample(4000)
        w = log_weight(LL(z), log_standard_normal(z), log_q)
    elbo, sem = w.mean(0), w.std(0) / 4000 ** 0.5
    assert (elbo <= LOG_PX + 3 * sem + 1e-4).all(), (elbo - LOG_PX).max()
    assert (torch.logsumexp(w, 0) - torch.log(torch.tensor(4000.0)) >= elbo).all()   # IWAE


@pytest.mark.parametrize("family", list(FAMILIES))
def test_the_proposal_integrates_to_one(family):
    proposal = encoder(family).posterior(X).proposal()
    g = torch.Generator().manual_seed(0)
    dim = getattr(proposal, "dim", MODEL.D)   # an auxiliary family's proposal is over (z, v)
    z = proposal.sample(3, g)
    assert z.shape == (3, X.shape[0], dim)
    log_q, grad = log_prob_and_grad(proposal, z)
    assert log_q.shape == (3, X.shape[0]) and grad.shape == z.shape
    bulk = proposal.sample(2000, g)   # a Gaussian twice as wide as the proposal's own samples
    wide = DiagonalGaussian(bulk.mean(0), (2 * bulk.std(0)).pow(2).log())
    zs = wide.sample(100_000, g)
    with torch.no_grad():
        mass = (proposal.log_prob(zs) - wide.log_prob(zs)).exp().mean(0)
    torch.testing.assert_close(mass, torch.ones(X.shape[0]), atol=0.1, rtol=0)


@pytest.mark.parametrize("family", list(FAMILIES))
def test_the_local_family_holds_q_and_the_gaussian(family):
    enc = encoder(family)
    with torch.no_grad():
        q = enc.posterior(X)
        local = enc.family.local
        params = q.local_params()
        z, log_q = q.rsample(3, torch.Generator().manual_seed(7))
        z2, log_q2 = local.rsample(params, 3, torch.Generator().manual_seed(7))
    torch.testing.assert_close(z2, z, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(log_q2, log_q, atol=1e-4, rtol=1e-5)
    mu, logvar = torch.randn(X.shape[0], MODEL.D), torch.randn(X.shape[0], MODEL.D)
    member = local.from_gaussian(mu, logvar, torch.Generator().manual_seed(0))
    if member is None:
        assert not local.gaussian_member
        return
    with torch.no_grad():
        z, log_q = local.rsample(member, 4000)
    gauss = DiagonalGaussian(mu, logvar)
    torch.testing.assert_close(log_q, gauss.log_prob(z), atol=1e-3, rtol=1e-4)
    torch.testing.assert_close(z.mean(0), mu, atol=0.2, rtol=0)


@pytest.mark.parametrize("family", list(FAMILIES))
def test_qstar_fitted_from_q_never_ends_below_q(family):
    enc = encoder(family)
    with torch.no_grad():
        q = enc.posterior(X)
        z, log_q = q.rsample(4000)
        l_q = log_weight(LL(z), log_standard_normal(z), log_q).mean(0)
    fit = optimize_local(LL, enc.family.local, X.shape[0], n_samples=20, lr=3e-3,
                         check_every=50, patience=2, max_steps=1500, eval_samples=4000,
                         init=q.local_params(), seed=0, lr_decay=0.5)
    assert (fit.elbo >= l_q - 0.1).all(), (fit.elbo - l_q).min()
    assert fit.elbo.mean() > l_q.mean()
    assert (fit.elbo <= LOG_PX + 0.1).all()


def test_every_local_family_of_the_registry_is_reachable_by_name():
    for cls in FAMILIES.values():
        local = local_family(cls.local_class.name, MODEL.D, config(GAUSSIAN))
        assert local.name == cls.local_class.name
    with pytest.raises(ValueError, match="allowed"):
        local_family("bogus", MODEL.D, config(GAUSSIAN))


@pytest.mark.parametrize("family", ["ffg", "flow", "cflow"])
def test_checkpoints_written_before_the_families_refactor_still_load(family):
    """Fixtures written by the code of commit 8d773df (before common/models/families.py): the same
    weights give the same samples and log q, and the run identity is unchanged, so long runs
    resume."""
    state = read_checkpoint(FIXTURES / f"{family}.pt")
    model = model_from_state(state)
    sample = torch.load(FIXTURES / f"{family}_sample.pt")
    with torch.no_grad():
        z, log_q = model.encoder.sample_and_log_prob(sample["x"], 2,
                                                     generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(z, sample["z"])
    torch.testing.assert_close(log_q, sample["log_q"])
    from common.runs.train import TrainConfig
    cfg = TrainConfig(epochs=1, warmup_epochs=1, n_valid_monitor=20, batch_size=50)
    check_identity(state, run_identity(model.config, cfg, 0), FIXTURES / f"{family}.pt")
    # a family option another family reads (AF's hidden sizes) leaves this identity alone
    import dataclasses
    other = dataclasses.replace(model.config, family_hidden=(50,))
    check_identity(state, run_identity(other, cfg, 0), FIXTURES / f"{family}.pt")
