"""exp51's grid log p(x) and posterior moments against a 2-D linear-Gaussian model (closed form)."""
import math
import types

import torch

from exp51_posteriors.evaluate import choose, grid_logpx
from linear_gaussian import LinearGaussian


class AsModel:
    """A LinearGaussian behind the one method grid_logpx uses: log p(x, z)."""

    def __init__(self, lg):
        self.lg = lg

    def log_joint(self, x, z):
        prior = -0.5 * (z.pow(2) + math.log(2 * math.pi)).sum(-1)
        return self.lg.likelihood(x)(z) + prior


def test_grid_log_px_posterior_mean_and_correlation_are_exact_in_2d():
    lg = LinearGaussian(z_dim=2, x_dim=5, noise=0.4, seed=3, dtype=torch.float64)
    x, _ = lg.sample(7)
    cfg = types.SimpleNamespace(grid_radius=6.0, grid_size=81, fine_grid=161, window_sds=6.0)
    logpx, mean, sd, corr, z, lj = grid_logpx(AsModel(lg), x, cfg)
    torch.testing.assert_close(logpx, lg.log_px(x), atol=1e-6, rtol=0)
    post = lg.posterior(x)
    torch.testing.assert_close(mean, post.mean, atol=1e-6, rtol=0)
    cov = post.covariance_matrix
    true_sd = cov.diagonal(dim1=-2, dim2=-1).sqrt()
    torch.testing.assert_close(sd, true_sd.expand_as(sd), atol=1e-6, rtol=0)
    torch.testing.assert_close(corr, (cov[..., 0, 1] / true_sd.prod(-1)).expand_as(corr),
                               atol=1e-6, rtol=0)
    # a grid that misses the posterior is not silently "exact": a narrow window is wrong
    narrow = types.SimpleNamespace(grid_radius=6.0, grid_size=401, fine_grid=161, window_sds=0.5)
    assert (grid_logpx(AsModel(lg), x, narrow)[0] - lg.log_px(x)).abs().max() > 0.1


def test_the_four_points_follow_their_rules_and_are_distinct():
    g = {"approx_gap": torch.tensor([0.1, 5.0, 0.2, 0.3, 0.4]),
         "amort_gap": torch.tensor([0.1, 9.0, 3.0, 0.3, 0.2]),
         "corr": torch.tensor([0.1, 0.2, 0.3, -0.9, 0.0]),
         "total_gap": torch.tensor([0.2, 14.0, 3.2, 0.6, 0.6])}
    assert choose(g) == [1, 2, 3, 4]
