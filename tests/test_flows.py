"""Every coupling layer and whole flow: log-det against the autograd Jacobian (float64),
inverse round trip, density via the inverse, shapes, gradients."""
import pytest
import torch
from torch.autograd.functional import jacobian

from common.models.families import FAMILIES
from common.models.flows import (CouplingFlow, coupling_forward, coupling_inverse, flow_forward,
                          flow_inverse, init_coupling, init_flow)
from common.models.posteriors import log_prob_base_and_flow
from common.models.vae import Encoder, ModelConfig
from common.models.vae import VAE, model_config

Z_DIM = 5  # odd on purpose: halves of 2 and 3


def perturbed(params, scale=0.5):
    """Make heads non-trivial so the Jacobian test has something to check."""
    return {k: v + scale * torch.randn_like(v) for k, v in params.items()}


def jacobian_logdet(fn, z):
    """log|det J| per point: the Jacobian of the batched map [B, D] -> [B, D] is block
    diagonal (points do not interact), so take the B diagonal blocks of the full Jacobian."""
    full = jacobian(fn, z)                                   # [B, D, B, D]
    blocks = torch.stack([full[b, :, b, :] for b in range(z.shape[0])])
    return torch.linalg.slogdet(blocks)[1]


def layer_cases():
    torch.manual_seed(1)
    B, D = 4, Z_DIM
    cases = {}
    for update_second, (c, u) in ((True, (2, 3)), (False, (3, 2))):
        shared = perturbed(init_coupling(c, u, 7, dtype=torch.float64))
        per_point = perturbed(init_coupling(c, u, 7, batch_shape=(B,), dtype=torch.float64))
        context = dict(shared, b_in=shared["b_in"] + torch.randn(B, 7, dtype=torch.float64))
        for name, params in (("global", shared), ("per_point", per_point), ("contextual", context)):
            cases[f"{name}-update_second={update_second}"] = (update_second, params)
    return B, D, cases


B, D, CASES = layer_cases()


@pytest.mark.parametrize("case", sorted(CASES))
def test_coupling_logdet_matches_autograd_jacobian(case):
    update_second, params = CASES[case]
    z = torch.randn(B, D, dtype=torch.float64)
    _, log_det = coupling_forward(z, update_second, params)
    expected = jacobian_logdet(lambda v: coupling_forward(v, update_second, params)[0], z)
    torch.testing.assert_close(log_det, expected, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("case", sorted(CASES))
def test_coupling_inverse_round_trip(case):
    update_second, params = CASES[case]
    z = torch.randn(3, B, D, dtype=torch.float64)
    y, ld = coupling_forward(z, update_second, params)
    back, inv_ld = coupling_inverse(y, update_second, params)
    torch.testing.assert_close(back, z)
    torch.testing.assert_close(inv_ld, -ld)


def whole_flows():
    torch.manual_seed(2)
    flows = {
        "global": [(u, perturbed(p)) for u, p in init_flow(D, 6, 2, dtype=torch.float64)],
        "per_point": [(u, perturbed(p)) for u, p in
                      init_flow(D, 6, 2, batch_shape=(B,), dtype=torch.float64)],
    }
    module = CouplingFlow(D, 6, 2, context_dim=3).double()
    with torch.no_grad():
        for p in module.parameters():
            p.add_(0.5 * torch.randn_like(p))
    flows["contextual"] = module.layers(torch.randn(B, 3, dtype=torch.float64))
    return flows


FLOWS = whole_flows()


@pytest.mark.parametrize("name", sorted(FLOWS))
def test_whole_flow_logdet_matches_autograd_jacobian(name):
    layers = [(u, {k: v.detach() for k, v in p.items()}) for u, p in FLOWS[name]]
    z = torch.randn(B, D, dtype=torch.float64)
    _, log_det = flow_forward(z, layers)
    expected = jacobian_logdet(lambda v: flow_forward(v, layers)[0], z)
    torch.testing.assert_close(log_det, expected, rtol=1e-9, atol=1e-9)
    back, inv = flow_inverse(flow_forward(z, layers)[0], layers)
    torch.testing.assert_close(back, z)
    torch.testing.assert_close(inv, -log_det)


@pytest.mark.parametrize("family", ["ffg", "flow", "cflow"])
def test_log_q_equals_base_density_minus_logdet_at_inverted_point(family):
    encoder = Encoder(784, ModelConfig(family=family, z_dim=Z_DIM, enc_hidden=(16,),
                                       flow_steps=2, flow_hidden=8, context_dim=3)).double()
    x = torch.bernoulli(torch.full((B, 784), 0.3, dtype=torch.float64))
    q = encoder.posterior(x)
    z, log_q = q.rsample(6)
    assert z.shape == (6, B, Z_DIM) and log_q.shape == (6, B)
    torch.testing.assert_close(q.log_prob(z), log_q, rtol=1e-8, atol=1e-8)


@pytest.mark.parametrize("family", list(FAMILIES))
def test_every_parameter_receives_a_gradient(family):
    model = VAE(model_config("small_encoder", family=family, z_dim=4, dec_hidden=(8,)))
    x = torch.bernoulli(torch.full((3, 784), 0.3))
    z, log_q = model.encoder.sample_and_log_prob(x, 2)
    (model.log_joint(x, z) - log_q).mean().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or p.grad.abs().sum() == 0]
    assert missing == []


def test_families_share_the_encoder_trunk_and_cflow_adds_only_its_context():
    counts = {f: VAE(model_config(family=f)).parameter_counts() for f in ("ffg", "flow", "cflow")}
    assert counts["ffg"]["decoder"] == counts["flow"]["decoder"] == counts["cflow"]["decoder"]
    flow_extra = counts["flow"]["encoder"] - counts["ffg"]["encoder"]
    assert flow_extra > 0
    # cflow = flow + context head rows (200 * 20 + 20) + w_ctx per coupling (4 x 20 x 50)
    assert counts["cflow"]["encoder"] - counts["flow"]["encoder"] == 200 * 20 + 20 + 4 * 20 * 50


def test_log_prob_base_and_flow_matches_gaussian_without_flow():
    mu, logvar = torch.randn(B, D, dtype=torch.float64), torch.randn(B, D, dtype=torch.float64)
    z = torch.randn(2, B, D, dtype=torch.float64)
    expected = torch.distributions.Normal(mu, (0.5 * logvar).exp()).log_prob(z).sum(-1)
    torch.testing.assert_close(log_prob_base_and_flow(z, mu, logvar, []), expected)
