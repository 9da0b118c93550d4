"""Estimators against closed-form answers of a linear-Gaussian model, and bound orderings."""
import torch

from common.estimators import (_ll_and_grad, ais, bdmc, beta_schedule, elbo, hmc_move, iwae,
                               proposal_bounds)
from common.local_opt import optimize_local, optimize_local_loop
from tests.linear_gaussian import LinearGaussian

MODEL = LinearGaussian()
X, Z_TRUE = MODEL.sample(24)
LL = MODEL.likelihood(X)
LOG_PX = MODEL.log_px(X)


def exact_posterior_proposal(n):
    post = MODEL.posterior(X)
    z = post.sample((n,))
    return z, post.log_prob(z)


def test_iwae_with_exact_posterior_is_exact_for_any_k():
    for k in (1, 7, 100):
        torch.testing.assert_close(iwae(LL, exact_posterior_proposal, k, chunk=3).float(), LOG_PX,
                                   atol=1e-4, rtol=0)
        torch.testing.assert_close(elbo(LL, exact_posterior_proposal, k, chunk=3).float(), LOG_PX,
                                   atol=1e-4, rtol=0)


def test_ais_converges_to_exact_log_px():
    est, stats = ais(LL, X.shape[0], MODEL.D, n_chains=32, n_steps=1000, n_leapfrog=5, seed=0,
                     init_step=0.1, return_stats=True)
    assert est.shape == (24,)
    assert (est - LOG_PX).mean().abs() < 0.03, (est - LOG_PX).mean()
    assert (est - LOG_PX).abs().mean() < 0.08, (est - LOG_PX).abs().mean()
    assert 0.3 < stats.acceptance < 1.0
    # fewer steps give a looser (lower) estimate on average: AIS is a stochastic lower bound
    short = ais(LL, X.shape[0], MODEL.D, n_chains=4, n_steps=3, n_leapfrog=2, seed=0)
    assert short.mean() < est.mean()
    assert (short - LOG_PX).mean() < 0.05


def test_ais_chunking_over_chains_gives_the_same_estimator():
    a = ais(LL, 24, MODEL.D, n_chains=16, n_steps=500, n_leapfrog=5, seed=3, init_step=0.1)
    b = ais(LL, 24, MODEL.D, n_chains=16, n_steps=500, n_leapfrog=5, seed=3, init_step=0.1,
            max_rows=24 * 6)  # three chunks of 6, 6 and 4 chains
    for est in (a, b):
        assert (est - LOG_PX).mean().abs() < 0.05 and (est - LOG_PX).abs().mean() < 0.15


def test_hmc_leaves_the_exact_posterior_invariant():
    post = MODEL.posterior(X)
    z = post.sample((400,))                                    # [chains, points, D]
    ll, grad = _ll_and_grad(LL, z)
    step = torch.full((400, 24, 1), 0.12)
    gen = torch.Generator().manual_seed(0)
    for _ in range(30):
        z, ll, grad, accept = hmc_move(LL, z, ll, grad, 1.0, step, 5, gen)
    assert 0.5 < accept.mean() < 1.0
    centred = z - post.mean
    cov = torch.einsum("cbi,cbj->bij", centred, centred) / 400
    torch.testing.assert_close(z.mean(0), post.mean, atol=0.08, rtol=0)
    torch.testing.assert_close(cov.mean(0), post.covariance_matrix[0], atol=0.02, rtol=0)
    # the same chains started far away (at the prior) drift into the posterior
    z = torch.randn(400, 24, MODEL.D, generator=gen)
    ll, grad = _ll_and_grad(LL, z)
    for _ in range(100):
        z, ll, grad, _ = hmc_move(LL, z, ll, grad, 1.0, step, 5, gen)
    torch.testing.assert_close(z.mean(0), post.mean, atol=0.08, rtol=0)


def test_beta_schedules_run_from_zero_to_one_monotonically():
    for name in ("sigmoid", "linear"):
        b = beta_schedule(50, name)
        assert b[0] == 0 and b[-1] == 1 and (b[1:] >= b[:-1]).all()


def test_bdmc_brackets_the_truth():
    result = bdmc(LL, Z_TRUE, n_chains=16, n_steps=500, n_leapfrog=5, seed=0, init_step=0.1)
    truth = LOG_PX.mean().item()
    assert result.lower.mean().item() <= truth + 0.05
    assert result.upper.mean().item() >= truth - 0.05
    assert 0 <= result.gap < 0.15
    # a short schedule leaves a visible gap that still brackets the truth
    short = bdmc(LL, Z_TRUE, n_chains=4, n_steps=5, n_leapfrog=2, seed=0)
    assert short.lower.mean().item() < truth < short.upper.mean().item()


FAST = dict(n_samples=50, lr=1e-2, check_every=50, patience=4, eval_samples=4000, seed=0)


def test_ffg_qstar_reaches_the_analytic_best_elbo():
    result = optimize_local(LL, X.shape[0], MODEL.D, family="ffg", **FAST)
    best = LOG_PX - MODEL.ffg_gap()
    assert (result.elbo - best).abs().mean() < 0.03, (result.elbo - best).abs().mean()
    assert (result.elbo <= LOG_PX + 0.02).all()
    assert (result.iwae >= result.elbo - 1e-4).all()
    assert (result.iwae - LOG_PX).mean().abs() < 0.05  # IWAE of q* is nearly exact on average


def test_flow_qstar_is_at_least_as_good_as_ffg():
    ffg = optimize_local(LL, X.shape[0], MODEL.D, family="ffg", **FAST)
    flow = optimize_local(LL, X.shape[0], MODEL.D, family="flow", flow_hidden=16, **FAST)
    assert flow.elbo.mean() >= ffg.elbo.mean() - 0.02
    assert (flow.elbo <= LOG_PX + 0.05).all()


def test_batched_local_optimisation_agrees_with_one_point_at_a_time():
    n = 6
    batched = optimize_local(LL, X.shape[0], MODEL.D, family="ffg", **FAST)
    looped = optimize_local_loop(MODEL.likelihood(X[:n]), n, MODEL.D, family="ffg", **FAST)
    assert looped.elbo.shape == (n,)
    assert (batched.elbo[:n] - looped.elbo).abs().max() < 0.05
    assert (batched.elbo[:n] - looped.elbo).mean().abs() < 0.02


def test_stopping_rule_freezes_points_and_respects_the_cap():
    result = optimize_local(LL, X.shape[0], MODEL.D, family="ffg", n_samples=10, lr=1e-2,
                            check_every=20, patience=2, max_steps=200, eval_samples=100, seed=1)
    assert (result.steps <= 200).all() and (result.steps >= 20 * 3).all()
    assert (result.steps % 20 == 0).all()


def test_warm_start_from_a_given_proposal():
    post = MODEL.posterior(X)
    init = {"mu": post.mean, "logvar": post.covariance_matrix.diagonal(dim1=-2, dim2=-1).log()}
    result = optimize_local(LL, X.shape[0], MODEL.D, family="ffg", init=init, max_steps=1,
                            check_every=1, eval_samples=2000, seed=0)
    # the posterior marginals are a factorised Gaussian worse than the best ffg
    assert (result.elbo <= LOG_PX - MODEL.ffg_gap() + 0.05).all()


def test_bounds_are_ordered_elbo_iwae_logpx():
    post = MODEL.posterior(X)
    std = post.covariance_matrix.diagonal(dim1=-2, dim2=-1).sqrt() * 1.5  # a poor ffg proposal
    q = torch.distributions.Normal(post.mean, std)

    def proposal(n):
        z = q.sample((n,))
        return z, q.log_prob(z).sum(-1)
    e, i1 = proposal_bounds(LL, proposal, 2000, 500)
    _, i10 = proposal_bounds(LL, lambda n: proposal(n), 10, 10)
    assert e.mean() < i10.mean() < i1.mean() <= LOG_PX.mean() + 0.01


def test_a_factorised_gaussian_is_a_member_of_the_per_point_flow_family():
    """Why the flow q* may fall back on the ffg q*: zero head weights make each coupling an
    affine map with constant scale, so the flow of a Gaussian base is a factorised Gaussian."""
    from common.flows import init_flow
    from common.local_opt import flatten
    from common.posteriors import sample_base_and_flow
    mu, logvar = torch.randn(4, 5), torch.randn(4, 5)
    layers = init_flow(5, 7, 2, batch_shape=(4,))
    for _, p in layers:
        p["w_shift"].zero_()
        p["w_gate"].zero_()
        p["b_gate"].fill_(30.0)  # scale 1
    z, log_q = sample_base_and_flow(mu, logvar, layers, 3000)
    torch.testing.assert_close(z.mean(0), mu, atol=0.15, rtol=0)
    expected = torch.distributions.Normal(mu, (0.5 * logvar).exp()).log_prob(z).sum(-1)
    torch.testing.assert_close(log_q, expected, atol=1e-4, rtol=0)
    assert set(flatten(mu, logvar, layers)) >= {"mu", "logvar", "0.w_in", "3.b_gate"}
