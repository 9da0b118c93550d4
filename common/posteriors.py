"""Amortised posteriors q(z|x): ffg, flow and cflow behind one contract.

    z, log_q = posterior.sample_and_log_prob(x, k)      # z [k, B, D], log_q [k, B], reparameterised

All three families share the same encoder trunk (sizes and activation). The trunk's head
outputs, per x:
  - ffg:   mu(x) [D], log sigma^2(x) [D]                           (2D numbers)
  - flow:  the same; the coupling flow's parameters are global      (2D numbers)
  - cflow: the same plus a context c(x) [C] that enters every coupling net (2D + C numbers)
"""
import math

import torch
from torch import nn

from .flows import CouplingFlow, flow_forward, flow_inverse

FAMILIES = ("ffg", "flow", "cflow")
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


class AmortisedPosterior(nn.Module):
    def __init__(self, x_dim: int, z_dim: int, hidden=(200, 200), activation: str = "elu",
                 family: str = "ffg", flow_steps: int = 2, flow_hidden: int = 50,
                 context_dim: int = 20):
        super().__init__()
        if family not in FAMILIES:
            raise ValueError(f"unknown family {family!r}; allowed: {', '.join(FAMILIES)}")
        self.family, self.z_dim = family, z_dim
        self.context_dim = context_dim if family == "cflow" else 0
        self.trunk = mlp((x_dim, *hidden), activation, final_activation=True) if hidden \
            else nn.Identity()
        trunk_out = hidden[-1] if hidden else x_dim
        self.head = nn.Linear(trunk_out, 2 * z_dim + self.context_dim)
        self.flow = None if family == "ffg" else CouplingFlow(z_dim, flow_hidden, flow_steps,
                                                              self.context_dim)

    def encode(self, x):
        """mu [B, D], logvar [B, D], and the flow's parameter sets (list; [] for ffg)."""
        out = self.head(self.trunk(x))
        mu, logvar = out[:, :self.z_dim], out[:, self.z_dim:2 * self.z_dim]
        context = out[:, 2 * self.z_dim:] if self.context_dim else None
        layers = self.flow.layers(context) if self.flow is not None else []
        return mu, logvar, layers

    def sample_and_log_prob(self, x, k: int = 1, generator=None, eps=None):
        mu, logvar, layers = self.encode(x)
        return sample_base_and_flow(mu, logvar, layers, k, generator, eps)

    def log_prob(self, x, z):
        mu, logvar, layers = self.encode(x)
        return log_prob_base_and_flow(z, mu, logvar, layers)
