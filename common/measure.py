"""Inference gaps of any VAE: `inference_gaps(encoder, decoder, x)`, and the same from the shell,
`python -m common.measure --model file.py:Class --checkpoint model.pt --data mnist`.

    log p(x) - L[q] = (log p(x) - L[q*]) + (L[q*] - L[q])
                      approximation gap    amortization gap

The estimators, presets and certificates are the studies' own (common/experiment.evaluate_one):
log p^ is AIS from the fitted q*, its error bounded by BDMC on data simulated from the decoder;
q* is the best factorised Gaussian per point (local optimisation, the preset's rule), its
convergence probed and its cap share counted.

Contract (the errors name the argument that breaks it, in one line):
  encoder(x) -> a diagonal Gaussian q(z|x): torch.distributions.Normal, Independent(Normal) or a
               tuple (mu, logvar), each [B, D];
  decoder(z) -> p(x|z) for z [N, D]: a torch.distributions.Distribution over x (log_prob(x) is
               summed over every dimension after the batch one here: wrapping it in Independent
               or not gives the same number), or a tensor of Bernoulli logits, or of Bernoulli
               probabilities, shaped like x; `likelihood` says which ("distribution",
               "bernoulli_logits", "bernoulli_probs"; default: "distribution" for a
               Distribution, else logits). It must be a function of z alone (no dropout or
               batch norm in training mode: call .eval());
  p(z) = N(0, I) of the encoder's z size. A Bernoulli likelihood needs binary x.
"""
import argparse
import contextlib
import dataclasses
import importlib
import importlib.util
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path

import torch
from torch import distributions as D
from torch import nn

from .config import UserError, guarded, resolve_device, write_json
from .inference.estimators import proposal_bounds
from .models.families import FAMILIES, GAUSSIAN
from .models.vae import ModelConfig, bernoulli_log_likelihood, chunk_size

LIKELIHOODS = ("distribution", "bernoulli_logits", "bernoulli_probs")
GAP_KEYS = ("logpx", "L_q", "L_qstar", "approx_gap", "amort_gap", "total_gap")
PROB_EPS = 1e-6   # Bernoulli probabilities are clipped to [eps, 1 - eps] before the log


class MeasureError(UserError, ValueError):
    """An encoder, decoder or data that breaks the contract: one line naming the argument."""


def _owner(fn):
    """The nn.Module whose parameters fn uses (fn itself, or the module of a bound method)."""
    if isinstance(fn, nn.Module):
        return fn
    owner = getattr(fn, "__self__", None)
    return owner if isinstance(owner, nn.Module) else None


def gaussian_of(out, n: int):
    """(mu, logvar) [n, D] from what an encoder returned."""
    if isinstance(out, D.Independent):
        out = out.base_dist
    if isinstance(out, D.Normal):
        mu, logvar = out.loc, 2 * out.scale.log()
    elif isinstance(out, (tuple, list)) and len(out) == 2 and all(torch.is_tensor(t) for t in out):
        mu, logvar = out
    else:
        raise MeasureError(f"encoder(x) returned {type(out).__name__}; return a "
                           f"torch.distributions.Normal, Independent(Normal) or a tuple "
                           f"(mu, logvar)")
    if mu.dim() != 2 or mu.shape[0] != n or logvar.shape != mu.shape:
        raise MeasureError(f"encoder(x) gave mu {tuple(mu.shape)} and log-variance "
                           f"{tuple(logvar.shape)} for {n} points; both must be [{n}, z_dim]")
    return mu, logvar


class ForeignEncoder(nn.Module):
    """A user's encoder as the studies' Gaussian encoder (`posterior(x)`, the ffg family)."""

    def __init__(self, fn, z_dim: int, config: ModelConfig):
        super().__init__()
        self.fn, self.z_dim = fn, z_dim
        self.owner = _owner(fn)          # registered: its parameters identify the model
        self.family = FAMILIES[GAUSSIAN](z_dim, config)

    def posterior(self, x):
        mu, logvar = gaussian_of(self.fn(x), x.shape[0])
        if not (torch.isfinite(mu).all() and torch.isfinite(logvar).all()):
            raise MeasureError("encoder(x) returned a non-finite mean or variance; check the "
                               "encoder's weights and the data's scale")
        return self.family.posterior(None, mu.float(), logvar.float())

    def sample_and_log_prob(self, x, k: int = 1, generator=None, eps=None):
        return self.posterior(x).rsample(k, generator, eps)


class ForeignDecoder(nn.Module):
    def __init__(self, fn):
        super().__init__()
        self.fn = fn
        self.owner = _owner(fn)

    def forward(self, z):
        return self.fn(z)


class ForeignVAE(nn.Module):
    """A user's (encoder, decoder) with the interface the studies' estimators use (common/vae.VAE:
    encoder.posterior, log_likelihood, bounds, sample_x, z_dim, config)."""

    def __init__(self, encoder, decoder, z_dim: int, likelihood: str, device):
        super().__init__()
        self.config = ModelConfig(family=GAUSSIAN, z_dim=z_dim)
        self.encoder = ForeignEncoder(encoder, z_dim, self.config)
        self.decoder = ForeignDecoder(decoder)
        self.likelihood, self.device = likelihood, device

    @property
    def z_dim(self) -> int:
        return self.config.z_dim

    def log_likelihood(self, x, z):
        """log p(x|z) for z [..., B, D] and x [B, ...] -> [..., B]."""
        lead, b = z.shape[:-2], z.shape[-2]
        flat = z.reshape(-1, z.shape[-1])
        out = self.decoder(flat)
        if self.likelihood == "distribution":
            xs = x.expand(*lead, *x.shape).reshape(flat.shape[0], *x.shape[1:])
            return out.log_prob(xs).reshape(flat.shape[0], -1).sum(-1).reshape(*lead, b)
        out = out.reshape(*lead, b, -1)
        xf = x.reshape(b, -1)
        if self.likelihood == "bernoulli_logits":
            return bernoulli_log_likelihood(out, xf)
        p = out.clamp(PROB_EPS, 1 - PROB_EPS)
        return (xf * p.log() + (1 - xf) * torch.log1p(-p)).sum(-1)

    def sample_x(self, z, generator: torch.Generator) -> torch.Tensor:
        """x ~ p(x|z) (BDMC's simulated data), reproducibly from `generator`."""
        with torch.no_grad():
            out = self.decoder(z)
            if self.likelihood == "distribution":
                seed = int(torch.randint(0, 2 ** 62, (1,), generator=generator))
                devices = [z.device] if z.device.type == "cuda" else []
                with torch.random.fork_rng(devices=devices):
                    torch.manual_seed(seed)
                    return out.sample()
            probs = torch.sigmoid(out) if self.likelihood == "bernoulli_logits" else out
            return torch.bernoulli(probs.float().cpu(), generator=generator).to(z.device)

    def bounds(self, x, k: int, chunk: int = 0, generator=None):
        from .models.vae import BatchLikelihood
        chunk = chunk or chunk_size(x.shape[0], x[0].numel())
        return proposal_bounds(BatchLikelihood(self, x),
                               lambda n: self.encoder.sample_and_log_prob(x, n, generator), k,
                               chunk)


def _detect_likelihood(out, likelihood):
    if likelihood is None:
        return "distribution" if isinstance(out, D.Distribution) else "bernoulli_logits"
    if likelihood not in LIKELIHOODS:
        raise MeasureError(f"likelihood={likelihood!r} is not allowed; use one of: "
                           f"{', '.join(LIKELIHOODS)}")
    if (likelihood == "distribution") != isinstance(out, D.Distribution):
        fits = "distribution" if isinstance(out, D.Distribution) else \
            "bernoulli_logits or bernoulli_probs"
        raise MeasureError(f"likelihood={likelihood!r} but decoder(z) returned "
                           f"{type(out).__name__}; use likelihood={fits}")
    return likelihood


def check_contract(model: ForeignVAE, x: torch.Tensor, raw_out) -> None:
    """The decoder's outputs against the data, on two points: shapes, finiteness, probabilities
    in [0, 1], binary data for a Bernoulli, and log p(x|z) a function of z alone."""
    lik = model.likelihood
    if lik != "distribution":
        if not torch.is_tensor(raw_out) or raw_out.shape[0] != 3 or \
                raw_out[0].numel() != x[0].numel():
            raise MeasureError(f"decoder(z) returned shape {tuple(getattr(raw_out, 'shape', ()))} "
                               f"for 3 latent points; expected [3, {x[0].numel()}] (one value per "
                               f"dimension of x, {tuple(x.shape[1:])})")
        if not torch.isfinite(raw_out).all():
            raise MeasureError("decoder(z) returned non-finite values; check the decoder's "
                               "weights")
        if lik == "bernoulli_probs" and ((raw_out < 0) | (raw_out > 1)).any():
            raise MeasureError("decoder(z) returned probabilities outside [0, 1]; if it returns "
                               "logits, use likelihood='bernoulli_logits'")
        if not ((x == 0) | (x == 1)).all():
            raise MeasureError("x holds values other than 0 and 1: a Bernoulli likelihood needs "
                               "binary data (binarise it, e.g. torch.bernoulli(x), or give the "
                               "decoder a Distribution)")
    g = torch.Generator().manual_seed(0)
    z = torch.randn(3, 2, model.z_dim, generator=g).to(x.device)
    with torch.no_grad():
        try:
            batch = model.log_likelihood(x[:2], z)
        except (RuntimeError, ValueError) as err:
            raise MeasureError(f"decoder(z) could not score x: {str(err).splitlines()[0]}; its "
                               f"output must be a distribution over x's shape "
                               f"{tuple(x.shape[1:])}") from None
        again = model.log_likelihood(x[:2], z[:1])
    if batch.shape != (3, 2) or not torch.isfinite(batch).all():
        raise MeasureError(f"decoder(z): log p(x|z) came out {tuple(batch.shape)} with "
                           f"{'non-finite values' if batch.shape == (3, 2) else 'the wrong shape'}"
                           f"; expected one finite number per (z, x) pair")
    if not torch.allclose(batch[:1], again, rtol=1e-4, atol=1e-3):
        raise MeasureError("decoder is not a function of z alone: the same z gave another "
                           "log p(x|z) in another batch or call (dropout or batch norm in "
                           "training mode? call .eval() on the model)")


@dataclasses.dataclass
class Measurement:
    summary: dict       # gaps table keys (logpx, L_q, L_qstar, approx_gap, amort_gap,
                        # total_gap, each with _sem) and the certificates
    per_point: dict     # per-point tensors under the same keys (and the rest of per_point.csv)
    out_dir: Path = None

    def __repr__(self):
        s = self.summary
        return ("Measurement(" + ", ".join(f"{k}={s[k]:.2f}±{s[k + '_sem']:.2f}" for k in GAP_KEYS
                                           if k in s) + f", certified={s.get('certified')})")


def inference_gaps(encoder, decoder, x, *, likelihood: str = None, preset: str = "quick",
                   seed: int = 0, device=None, n_points: int = None, flow_qstar: bool = False,
                   out_dir=None, verbose: bool = True, **overrides) -> Measurement:
    """Approximation, amortization and inference gaps of a VAE on the points x (the module
    docstring's contract), with the studies' estimators and certificates.

    preset: smoke | quick | paper (the studies' sizes: common/runs/presets.py); overrides: any
    EvalConfig field (k_eval=..., ais_steps=...). n_points: the first n of x (default: the
    preset's n_points, or all of x if fewer). flow_qstar: also fit q* in the flow family
    (started from the encoder's q), adding L_qstar_flow and approx_gap_flow: how much of the
    approximation gap a flow would close. out_dir: keep per_point.csv and summary.json there (a
    second call with the same model and settings reads them back); default a temporary folder.
    """
    from .runs.experiment import evaluate_one
    from .runs.presets import presets, RunConfig
    from .inference.gaps import read_per_point
    table = presets(RunConfig)
    if preset not in table:
        raise MeasureError(f"preset={preset!r} is not allowed; use one of: {', '.join(table)}")
    device = resolve_device(device or "auto") if not isinstance(device, torch.device) else device
    if not torch.is_tensor(x) or x.dim() < 2:
        raise MeasureError(f"x must be a tensor [points, ...], got "
                           f"{type(x).__name__}{tuple(getattr(x, 'shape', ()))}")
    if not torch.isfinite(x).all():
        raise MeasureError("x holds non-finite values")
    cfg = dataclasses.replace(table[preset], **overrides)
    n = min(n_points or cfg.n_points, x.shape[0])
    if n < 2:
        raise MeasureError(f"n_points={n}: give at least 2 points (a standard error needs two)")
    cfg = dataclasses.replace(cfg, n_points=n, bdmc_points=min(cfg.bdmc_points, max(n, 2)))
    cfg.validate()
    x = x[:n].to(device=device, dtype=torch.float32)
    with torch.no_grad():
        mu, _ = gaussian_of(encoder(x[:2]), 2)
        z_dim = mu.shape[1]
        raw = decoder(torch.zeros(3, z_dim, device=device))
    model = ForeignVAE(encoder, decoder, z_dim, _detect_likelihood(raw, likelihood), device)
    check_contract(model, x, raw)
    if model.likelihood == "bernoulli_logits" and likelihood is None and torch.is_tensor(raw) \
            and ((raw >= 0) & (raw <= 1)).all():
        print("[measure] note: decoder(z) returned values in [0, 1], read as Bernoulli logits; "
              "if they are probabilities, pass likelihood='bernoulli_probs'", file=sys.stderr)
    identified = any(True for _ in model.parameters())
    keep = out_dir is not None
    # the estimators freeze the decoder (requires_grad off) and switch modules to eval mode:
    # the caller's model gets both back as they were
    grads = [(q, q.requires_grad) for q in model.parameters()]
    modes = [(mod, mod.training) for mod in model.modules()]
    with contextlib.ExitStack() as restore, \
            (contextlib.nullcontext(out_dir) if keep else tempfile.TemporaryDirectory()) as folder:
        restore.callback(lambda: [q.requires_grad_(g) for q, g in grads] and None)
        restore.callback(lambda: [mod.train(t) for mod, t in modes] and None)
        folder = Path(folder)
        extra = {"measure": model.likelihood, "flow_qstar": flow_qstar,
                 **({} if identified and keep else {"call": uuid.uuid4().hex})}
        t0 = time.time()
        with _quiet(not verbose):
            summary = evaluate_one(model, x, cfg, seed, folder, extra)
        summary = {**summary, "likelihood": model.likelihood}
        per_point = {k: torch.tensor(v, dtype=torch.float64)
                     for k, v in read_per_point(folder / "per_point.csv").items()}
        if flow_qstar:
            summary, per_point = _add_flow_qstar(model, x, cfg, seed, summary, per_point, verbose)
            write_json(folder / "flow_qstar.json", {k: summary[k] for k in summary
                                                    if k.endswith("_flow") or "flow_" in k})
        if verbose:
            print(f"[measure] {n} points in {time.time() - t0:.0f}s: " +
                  ", ".join(f"{k} {summary[k]:.2f}" for k in GAP_KEYS), file=sys.stderr)
        return Measurement(summary, per_point, folder if keep else None)


@contextlib.contextmanager
def _quiet(on: bool):
    """stdout silenced while `on` (the evaluation's progress lines)."""
    if not on:
        yield
        return
    with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink):
        yield


def _add_flow_qstar(model, x, cfg, seed, summary, per_point, verbose):
    from .inference.gaps import qstar_rule, summarise
    from .inference.local_opt import optimize_local
    from .models.vae import BatchLikelihood
    local = FAMILIES["flow"](model.z_dim, model.config).local
    with torch.no_grad():
        q = model.encoder.posterior(x)
    init = local.from_gaussian(q.mu, q.logvar, torch.Generator().manual_seed(seed))
    for p in model.decoder.parameters():
        p.requires_grad_(False)
    fit = optimize_local(BatchLikelihood(model, x), local, x.shape[0], init=init, seed=seed,
                         verbose=verbose, device=x.device, **qstar_rule(cfg))
    flow = fit.elbo.double().cpu()
    logpx = per_point["logpx"]
    per_point = {**per_point, "L_qstar_flow": flow, "approx_gap_flow": logpx - flow,
                 "flow_closes": flow - per_point["L_qstar"]}
    names = ("L_qstar_flow", "approx_gap_flow", "flow_closes")
    means = summarise(per_point, names)          # mean and s.e. as every gap's
    add = {k: means[k] for n in names for k in (n, f"{n}_sem")}
    add["qstar_capped_flow"] = fit.capped.float().mean().item()
    return {**summary, **add}, per_point


# ---- the command line ---------------------------------------------------------------------

def load_object(spec: str):
    """'path/to/file.py:Name' or 'package.module:Name' -> the object."""
    where, sep, name = spec.rpartition(":")
    if not sep or not where or not name:
        raise MeasureError(f"--model {spec!r}: use path/to/file.py:ClassName or module:factory")
    if where.endswith(".py"):
        path = Path(where)
        if not path.is_file():
            raise MeasureError(f"--model: {path} does not exist")
        spec_ = importlib.util.spec_from_file_location(path.stem, path)
        module = importlib.util.module_from_spec(spec_)
        sys.modules.setdefault(path.stem, module)
        spec_.loader.exec_module(module)
    else:
        try:
            module = importlib.import_module(where)
        except ImportError as err:
            raise MeasureError(f"--model: cannot import {where} ({err})") from None
    if not hasattr(module, name):
        raise MeasureError(f"--model: {where} has no {name}")
    return getattr(module, name)


def load_model(model_spec: str, checkpoint: str, device):
    """The user's model: built by --model and filled from --checkpoint (a state_dict), or a
    whole pickled module in --checkpoint."""
    state = None
    if checkpoint:
        path = Path(checkpoint)
        if not path.is_file():
            raise MeasureError(f"--checkpoint: {path} does not exist")
        try:
            state = torch.load(path, map_location=device, weights_only=False)
        except Exception as err:  # noqa: BLE001 - any unpickling error: not a checkpoint
            raise MeasureError(f"--checkpoint: {path} is not a torch file "
                               f"({type(err).__name__})") from None
    if isinstance(state, nn.Module):
        return state.to(device).eval()
    if not model_spec:
        raise MeasureError("--model is needed (path/to/file.py:ClassName or module:factory) "
                           "unless --checkpoint holds a whole pickled nn.Module")
    model = load_object(model_spec)()
    if not isinstance(model, nn.Module):
        raise MeasureError(f"--model {model_spec} built a {type(model).__name__}, not an "
                           f"nn.Module")
    if state is not None:
        if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"],
                                                                              dict):
            state = state["state_dict"]
        if not isinstance(state, dict):
            raise MeasureError(f"--checkpoint holds a {type(state).__name__}; give a state_dict "
                               f"or a pickled nn.Module")
        try:
            model.load_state_dict(state)
        except RuntimeError as err:
            raise MeasureError(f"--checkpoint does not fit --model: "
                               f"{str(err).splitlines()[0]}") from None
    return model.to(device).eval()


def check_data_spec(spec: str) -> None:
    """--data names mnist, fashion or an existing .npy file (checked before anything loads:
    mnist and fashion may be fetched)."""
    if spec not in ("mnist", "fashion") and not (spec.endswith(".npy") and Path(spec).is_file()):
        raise MeasureError(f"--data {spec!r}: use mnist, fashion or an existing .npy file")


def load_data(spec: str, device) -> torch.Tensor:
    check_data_spec(spec)
    if spec in ("mnist", "fashion"):
        from .data import load_dataset
        return load_dataset(spec, "test", device)
    import numpy as np
    return torch.from_numpy(np.load(spec)).float().to(device)


def write_outputs(out: Path, m: Measurement, label: str, args, device) -> None:
    """The gaps table (markdown and LaTeX, certificates under it), gaps.csv and provenance.json
    (command, commit, preset, seed) in `out`."""
    from .config import provenance
    from .results.tables import gap_table, write_csv
    out.mkdir(parents=True, exist_ok=True)
    gap_table(out / "table", {label: m.summary},
              caption=f"Inference gaps of {label} (python -m common.measure, preset {args.preset})")
    write_csv(out / "gaps.csv", [{"model": label, **m.summary}], ["model", *m.summary])
    write_json(out / "provenance.json", {**provenance(args.preset, args.seed, device),
                                         "model": args.model, "checkpoint": args.checkpoint,
                                         "data": args.data, "likelihood": m.summary.get(
                                             "likelihood", args.likelihood)})


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="", help="path/to/file.py:ClassName or module:factory")
    p.add_argument("--checkpoint", default="", help="a state_dict or a pickled module (.pt)")
    p.add_argument("--encoder", default="encode", help="the model's method giving q(z|x)")
    p.add_argument("--decoder", default="decode", help="the model's method giving p(x|z)")
    p.add_argument("--data", default="mnist", help="mnist | fashion | points.npy")
    p.add_argument("--likelihood", default=None, choices=LIKELIHOODS)
    p.add_argument("--n-points", type=int, default=0, help="default: the preset's")
    p.add_argument("--preset", default="quick")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto")
    p.add_argument("--flow-qstar", action="store_true")
    p.add_argument("--out", default="measure_out")
    args = p.parse_args(argv)
    if args.n_points < 0:
        raise MeasureError(f"--n-points={args.n_points}: use a whole number >= 2 (0: the "
                           f"preset's)")
    device = resolve_device(args.device)
    check_data_spec(args.data)   # before anything loads (mnist and fashion may be fetched)
    model = load_model(args.model, args.checkpoint, device)
    for role in ("encoder", "decoder"):
        if not callable(getattr(model, getattr(args, role), None)):
            raise MeasureError(f"--{role} {getattr(args, role)}: the model has no such method; "
                               f"name the one that returns "
                               f"{'q(z|x)' if role == 'encoder' else 'p(x|z)'}")
    x = load_data(args.data, device)
    out = Path(args.out)
    m = inference_gaps(getattr(model, args.encoder), getattr(model, args.decoder), x,
                       likelihood=args.likelihood, preset=args.preset, seed=args.seed,
                       device=device, n_points=args.n_points or None,
                       flow_qstar=args.flow_qstar, out_dir=out / "eval")
    label = Path(args.checkpoint).stem if args.checkpoint else args.model.rpartition(":")[2]
    write_outputs(out, m, label, args, device)
    print(f"[measure] {m}")
    print(f"[measure] wrote {out / 'table.md'}, table.tex, gaps.csv and eval/per_point.csv")


if __name__ == "__main__":
    guarded(lambda: main())
    sys.exit(0)
