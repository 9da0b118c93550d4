"""AF: the paper's auxiliary flow (Cremer, Li & Duvenaud 2018, section 2.2.2, eqs. 6-11).

A latent z and an auxiliary v of the same size D:

    q0(z0, v0|x) = q(z0|x) q(v0|z0)          q(z0|x) = N(mu(x), sigma^2(x)) from the encoder head,
                                              q(v0|z0) a factorised Gaussian MLP of z0
    for t = 1..T (eqs. 9-10):                 v_t = v_{t-1} * s_a(z_{t-1}) + m_a(z_{t-1})
                                              z_t = z_{t-1} * s_b(v_t) + m_b(v_t)
    (s = sigmoid of a gate, m a shift, both heads of one MLP per half-step)
    r(v_T|x, z_T)                             a factorised Gaussian MLP of the encoder's
                                              features h(x) and z_T (the reverse model)

and the bound (eq. 11) E[log p(x, z_T) + log r(v_T|x, z_T) - log q(z_T, v_T|x)], with
log q(z_T, v_T|x) = log q(z0|x) + log q(v0|z0) - sum log|det|. So `rsample` returns z_T and
log q(z0|x) + log q(v0|z0) - log|det| - log r(v_T|x, z_T): what the bound subtracts from
log p(x, z_T). AF has no density in z alone (v is integrated out), so no `log_prob`; its AIS
proposal is the factorised Gaussian of its samples' moments.

Its q* (section 3.4: "the same process is used to optimize all of its parameters") is AF with
every parameter per point: the base, q(v|z), the flow nets, and r (the features h(x) of a
fixed point only shift r's first-layer bias, so per point r is an MLP of z). A factorised
Gaussian is an exact member (zero output weights everywhere, r matched to v_T's law), so the
Gaussian q* is a start and a floor of AF's q*, as for the coupling flow.

Where we differ from the paper's code (chriscremer/Inference-Suboptimality,
models/approx_posteriors_v6.py, class aux_nf): it draws v0 first, q(v0|x), then
q(z0|x, v0) from an MLP of (x, v0); we follow the paper's text, q(z0|x) q(v0|z0), so that z0
comes from the same encoder head as every other family. Its flow nets are one tanh layer per
half-step with the gate's bias shifted by +5; ours use the model's activation and hidden sizes
(family_hidden; Table 2's two layers of 100 by default, the §5.5 study one of 50) with the
same +5 shift (each half-step starts near the identity).
"""
import math

import torch
import torch.nn.functional as F
from torch import nn

from .families import FAMILIES, MOMENT_SAMPLES, Family, gaussian_sample
from .flows import linear
from .posteriors import ACTIVATIONS, LOG_2PI
from .proposals import DiagonalGaussian

DEFAULT_HIDDEN = (100, 100)   # Table 2's AF: two hidden layers of 100 per net
GATE_SHIFT = 5.0              # sigmoid(gate + 5): each half-step starts near the identity
OUT_SCALE = 0.01              # output layers start small
MAD_TO_SD = 1.4826            # a Gaussian's s.d. over its median absolute deviation
SOFT_BOUND = 15.0             # log-variances and gates kept softly within +-15 (below)


def soft_bound(raw):
    """raw (a log-variance, or a gate's pre-activation) softly kept within +-SOFT_BOUND:
        b - softplus(b - (-b + softplus(raw + b))),
    the identity to within 1e-6 for |raw| < 1 and smooth everywhere. Without it AF's q* on
    MNIST and Fashion (quick, 500 points) drove some points' r to log-variances whose
    exp(-logvar) overflowed: the bound went -inf/NaN on a few of the 5000 evaluation samples."""
    b = SOFT_BOUND
    return b - F.softplus(b - (F.softplus(raw + b) - b))


def hidden_of(config) -> tuple:
    return tuple(config.family_hidden) or DEFAULT_HIDDEN


def net_shapes(z_dim: int, hidden: tuple, steps: int) -> dict:
    """Each net's layer sizes: q(v|z), the two half-steps of every flow step, r(v|z)."""
    sizes = (z_dim, *hidden, 2 * z_dim)
    nets = {"qv": sizes, "r": sizes}
    for t in range(steps):
        nets[f"fv{t}"] = sizes   # v_t from z_{t-1}
        nets[f"fz{t}"] = sizes   # z_t from v_t
    return nets


def init_nets(z_dim: int, hidden: tuple, steps: int, batch_shape=(), generator=None,
              device="cpu") -> dict:
    """Fresh weights of every net, flat {'<net>_<layer>_w': [*batch, in, out], '..._b'}; output
    layers small, gates' biases at 0 (GATE_SHIFT is added in the forward pass)."""
    out = {}
    for net, sizes in net_shapes(z_dim, hidden, steps).items():
        for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
            bound = 1.0 / math.sqrt(n_in)
            scale = OUT_SCALE if i == len(sizes) - 2 else 1.0
            w = (2 * torch.rand(*batch_shape, n_in, n_out, generator=generator) - 1) * bound
            b = (2 * torch.rand(*batch_shape, n_out, generator=generator) - 1) * bound
            out[f"{net}_{i}_w"] = (scale * w).to(device)
            out[f"{net}_{i}_b"] = (scale * b if i == len(sizes) - 2 else b).to(device)
    return out


def run_net(p: dict, net: str, x: torch.Tensor, activation, bias: torch.Tensor = None):
    """The MLP `net` of the flat parameters p on x [..., B, in] (weights shared or per point);
    bias: an extra per-point first-layer bias [B, H] (r's features of x). -> two heads."""
    i = 0
    while f"{net}_{i}_w" in p:
        x = linear(x, p[f"{net}_{i}_w"], p[f"{net}_{i}_b"])
        if i == 0 and bias is not None:
            x = x + bias
        i += 1
        if f"{net}_{i}_w" in p:
            x = activation(x)
    d = x.shape[-1] // 2
    return x[..., :d], x[..., d:]


def log_normal(x, mean, logvar):
    return -0.5 * (((x - mean) ** 2) * (-logvar).exp() + logvar + LOG_2PI).sum(-1)


def af_forward(p: dict, z0, v0, steps: int, activation):
    """The flow steps (eqs. 9-10) from (z0, v0) [..., B, D]: (z_T, v_T, sum log|det|). The
    gates' pre-activations are kept softly within +-SOFT_BOUND (soft_bound): AF's q* on
    Fashion drove a base variance up and the gates down together, until float32 lost the
    difference of log q0 and log|det| (a probe of +3.3e10 nats)."""
    z, v = z0, v0
    log_det = torch.zeros(z.shape[:-1], dtype=z.dtype, device=z.device)
    for t in range(steps):
        shift, gate = run_net(p, f"fv{t}", z, activation)
        gate = soft_bound(gate + GATE_SHIFT)
        v = v * torch.sigmoid(gate) + shift
        log_det = log_det + F.logsigmoid(gate).sum(-1)
        shift, gate = run_net(p, f"fz{t}", v, activation)
        gate = soft_bound(gate + GATE_SHIFT)
        z = z * torch.sigmoid(gate) + shift
        log_det = log_det + F.logsigmoid(gate).sum(-1)
    return z, v, log_det


def af_sample(p: dict, n: int, steps: int, activation, generator=None, eps=None,
              r_bias=None):
    """z_T [n, B, D] and the bound's term log q0(z0, v0) - log|det| - log r(v_T|z_T) [n, B],
    from noise eps [n, B, 2D] (drawn if not given)."""
    mu, logvar = p["mu"], soft_bound(p["logvar"])
    if eps is None:
        eps = torch.randn((n, *mu.shape[:-1], 2 * mu.shape[-1]), generator=generator,
                          device=mu.device, dtype=mu.dtype)
    d = mu.shape[-1]
    z0, log_qz = gaussian_sample(mu, logvar, n, eps=eps[..., :d])
    v_mean, v_logvar = run_net(p, "qv", z0, activation)
    v_logvar = soft_bound(v_logvar)
    v0 = v_mean + (0.5 * v_logvar).exp() * eps[..., d:]
    log_qv = -0.5 * (eps[..., d:].pow(2) + v_logvar + LOG_2PI).sum(-1)
    z, v, log_det = af_forward(p, z0, v0, steps, activation)
    r_mean, r_logvar = run_net(p, "r", z, activation, bias=r_bias)
    return z, log_qz + log_qv - log_det - log_normal(v, r_mean, soft_bound(r_logvar))


def moment_proposal(sample, n: int = MOMENT_SAMPLES):
    """AF's AIS proposal: the factorised Gaussian of n samples' robust moments (fixed seed), the
    median and 1.4826 x the median absolute deviation (a Gaussian's mean and s.d.). The plain
    moments failed on AF's q* of MNIST (quick): a few points' heavy-tailed samples gave
    variances that started AIS far out (its mean -2.6e13, lowest acceptance 0.00)."""
    with torch.no_grad():
        z = sample(n, torch.Generator(device="cpu").manual_seed(0))
        center = z.median(0).values
        scale = MAD_TO_SD * (z - center).abs().median(0).values
        return DiagonalGaussian(center, (scale ** 2).clamp_min(1e-6).log())



class AFLocal:
    """AF with every parameter per point: q* of AF models."""
    name = "af"
    gaussian_member = True

    def __init__(self, z_dim: int, config):
        self.z_dim, self.steps, self.hidden = z_dim, config.flow_steps, hidden_of(config)
        self.activation = ACTIVATIONS[config.activation]()

    def prior_params(self, n, generator=None, device="cpu") -> dict:
        zeros = torch.zeros(n, self.z_dim, device=device)
        return {"mu": zeros, "logvar": zeros.clone(),
                **init_nets(self.z_dim, self.hidden, self.steps, (n,), generator, device)}

    def rsample(self, params, n, generator=None):
        return af_sample(params, n, self.steps, self.activation, generator)

    def proposal(self, params):
        return moment_proposal(lambda k, g: self.rsample(params, k, g)[0])

    def from_gaussian(self, mu, logvar, generator=None) -> dict:
        """Zero output weights: q(v0|z0) = N(0, I), each half-step scales by the constant
        sigmoid(b + 5), r(v_T) = N(0, prod of v's scales squared) is v_T's exact law, so the
        bound's term is log N(z_T; mu, sigma^2) exactly when the base is rescaled."""
        n = mu.shape[0]
        p = init_nets(self.z_dim, self.hidden, self.steps, (n,), generator, mu.device)
        last = len(self.hidden)
        for net in net_shapes(self.z_dim, self.hidden, self.steps):
            p[f"{net}_{last}_w"].zero_()
            p[f"{net}_{last}_b"][..., :self.z_dim].zero_()      # shifts, means
        for t in range(self.steps):
            for half in ("fv", "fz"):
                p[f"{half}{t}_{last}_b"][..., self.z_dim:].zero_()   # gates: scale sigmoid(5)
        p[f"qv_{last}_b"][..., self.z_dim:].zero_()                 # v0 ~ N(0, I)
        scale = torch.sigmoid(soft_bound(torch.tensor(GATE_SHIFT))) ** self.steps
        p[f"r_{last}_b"][..., self.z_dim:] = 2 * math.log(scale)    # log var of v_T
        return {"mu": mu / scale, "logvar": logvar - 2 * math.log(scale), **p}


class AFPosterior:
    """The amortised AF of one batch: the base from the encoder head, shared nets, and r's
    features of x as a per-point first-layer bias."""

    def __init__(self, family, mu, logvar, nets: dict, r_bias):
        self.family, self.mu, self.logvar = family, mu, logvar
        self.nets, self.r_bias = nets, r_bias

    @property
    def params(self) -> dict:
        return {"mu": self.mu, "logvar": self.logvar, **self.nets}

    def rsample(self, n: int = 1, generator=None, eps=None):
        return af_sample(self.params, n, self.family.local.steps, self.family.local.activation,
                         generator, eps, self.r_bias)

    def log_prob(self, z):
        raise NotImplementedError("AF has no density in z alone (v is integrated out)")

    @property
    def base_dim(self) -> int:
        return 2 * self.mu.shape[-1]

    def transform(self, u):
        """(z0, v0) -> (z_T, v_T) on u [..., B, 2D], and log|det|."""
        d = self.mu.shape[-1]
        z, v, log_det = af_forward(self.params, u[..., :d], u[..., d:],
                                   self.family.local.steps, self.family.local.activation)
        return torch.cat([z, v], -1), log_det

    def local_params(self) -> dict:
        n = self.mu.shape[0]
        out = {"mu": self.mu.detach(), "logvar": self.logvar.detach()}
        for k, v in self.nets.items():
            out[k] = v.detach().unsqueeze(0).expand(n, *v.shape).clone()
        out["r_0_b"] = out["r_0_b"] + self.r_bias.detach()
        return out

    def proposal(self):
        return moment_proposal(lambda k, g: self.rsample(k, g)[0])


class AF(Family):
    display = "AF"
    local_class = AFLocal
    module_name = "af"
    uses = ("family_hidden",)

    @property
    def noise_dim(self) -> int:
        return 2 * self.z_dim

    def build(self, features: int):
        local = self.local
        p = init_nets(self.z_dim, local.hidden, local.steps)
        module = nn.ParameterDict({k: nn.Parameter(v) for k, v in p.items()})
        bound = 1.0 / math.sqrt(features)
        module["r_features"] = nn.Parameter((2 * torch.rand(features, local.hidden[0]) - 1) * bound)
        return module

    def posterior(self, module, mu, logvar, extra=None, features=None):
        nets = {k: module[k] for k in module.keys() if k != "r_features"}
        return AFPosterior(self, mu, logvar, nets, features @ module["r_features"])


FAMILIES["af"] = AF
