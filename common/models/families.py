"""Posterior families behind one contract; FAMILIES is the only place a family name maps to code.

A family (in the spirit of zuko's and normflows' distributions) is built from the model config;
the encoder (common/models/posteriors.py) registers the module of its shared parameters and asks it
for the batch's posterior:

    family = FAMILIES[name](z_dim, config)
    family.head_size            # outputs the encoder head gives per x, beyond mu and log sigma^2
    module = family.build(features)   # its shared parameters (None for ffg)
    q = family.posterior(module, mu, logvar, extra, features)   # the batch's amortised q(z|x)
    z, log_q = q.rsample(n, generator=None, eps=None)     # [n, B, D], [n, B], reparameterised:
                                # log_q is what the bound subtracts (for AF: log q(z, v|x) -
                                # log r(v|x, z), with v handled inside)
    q.log_prob(z)               # the density at z, where the family has one (not AF)
    q.transform(u)              # its bijection from base variables u, and log|det| (tests)
    q.local_params()            # q as per-point parameters of family.local (a q* start)
    q.proposal()                # an AIS proposal: sample / log_prob / scale
                                # (common/models/proposals.py)
    family.display              # the name tables and figures show

Its local family (`family.local`, a LocalFamily) is what q* optimises per point: flat dicts
of per-point tensors [B, ...], all of them optimised:

    local = family.local
    params = local.prior_params(n, generator, device)   # the paper's start (the prior, fresh nets)
    z, log_q = local.rsample(params, n, generator)
    local.proposal(params)      # the fitted q* as an AIS proposal
    local.from_gaussian(mu, logvar, generator)   # a factorised Gaussian as a member (None if
                                # the family has none): a start of q*, and a floor of L[q*]

A family's own file defines its classes and adds itself to FAMILIES with one line.
"""
import torch

from .flows import CouplingFlow, flow_forward, init_flow
from .posteriors import LOG_2PI, log_prob_base_and_flow, sample_base_and_flow
from .proposals import DiagonalGaussian, FlowDensity

FAMILIES = {}       # name -> Family class (the registry)
GAUSSIAN = "ffg"    # the factorised Gaussian: every model's floor fit L[q*_FFG] (Table 3, §5.4)
MOMENT_SAMPLES = 200  # samples of a non-Gaussian q whose moments start its Gaussian q*


def check_family(name: str) -> None:
    if name not in FAMILIES:
        raise ValueError(f"unknown family {name!r}; allowed: {', '.join(FAMILIES)}")


def local_name(family: str) -> str:
    """The local family (what q* optimises) of an amortised family."""
    check_family(family)
    return FAMILIES[family].local_class.name


def local_family(name: str, z_dim: int, config):
    """A local family by its name (one of local_name's values), built for z_dim and config."""
    for cls in FAMILIES.values():
        if cls.local_class.name == name:
            return cls.local_class(z_dim, config)
    raise ValueError(f"unknown local family {name!r}; allowed: "
                     f"{', '.join(dict.fromkeys(c.local_class.name for c in FAMILIES.values()))}")


def qstar_fits(family: str) -> list:
    """The q* fits of a model of this family: the Gaussian one, and its own where it differs."""
    own = local_name(family)
    return [GAUSSIAN] + ([own] if own != GAUSSIAN else [])


def gaussian_sample(mu, logvar, n, generator=None, eps=None):
    """z = mu + sigma eps, log N(z; mu, sigma^2), for eps [n, B, D] (drawn if not given)."""
    if eps is None:
        eps = torch.randn((n, *mu.shape), generator=generator, device=mu.device, dtype=mu.dtype)
    z = mu + (0.5 * logvar).exp() * eps
    return z, -0.5 * (eps.pow(2) + logvar + LOG_2PI).sum(-1)


# ---- local families: per-point parameters that q* optimises -----------------------------------

class GaussianLocal:
    """Per point N(mu, diag exp(logvar)): parameters mu [B, D], logvar [B, D]."""
    name = "ffg"
    gaussian_member = True   # from_gaussian gives an exact member (the Gaussian q*: a floor)

    def __init__(self, z_dim: int, config=None):
        self.z_dim = z_dim

    def prior_params(self, n, generator=None, device="cpu") -> dict:
        zeros = torch.zeros(n, self.z_dim, device=device)
        return {"mu": zeros, "logvar": zeros.clone()}

    def rsample(self, params, n, generator=None):
        return gaussian_sample(params["mu"], params["logvar"], n, generator)

    def proposal(self, params):
        return DiagonalGaussian(params["mu"], params["logvar"])

    def from_gaussian(self, mu, logvar, generator=None) -> dict:
        return {"mu": mu, "logvar": logvar}


def flatten_flow(mu, logvar, layers) -> dict:
    flat = {"mu": mu, "logvar": logvar}
    for i, (_, p) in enumerate(layers):
        flat.update({f"{i}.{k}": v for k, v in p.items()})
    return flat


def unflatten_flow(flat: dict):
    n_layers = sum(1 for k in flat if k.endswith(".w_in"))
    layers = [(i % 2 == 0, {k.split(".", 1)[1]: v for k, v in flat.items()
                            if k.startswith(f"{i}.")}) for i in range(n_layers)]
    return flat["mu"], flat["logvar"], layers


class FlowLocal:
    """A Gaussian base through a coupling flow whose every weight is per point
    (common/models/flows.py):
    the q* family of flow and cflow models (the contextual encoder's output is one member)."""
    name = "flow"
    gaussian_member = True

    def __init__(self, z_dim: int, config):
        self.z_dim, self.steps, self.hidden = z_dim, config.flow_steps, config.flow_hidden

    def prior_params(self, n, generator=None, device="cpu") -> dict:
        zeros = torch.zeros(n, self.z_dim, device=device)
        layers = init_flow(self.z_dim, self.hidden, self.steps, batch_shape=(n,),
                           generator=generator, device=device)
        return flatten_flow(zeros, zeros.clone(), layers)

    def rsample(self, params, n, generator=None):
        return sample_base_and_flow(*unflatten_flow(params), n, generator)

    def proposal(self, params):
        return FlowDensity(*unflatten_flow(params))

    def from_gaussian(self, mu, logvar, generator=None) -> dict:
        """Coupling nets with zero output weights are affine maps z -> a z + c with constant
        a, c (a = product of sigmoid(b_gate)), so the base N((mu - c) / a, exp(logvar) / a^2)
        gives exactly N(mu, diag exp(logvar))."""
        n, d = mu.shape
        layers = init_flow(d, self.hidden, self.steps, batch_shape=(n,), generator=generator,
                           device=mu.device)
        for _, p in layers:
            p["w_shift"].zero_()
            p["w_gate"].zero_()
        with torch.no_grad():
            c, _ = flow_forward(torch.zeros(1, n, d, device=mu.device), layers)
            a_plus_c, _ = flow_forward(torch.ones(1, n, d, device=mu.device), layers)
            a = (a_plus_c - c)[0]
        return flatten_flow((mu - c[0]) / a, logvar - 2 * a.log(), layers)


# ---- amortised families ----------------------------------------------------------------------

class BatchPosterior:
    """The amortised q(z|x) of one batch, for a Gaussian base through a flow (or none)."""

    def __init__(self, family, mu, logvar, layers):
        self.family, self.mu, self.logvar, self.layers = family, mu, logvar, layers

    def rsample(self, n: int = 1, generator=None, eps=None):
        return sample_base_and_flow(self.mu, self.logvar, self.layers, n, generator, eps)

    def log_prob(self, z):
        return log_prob_base_and_flow(z, self.mu, self.logvar, self.layers)

    def transform(self, u):
        """The family's bijection from its base variables u [..., B, D] (here z0 ~ N(mu,
        sigma^2)) to z, and its log|det| [..., B] (what the tests check against autograd)."""
        return flow_forward(u, self.layers)

    def local_params(self) -> dict:
        """This q as per-point parameters of its local family (shared tensors expanded)."""
        if not self.layers:
            return {"mu": self.mu.detach(), "logvar": self.logvar.detach()}
        n = self.mu.shape[0]
        per_point = []
        for update_second, params in self.layers:
            expanded = {}
            for name, v in params.items():
                shared = v.dim() == 2 if name.startswith("w_") else v.dim() == 1
                expanded[name] = v.detach().unsqueeze(0).expand(n, *v.shape).clone() if shared \
                    else v.detach().clone()
            per_point.append((update_second, expanded))
        return flatten_flow(self.mu.detach(), self.logvar.detach(), per_point)

    def proposal(self):
        with torch.no_grad():
            return FlowDensity(self.mu, self.logvar, self.layers) if self.layers else \
                DiagonalGaussian(self.mu, self.logvar)


class Family:
    """Base: a factorised Gaussian q(z|x) = N(mu(x), diag sigma^2(x)), no shared parameters.

    A family builds the module of its shared parameters (`build`, registered on the encoder as
    `module_name`, so checkpoints keep their names) and turns the encoder's outputs for a batch
    into its BatchPosterior (`posterior`, given that module)."""
    display = "FFG"
    local_class = GaussianLocal
    module_name = None   # encoder attribute of the family's shared parameters (None: none)
    uses = ()            # the model config's family options it reads (vae.ADDED_FIELDS): a
                         # model of another family never has them in its run identity

    def __init__(self, z_dim: int, config):
        self.z_dim, self.config = z_dim, config
        self.local = self.local_class(z_dim, config)

    @property
    def head_size(self) -> int:
        """Outputs of the encoder head per x beyond mu and log sigma^2."""
        return 0

    @property
    def noise_dim(self) -> int:
        """Standard normal numbers one sample draws (the trainer draws them as `eps`)."""
        return self.z_dim

    def build(self, features: int):
        """The module of the family's shared parameters (None: none); features: the width of
        the encoder trunk's output h(x), which `posterior` also receives."""
        return None

    def posterior(self, module, mu, logvar, extra=None, features=None):
        return BatchPosterior(self, mu, logvar, [])


class FFG(Family):
    pass


class Flow(Family):
    """A Gaussian base through a global coupling flow (the §5.5 figure's exact flow)."""
    display = "Flow"
    local_class = FlowLocal
    module_name = "flow"
    context = False

    @property
    def head_size(self) -> int:
        return self.config.context_dim if self.context else 0

    def build(self, features: int):
        return CouplingFlow(self.z_dim, self.config.flow_hidden, self.config.flow_steps,
                            self.head_size)

    def posterior(self, module, mu, logvar, extra=None, features=None):
        return BatchPosterior(self, mu, logvar, module.layers(extra))


class CFlow(Flow):
    """The contextual flow: the encoder also outputs a context c(x) that enters every coupling
    net (its first-layer bias becomes per point), so z = f_{lambda(x)}(z0)."""
    display = "CFlow"
    context = True


FAMILIES.update({"ffg": FFG, "flow": Flow, "cflow": CFlow})


def moments_start(q: BatchPosterior, n: int = MOMENT_SAMPLES, generator=None) -> tuple:
    """(mu, logvar) of samples of q: a Gaussian start for a q that is not Gaussian."""
    with torch.no_grad():
        z, _ = q.rsample(n, generator)
        return z.mean(0), z.var(0).clamp_min(1e-6).log()

