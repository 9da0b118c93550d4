"""A linear-Gaussian model with closed-form answers:
p(z) = N(0, I_D), p(x|z) = N(W z + b, s^2 I_M)
  log p(x) = log N(x; b, W W^T + s^2 I);  posterior precision L = I + W^T W / s^2,
  posterior mean L^{-1} W^T (x - b) / s^2;  best factorised Gaussian: ELBO = log p(x) - gap,
  gap = 0.5 (sum_i log L_ii - log det L).
"""
import torch
from torch.distributions import MultivariateNormal, Normal


class LinearGaussian:
    def __init__(self, z_dim=3, x_dim=6, noise=0.7, seed=0, dtype=torch.float32):
        g = torch.Generator().manual_seed(seed)
        self.D, self.M, self.s = z_dim, x_dim, noise
        self.W = torch.randn(x_dim, z_dim, generator=g, dtype=dtype)
        self.b = torch.randn(x_dim, generator=g, dtype=dtype)
        self.precision = torch.eye(z_dim, dtype=dtype) + self.W.T @ self.W / noise ** 2
        self.dtype = dtype

    def sample(self, n, seed=1):
        g = torch.Generator().manual_seed(seed)
        z = torch.randn(n, self.D, generator=g, dtype=self.dtype)
        x = z @ self.W.T + self.b + self.s * torch.randn(n, self.M, generator=g, dtype=self.dtype)
        return x, z

    def likelihood(self, x):
        def log_likelihood(z):
            return Normal(z @ self.W.T + self.b, self.s).log_prob(x).sum(-1)
        return log_likelihood

    def log_px(self, x):
        cov = self.W @ self.W.T + self.s ** 2 * torch.eye(self.M, dtype=self.dtype)
        return MultivariateNormal(self.b, cov).log_prob(x)

    def posterior(self, x):
        cov = torch.linalg.inv(self.precision)
        mean = (x - self.b) @ self.W @ cov.T / self.s ** 2
        return MultivariateNormal(mean, covariance_matrix=cov)

    def ffg_gap(self):
        return 0.5 * (self.precision.diagonal().log().sum() - torch.logdet(self.precision))
