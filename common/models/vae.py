"""The VAE: an encoder carrying a posterior family (common/models/families.py) and a Bernoulli MLP
decoder.

    p(z) = N(0, I),  p(x|z) = prod_i Bernoulli(x_i; sigmoid(logits_i(z)))
    elbo(x, k) = mean_k [log p(x, z_k) - log q(z_k|x)]              (k single-sample bounds)
    iwae(x, k) = log (1/k) sum_k exp(log p(x, z_k) - log q(z_k|x))
Both stream over chunks of k so that k = 5000 on a batch fits in bounded memory.

The encoder is one trunk (the same sizes and activation for every family) whose head gives, per
x, mu(x), log sigma^2(x) and the family's own outputs (head_size: cflow's context c(x)); the
family turns them into the batch's q(z|x) (`encoder.posterior(x)`).
"""
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..inference.estimators import proposal_bounds
from .families import FAMILIES, GAUSSIAN, check_family
from .posteriors import log_standard_normal, mlp

X_DIM = 784
ARCHITECTURES = {  # name: (encoder hidden sizes, decoder hidden sizes)
    "standard": ((200, 200), (200, 200)),
    "large_encoder": ((500, 500, 500), (200, 200)),
    "large_decoder": ((200, 200), (500, 500, 500)),
    "small_encoder": ((100,), (200, 200)),
    "linear_encoder": ((), (200, 200)),
    "exp51": ((100,), (100,)),              # Figure 2's 2-D model: 784-100-4, 2-100-784
}


@dataclass(frozen=True)
class ModelConfig:
    family: str = GAUSSIAN         # a name of common/families.FAMILIES
    z_dim: int = 50                # latent size (paper: 50 on MNIST, 20 for Fashion dynamics)
    enc_hidden: tuple = (200, 200)  # encoder trunk, shared by every family
    dec_hidden: tuple = (200, 200)  # decoder MLP
    activation: str = "elu"        # same everywhere, so families differ only by the family
    flow_steps: int = 2            # coupling steps (each = two half-couplings)
    flow_hidden: int = 50          # hidden units of each coupling net (paper: 50)
    context_dim: int = 20          # cflow only: size of c(x) fed to every coupling net
    family_hidden: tuple = ()      # hidden layers of a family's own nets where it has some
                                   # (() = the family's default)


# fields added after run identities were first recorded: left out of an identity while at their
# default, so runs trained before them keep their identity (common/train.run_identity)
ADDED_FIELDS = {"family_hidden": ()}


class Encoder(nn.Module):
    """x -> trunk -> head -> (mu, log sigma^2, the family's outputs) -> the family's q(z|x)."""

    def __init__(self, x_dim: int, config: "ModelConfig"):
        super().__init__()
        check_family(config.family)
        c = config
        self.z_dim = c.z_dim
        self.family = FAMILIES[c.family](c.z_dim, c)
        self.trunk = mlp((x_dim, *c.enc_hidden), c.activation, final_activation=True) \
            if c.enc_hidden else nn.Identity()
        self.features = c.enc_hidden[-1] if c.enc_hidden else x_dim
        self.head = nn.Linear(self.features, 2 * c.z_dim + self.family.head_size)
        module = self.family.build(self.features)
        if module is not None:   # registered under the family's name for it (checkpoint keys)
            self.add_module(self.family.module_name, module)

    def posterior(self, x):
        """q(z|x) of the batch x (common/families.BatchPosterior contract)."""
        h = self.trunk(x)
        out = self.head(h)
        d = self.z_dim
        module = getattr(self, self.family.module_name) if self.family.module_name else None
        return self.family.posterior(module, out[:, :d], out[:, d:2 * d],
                                     out[:, 2 * d:] if self.family.head_size else None, h)

    def sample_and_log_prob(self, x, k: int = 1, generator=None, eps=None):
        return self.posterior(x).rsample(k, generator, eps)


def model_config(architecture: str = "standard", **overrides) -> ModelConfig:
    enc, dec = ARCHITECTURES[architecture]
    return ModelConfig(**{"enc_hidden": enc, "dec_hidden": dec, **overrides})


class Decoder(nn.Module):
    def __init__(self, z_dim: int, hidden=(200, 200), activation: str = "elu", x_dim: int = X_DIM):
        super().__init__()
        self.net = mlp((z_dim, *hidden, x_dim), activation)

    def forward(self, z):
        return self.net(z)


def bernoulli_log_likelihood(logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """sum_i x_i log sigmoid(l_i) + (1 - x_i) log sigmoid(-l_i) = sum_i x_i l_i - softplus(l_i)."""
    return (x * logits - F.softplus(logits)).sum(-1)


class VAE(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        c = config
        self.encoder = Encoder(X_DIM, c)
        self.decoder = Decoder(c.z_dim, c.dec_hidden, c.activation)

    @property
    def z_dim(self) -> int:
        return self.config.z_dim

    def log_likelihood(self, x, z):
        """log p(x|z) for z [..., B, D] and x [B, 784] -> [..., B]."""
        return bernoulli_log_likelihood(self.decoder(z), x)

    def sample_x(self, z, generator: torch.Generator) -> torch.Tensor:
        """x ~ p(x|z) for z [n, D], drawn on the CPU from `generator` (simulated data of BDMC)."""
        with torch.no_grad():
            probs = torch.sigmoid(self.decoder(z)).cpu()
        return torch.bernoulli(probs, generator=generator).to(z.device)

    def log_joint(self, x, z):
        return self.log_likelihood(x, z) + log_standard_normal(z)

    def forward(self, x, eps):
        """The terms of the training objective at z = the posterior's reparameterised sample
        from the noise eps [k, B, D]: (log p(x|z), log p(z), log q(z|x)), each [k, B]."""
        z, log_q = self.encoder.sample_and_log_prob(x, eps.shape[0], eps=eps)
        return self.log_likelihood(x, z), log_standard_normal(z), log_q

    def bounds(self, x, k: int, chunk: int = 0, generator=None):
        """(mean ELBO over k samples, IWAE over the same samples) per point, [B] float64."""
        chunk = chunk or chunk_size(x.shape[0], X_DIM)
        return proposal_bounds(BatchLikelihood(self, x),
                               lambda n: self.encoder.sample_and_log_prob(x, n, generator), k,
                               chunk)

    def elbo(self, x, k: int = 1, chunk: int = 0, generator=None):
        """Mean of k single-sample ELBOs per point, [B] (no gradient)."""
        return self.bounds(x, k, chunk, generator)[0].float()

    def iwae(self, x, k: int = 1, chunk: int = 0):
        """IWAE bound per point, [B] (no gradient), log-mean-exp streamed over chunks."""
        return self.bounds(x, k, chunk)[1].float()

    def parameter_counts(self) -> dict:
        count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
        return {"encoder": count(self.encoder), "decoder": count(self.decoder)}


class BatchLikelihood:
    """log p(x_b|z) for a fixed batch x [B, 784] of a VAE: the callable the estimators take."""

    def __init__(self, model: "VAE", x: torch.Tensor):
        self.model, self.x, self.device = model, x, x.device

    def __call__(self, z):
        return self.model.log_likelihood(self.x, z)

    def subset(self, idx) -> "BatchLikelihood":
        return BatchLikelihood(self.model, self.x[idx])


def chunk_size(n_points: int, width: int, max_elements: int = 2 ** 24) -> int:
    """Samples per chunk so that one [chunk, n_points, width] activation stays under max_elements."""
    return max(1, max_elements // max(1, n_points * width))
