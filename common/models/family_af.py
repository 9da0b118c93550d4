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
runs in the extended space (z, v), from AF's exact joint density to p(x, z) r(v|x, z) (AFJoint).

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
from .posteriors import ACTIVATIONS, LOG_2PI, log_standard_normal

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


def af_draw(p: dict, n: int, steps: int, activation, generator=None, eps=None):
    """(z_T, v_T) [n, B, D] each and log q(z_T, v_T|x) = log q0(z0, v0) - log|det| [n, B],
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
    return z, v, log_qz + log_qv - log_det


def log_reverse(p: dict, z, v, activation, r_bias=None):
    """log r(v_T|x, z_T): the reverse model's factorised Gaussian."""
    r_mean, r_logvar = run_net(p, "r", z, activation, bias=r_bias)
    return log_normal(v, r_mean, soft_bound(r_logvar))


def af_sample(p: dict, n: int, steps: int, activation, generator=None, eps=None,
              r_bias=None):
    """z_T [n, B, D] and the bound's term log q0(z0, v0) - log|det| - log r(v_T|z_T) [n, B],
    from noise eps [n, B, 2D] (drawn if not given)."""
    z, v, log_q = af_draw(p, n, steps, activation, generator, eps)
    return z, log_q - log_reverse(p, z, v, activation, r_bias)


def af_inverse(p: dict, z, v, steps: int, activation):
    """The inverse of af_forward, from (z_T, v_T) [..., B, D]: (z0, v0, the forward pass's
    sum log|det|). Each half-step is affine in the half it moves given the other half, so
    z_{t-1} = (z_t - m_b(v_t)) / s_b(v_t) and then v_{t-1} = (v_t - m_a(z_{t-1})) / s_a(z_{t-1})."""
    log_det = torch.zeros(z.shape[:-1], dtype=z.dtype, device=z.device)
    for t in reversed(range(steps)):
        shift, gate = run_net(p, f"fz{t}", v, activation)
        gate = soft_bound(gate + GATE_SHIFT)
        z = (z - shift) / torch.sigmoid(gate)
        log_det = log_det + F.logsigmoid(gate).sum(-1)
        shift, gate = run_net(p, f"fv{t}", z, activation)
        gate = soft_bound(gate + GATE_SHIFT)
        v = (v - shift) / torch.sigmoid(gate)
        log_det = log_det + F.logsigmoid(gate).sum(-1)
    return z, v, log_det


class AFJoint:
    """AF's exact joint density q(z_T, v_T|x) as an AIS proposal in the extended space
    u = (z, v) of 2D dimensions (the `common/models/proposals.py` contract, plus `dim`,
    `extend_likelihood` and `extend_posterior_samples`, which `common/inference/gaps.py` uses for
    any proposal that has them).

    AIS then anneals from q(z, v|x) to p(x, z) r(v|x, z); r integrates to one in v, so the
    target's normaliser is still p(x) and the estimate is of p(x) as on every other path. In the
    prior's terms the target is N(u; 0, I) exp(L(u)) with the extended likelihood
        L(z, v) = log p(x|z) + log r(v|x, z) - log N(v; 0, I).
    The start is AF's own density, exact through the closed-form inverse (af_inverse); the
    factorised Gaussian of its samples' median and MAD that started AIS in z before (commit
    2c63564) left BDMC gaps of 1.57, 3.63 and 9.94 nats on exp55's AF (quick, epochs 30, 5, 1)
    and 2.07 and 0.34 on exp52's Fashion and MNIST AF; from AFJoint: -0.004, 0.026, 0.025, 0.28
    and 0.034 (commit cf4b9c1, same checkpoints and BDMC settings). An exact sample of the extended
    target (BDMC's reverse start) is z ~ p(z|x) with v ~ r(v|x, z).
    params: AF's per-point parameters (an AF q*, or AFPosterior.local_params())."""

    def __init__(self, params: dict, steps: int, activation, n_scale: int = MOMENT_SAMPLES):
        self.params = {k: v.detach() for k, v in params.items()}
        self.steps, self.activation = steps, activation
        self.z_dim = self.params["mu"].shape[-1]
        self.dim = 2 * self.z_dim
        with torch.no_grad():   # the HMC metric: robust spread of its samples (fixed seed)
            u = self.sample(n_scale, torch.Generator(self.params["mu"].device).manual_seed(0))
            center = u.median(0).values
            self.scale = (MAD_TO_SD * (u - center).abs().median(0).values).clamp_min(1e-4)

    def sample(self, n, generator=None):
        with torch.no_grad():
            z, v, _ = af_draw(self.params, n, self.steps, self.activation, generator)
            return torch.cat([z, v], -1)

    def log_prob(self, u):
        """log q(z_T, v_T|x) = log q(z0|x) + log q(v0|z0) - sum log|det| (eq. 7)."""
        p, d = self.params, self.z_dim
        z0, v0, log_det = af_inverse(p, u[..., :d], u[..., d:], self.steps, self.activation)
        v_mean, v_logvar = run_net(p, "qv", z0, self.activation)
        return (log_normal(z0, p["mu"], soft_bound(p["logvar"]))
                + log_normal(v0, v_mean, soft_bound(v_logvar)) - log_det)

    def log_reverse(self, u):
        """log r(v|x, z) on u = (z, v)."""
        d = self.z_dim
        return log_reverse(self.params, u[..., :d], u[..., d:], self.activation)

    def extend_likelihood(self, log_likelihood):
        """L(u) = log p(x|z) + log r(v|x, z) - log N(v; 0, I): the target p(x, z) r(v|x, z)
        written as the prior N(u; 0, I) times L, the form AIS's path takes."""
        d = self.z_dim
        return lambda u: (log_likelihood(u[..., :d]) + self.log_reverse(u)
                          - log_standard_normal(u[..., d:]))

    def extend_posterior_samples(self, z, generator=None):
        """(z, v) with v ~ r(v|x, z) from exact posterior samples z [B, D]: exact samples of
        the extended target p(z|x) r(v|x, z)."""
        with torch.no_grad():
            r_mean, r_logvar = run_net(self.params, "r", z, self.activation)
            eps = torch.randn(z.shape, generator=generator, device=z.device, dtype=z.dtype)
            return torch.cat([z, r_mean + (0.5 * soft_bound(r_logvar)).exp() * eps], -1)


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
        return AFJoint(params, self.steps, self.activation)

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
        return AFJoint(self.local_params(), self.family.local.steps, self.family.local.activation)


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
