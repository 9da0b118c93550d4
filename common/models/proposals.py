"""Tractable per-point densities q0(z|x) that start an AIS path (common/inference/estimators.py).

Contract (the one `ais` takes): for a fixed batch of B points in D dimensions,

    proposal.sample(n, generator) -> z [n, B, D]          (no gradient)
    proposal.log_prob(z)          -> [n, B]               (differentiable in z)
    proposal.scale                -> [B, D] or None        (per-dimension spread: HMC metric)

and optionally `log_prob_and_grad(z) -> (log q0 [n, B], d log q0 / dz [n, B, D])` where it has
a closed form; otherwise `log_prob_and_grad` below takes the gradient by autograd.
"""
import torch

from .posteriors import LOG_2PI, log_prob_base_and_flow, log_standard_normal, sample_base_and_flow

SCALE_SAMPLES = 256  # samples used to measure the spread of a flow density


class StandardNormal:
    """The prior N(0, I): AIS from it is the paper's path p(z) p(x|z)^beta."""

    def __init__(self, n_points: int, z_dim: int, device="cpu", dtype=torch.float32):
        self.shape, self.device, self.dtype = (n_points, z_dim), torch.device(device), dtype
        self.scale = None

    def sample(self, n, generator=None):
        return torch.randn((n, *self.shape), generator=generator, device=self.device,
                           dtype=self.dtype)

    def log_prob(self, z):
        return log_standard_normal(z)

    def log_prob_and_grad(self, z):
        return log_standard_normal(z), -z


class DiagonalGaussian:
    """N(mu_b, diag exp(logvar_b)) per point: the ffg q(z|x) of an encoder or an ffg q*."""

    def __init__(self, mu: torch.Tensor, logvar: torch.Tensor):
        self.mu, self.logvar = mu.detach(), logvar.detach()
        self.scale = (0.5 * self.logvar).exp()

    def sample(self, n, generator=None):
        eps = torch.randn((n, *self.mu.shape), generator=generator, device=self.mu.device,
                          dtype=self.mu.dtype)
        return self.mu + self.scale * eps

    def log_prob(self, z):
        return -0.5 * ((z - self.mu).pow(2) * (-self.logvar).exp() + self.logvar + LOG_2PI).sum(-1)

    def log_prob_and_grad(self, z):
        return self.log_prob(z), -(z - self.mu) * (-self.logvar).exp()


class FlowDensity:
    """A Gaussian base pushed through coupling layers (shared or per point): a flow q(z|x) or a
    flow q*. Its density goes through the exact inverse; its scale is the sample std."""

    def __init__(self, mu, logvar, layers, generator=None):
        detach = lambda p: {k: v.detach() for k, v in p.items()}  # noqa: E731
        self.mu, self.logvar = mu.detach(), logvar.detach()
        self.layers = [(u, detach(p)) for u, p in layers]
        # the spread's samples come from a seeded stream (never the global one), so the same
        # density always gets the same metric, whatever ran before in the process
        generator = generator or torch.Generator(device=self.mu.device).manual_seed(0)
        with torch.no_grad():
            self.scale = self.sample(SCALE_SAMPLES, generator).std(0).clamp_min(1e-4)

    def sample(self, n, generator=None):
        with torch.no_grad():
            return sample_base_and_flow(self.mu, self.logvar, self.layers, n, generator)[0]

    def log_prob(self, z):
        return log_prob_base_and_flow(z, self.mu, self.logvar, self.layers)


def log_prob_and_grad(proposal, z):
    """(log q0(z), its gradient in z), closed form where the proposal has one."""
    if hasattr(proposal, "log_prob_and_grad"):
        with torch.no_grad():
            return proposal.log_prob_and_grad(z)
    with torch.enable_grad():
        z = z.detach().requires_grad_(True)
        log_q = proposal.log_prob(z)
        grad, = torch.autograd.grad(log_q.sum(), z)
    return log_q.detach(), grad
