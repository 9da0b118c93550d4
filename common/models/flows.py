"""Affine coupling flows written once, as functions of z and a parameter set.

A flow is a list of half-couplings. Each half-coupling updates one half of z from the other:

    h = tanh(cond @ w_in + b_in)
    shift = h @ w_shift + b_shift,  gate = h @ w_gate + b_gate
    upd' = upd * sigmoid(gate) + shift,   log|det| = sum log sigmoid(gate) = sum (gate - softplus(gate))

One "step" is two half-couplings (second half from the first, then the first from the second).
Every weight may be shared ([in, out]) or per point ([B, in, out]); every bias may be [out] or
[B, out]. So one code path serves
  - a global flow (all x share the parameters),
  - a contextual flow (b_in = b_in + c(x) @ w_ctx is per point, predicted from x),
  - per-point free flows for the local optimisation of q* (every tensor has a leading B).
Contract: forward returns (z, log_det) with log_det of shape [..., B].
"""
import math

import torch
import torch.nn.functional as F
from torch import nn

GATE_BIAS_INIT = 2.0  # sigmoid(2) = 0.88: each coupling starts as a mild contraction
PARAM_NAMES = ("w_in", "b_in", "w_shift", "b_shift", "w_gate", "b_gate")


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """x [..., B, i] @ weight ([i, o] shared or [B, i, o] per point) + bias ([o] or [B, o])."""
    if weight.dim() == 2:
        return x @ weight + bias
    # per point: batched matmul over B with the sample dims folded into rows
    lead = x.shape[:-2]
    xb = x.reshape(-1, *x.shape[-2:]).transpose(0, 1)          # [B, S, i]
    out = torch.bmm(xb, weight).transpose(0, 1)                 # [S, B, o]
    return out.reshape(*lead, *out.shape[-2:]) + bias


def half_sizes(z_dim: int):
    first = z_dim // 2
    return first, z_dim - first


def layer_dims(z_dim: int, n_steps: int):
    """(update_second, cond_dim, upd_dim) for each half-coupling of the flow."""
    first, second = half_sizes(z_dim)
    dims = []
    for _ in range(n_steps):
        dims.append((True, first, second))
        dims.append((False, second, first))
    return dims


def init_coupling(cond_dim: int, upd_dim: int, hidden: int, batch_shape=(), generator=None,
                  dtype=torch.float32, device="cpu") -> dict:
    """Fresh parameters of one half-coupling (like nn.Linear's init; small output heads)."""
    def uniform(*shape, fan_in):
        bound = 1.0 / math.sqrt(fan_in)
        u = torch.rand(*batch_shape, *shape, generator=generator, dtype=dtype)
        return ((2 * u - 1) * bound).to(device)
    return {
        "w_in": uniform(cond_dim, hidden, fan_in=cond_dim),
        "b_in": uniform(hidden, fan_in=cond_dim),
        "w_shift": 0.01 * uniform(hidden, upd_dim, fan_in=hidden),
        "b_shift": torch.zeros(*batch_shape, upd_dim, dtype=dtype, device=device),
        "w_gate": 0.01 * uniform(hidden, upd_dim, fan_in=hidden),
        "b_gate": torch.full((*batch_shape, upd_dim), GATE_BIAS_INIT, dtype=dtype, device=device),
    }


def init_flow(z_dim: int, hidden: int, n_steps: int, batch_shape=(), generator=None,
              dtype=torch.float32, device="cpu") -> list:
    return [(update_second, init_coupling(c, u, hidden, batch_shape, generator, dtype, device))
            for update_second, c, u in layer_dims(z_dim, n_steps)]


def _coupling_terms(cond, params):
    h = torch.tanh(linear(cond, params["w_in"], params["b_in"]))
    shift = linear(h, params["w_shift"], params["b_shift"])
    gate = linear(h, params["w_gate"], params["b_gate"])
    return shift, gate - F.softplus(gate)  # log sigmoid(gate), stable


def coupling_forward(z, update_second: bool, params: dict):
    first, _ = half_sizes(z.shape[-1])
    a, b = z[..., :first], z[..., first:]
    cond, upd = (a, b) if update_second else (b, a)
    shift, log_scale = _coupling_terms(cond, params)
    upd = upd * log_scale.exp() + shift
    z = torch.cat((a, upd) if update_second else (upd, b), dim=-1)
    return z, log_scale.sum(-1)


def coupling_inverse(z, update_second: bool, params: dict):
    first, _ = half_sizes(z.shape[-1])
    a, b = z[..., :first], z[..., first:]
    cond, upd = (a, b) if update_second else (b, a)
    shift, log_scale = _coupling_terms(cond, params)
    upd = (upd - shift) * (-log_scale).exp()
    z = torch.cat((a, upd) if update_second else (upd, b), dim=-1)
    return z, -log_scale.sum(-1)


def flow_forward(z, layers):
    """z0 -> z_K through every half-coupling; returns (z_K, sum of log|det|) [..., B]."""
    log_det = torch.zeros(z.shape[:-1], dtype=z.dtype, device=z.device)
    for update_second, params in layers:
        z, ld = coupling_forward(z, update_second, params)
        log_det = log_det + ld
    return z, log_det


def flow_inverse(z, layers):
    """z_K -> z0; returns (z0, log|det| of the inverse map) [..., B]."""
    log_det = torch.zeros(z.shape[:-1], dtype=z.dtype, device=z.device)
    for update_second, params in reversed(layers):
        z, ld = coupling_inverse(z, update_second, params)
        log_det = log_det + ld
    return z, log_det


class CouplingFlow(nn.Module):
    """Global flow: one parameter set shared by all x (family `flow`).

    With context_dim > 0 it is the contextual flow (family `cflow`): each coupling net also
    receives the encoder's context c(x) [B, C] through its own w_ctx [C, hidden], which makes
    its first-layer bias per point: b_in(x) = b_in + c(x) @ w_ctx, so z = f_{lambda(x)}(z0).
    """

    def __init__(self, z_dim: int, hidden: int = 50, n_steps: int = 2, context_dim: int = 0):
        super().__init__()
        self.z_dim, self.hidden, self.n_steps, self.context_dim = z_dim, hidden, n_steps, context_dim
        self.update_second = [u for u, _, _ in layer_dims(z_dim, n_steps)]
        self.couplings = nn.ModuleList()
        for _, params in init_flow(z_dim, hidden, n_steps):
            module = nn.ParameterDict({k: nn.Parameter(v) for k, v in params.items()})
            if context_dim:
                bound = 1.0 / math.sqrt(context_dim)
                module["w_ctx"] = nn.Parameter((2 * torch.rand(context_dim, hidden) - 1) * bound)
            self.couplings.append(module)

    def layers(self, context=None) -> list:
        """Parameter sets for flow_forward; per point when a context [B, C] is given."""
        out = []
        for update_second, module in zip(self.update_second, self.couplings):
            params = {k: module[k] for k in PARAM_NAMES}
            if self.context_dim:
                params["b_in"] = params["b_in"] + context @ module["w_ctx"]
            out.append((update_second, params))
        return out

    def forward(self, z, context=None):
        return flow_forward(z, self.layers(context))
