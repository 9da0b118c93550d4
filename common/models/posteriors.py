"""The density math every posterior family shares: the standard normal, MLPs, a Gaussian base
through a coupling flow, and the one per-sample ELBO of every bound and objective.

    log_weight = log p(x|z) + log p(z) - w log q(z|x)      (w = 1 but during the entropy warm-up)

The families themselves (ffg, flow, cflow, ...) are in common/models/families.py; the encoder that
carries them in common/models/vae.py.
"""
import math

import torch
from torch import nn

from .flows import flow_forward, flow_inverse

ACTIVATIONS = {"elu": nn.ELU, "tanh": nn.Tanh, "relu": nn.ReLU}
LOG_2PI = math.log(2 * math.pi)


def mlp(sizes, activation: str, final_activation: bool = False) -> nn.Sequential:
    layers = []
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(n_in, n_out))
        if i < len(sizes) - 2 or final_activation:
            layers.append(ACTIVATIONS[activation]())
    return nn.Sequential(*layers)


def log_standard_normal(z: torch.Tensor) -> torch.Tensor:
    return -0.5 * (z.pow(2) + LOG_2PI).sum(-1)


def log_weight(log_px_z, log_pz, log_q, entropy_weight: float = 1.0):
    """One sample's ELBO term, log p(x|z) + log p(z) - w log q(z|x) (the ELBO's and IWAE's log
    weight at w = 1; the training objective anneals w, the paper's entropy warm-up). For an
    auxiliary family log q is log q(z, v|x) - log r(v|x, z)."""
    return log_px_z + log_pz - entropy_weight * log_q


def sample_base_and_flow(mu, logvar, layers, k: int, generator=None, eps=None):
    """z0 = mu + sigma * eps, z = f(z0); log q(z) = log N(z0; mu, sigma^2) - log|det df/dz0|.
    eps [k, B, D]: the noise, when the caller draws it (else drawn here)."""
    if eps is None:
        eps = torch.randn((k, *mu.shape), generator=generator, device=mu.device, dtype=mu.dtype)
    z0 = mu + (0.5 * logvar).exp() * eps
    log_q0 = -0.5 * (eps.pow(2) + logvar + LOG_2PI).sum(-1)
    z, log_det = flow_forward(z0, layers)
    return z, log_q0 - log_det


def log_prob_base_and_flow(z, mu, logvar, layers):
    """Density of the flow posterior at z (via the inverse): base density minus forward log-det."""
    z0, inv_log_det = flow_inverse(z, layers)
    log_q0 = -0.5 * (((z0 - mu) ** 2) * (-logvar).exp() + logvar + LOG_2PI).sum(-1)
    return log_q0 + inv_log_det
