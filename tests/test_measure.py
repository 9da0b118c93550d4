"""The public API: inference_gaps on models written outside this project, against closed-form
answers, from the shell on a PyTorch-examples VAE, and its one-line errors."""
import math
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import distributions as D
from torch import nn

from conftest import ROOT


class LinearGaussian(nn.Module):
    """p(z) = N(0, I), p(x|z) = N(W z + b, s^2 I); q(z|x) = N(A x + c, diag exp(l)): log p(x),
    the exact posterior and every Gaussian's ELBO are closed-form."""

    def __init__(self, x_dim=6, z_dim=3, s=0.5, seed=0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.W = nn.Parameter(torch.randn(x_dim, z_dim, generator=g))
        self.b = nn.Parameter(0.3 * torch.randn(x_dim, generator=g))
        self.s = s
        # the encoder: the exact posterior mean map, perturbed, and too-wide variances
        precision = torch.eye(z_dim) + self.W.T @ self.W / s ** 2
        cov = torch.linalg.inv(precision)
        self.A = nn.Parameter(cov @ self.W.T / s ** 2 + 0.05 * torch.randn(z_dim, x_dim,
                                                                             generator=g))
        self.c = nn.Parameter(-(self.A @ self.b).detach())
        self.l = nn.Parameter(torch.log(1.5 / torch.diagonal(precision)).detach())

    def encode(self, x):
        return D.Independent(D.Normal(x @ self.A.T + self.c, (0.5 * self.l).exp().expand(
            x.shape[0], -1)), 1)

    def decode(self, z):
        return D.Independent(D.Normal(z @ self.W.T + self.b, self.s), 1)

    def exact(self, x):
        """(log p(x), L[q*_FFG], L[q]) per point, float64."""
        W, b, s = self.W.double(), self.b.double(), self.s
        x = x.double()
        d = W.shape[1]
        marginal = D.MultivariateNormal(b, W @ W.T + s ** 2 * torch.eye(W.shape[0],
                                                                         dtype=torch.float64))
        logpx = marginal.log_prob(x)
        precision = torch.eye(d, dtype=torch.float64) + W.T @ W / s ** 2
        cov = torch.linalg.inv(precision)
        m = (x - b) @ (cov @ W.T / s ** 2).T
        # KL(q || posterior) of a Gaussian q = N(mu, diag v)
        def kl(mu, v):
            diff = m - mu
            return 0.5 * ((precision.diagonal() * v).sum(-1)
                          + ((diff @ precision) * diff).sum(-1) - d
                          + torch.logdet(cov) - v.log().sum(-1))
        best = kl(m, 1 / precision.diagonal().expand_as(m))   # mean field: v_i = 1 / Lambda_ii
        mu_q = x @ self.A.double().T + self.c.double()
        return logpx, logpx - best, logpx - kl(mu_q, self.l.double().exp().expand_as(mu_q))


def test_linear_gaussian_gaps_match_the_closed_form():
    from common import inference_gaps
    torch.manual_seed(0)
    model = LinearGaussian()
    with torch.no_grad():
        z = torch.randn(40, 3)
        x = model.decode(z).sample()
    m = inference_gaps(model.encode, model.decode, x, preset="quick", n_points=40,
                       k_eval=2000, bdmc_points=10, qstar_probe_points=10, verbose=False)
    logpx, best, elbo_q = model.exact(x)
    s = m.summary
    assert m.summary["likelihood"] == "distribution"
    assert s["logpx"] == pytest.approx(logpx.mean().item(), abs=0.05)
    for key, exact in (("approx_gap", (logpx - best).mean().item()),
                       ("amort_gap", (best - elbo_q).mean().item())):
        assert abs(s[key] - exact) <= max(3 * s[f"{key}_sem"], 1e-3) and \
            abs(s[key] - exact) < 0.05, (key, s[key], s[f"{key}_sem"], exact)
    assert m.per_point["approx_gap"].shape == (40,)
    assert s["certified"], s.get("certificate_misses")
    # the caller's model is left as it was: trainable, in its own mode
    assert all(p.requires_grad for p in model.parameters()) and model.training


EXAMPLE_VAE = '''
import torch
import torch.nn.functional as F
from torch import nn


class VAE(nn.Module):   # the VAE of the PyTorch examples repository (vae/main.py), unchanged
    def __init__(self):
        super(VAE, self).__init__()
        self.fc1 = nn.Linear(784, 400)
        self.fc21 = nn.Linear(400, 20)
        self.fc22 = nn.Linear(400, 20)
        self.fc3 = nn.Linear(20, 400)
        self.fc4 = nn.Linear(400, 784)

    def encode(self, x):
        h1 = F.relu(self.fc1(x))
        return self.fc21(h1), self.fc22(h1)

    def reparameterize(self, mu, logvar):
        std = torch.exp(0.5 * logvar)
        eps = torch.randn_like(std)
        return mu + eps * std

    def decode(self, z):
        h3 = F.relu(self.fc3(z))
        return torch.sigmoid(self.fc4(h3))

    def forward(self, x):
        mu, logvar = self.encode(x.view(-1, 784))
        z = self.reparameterize(mu, logvar)
        return self.decode(z), mu, logvar
'''


def test_the_cli_measures_a_pytorch_examples_vae_from_its_state_dict(tmp_path):
    (tmp_path / "example_vae.py").write_text(EXAMPLE_VAE)
    sys.path.insert(0, str(tmp_path))
    try:
        from example_vae import VAE
    finally:
        sys.path.remove(str(tmp_path))
    torch.manual_seed(0)
    x = (torch.rand(64, 784) < 0.2).float()
    model = VAE()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    for _ in range(20):                                  # its own loss, a few steps
        recon, mu, logvar = model(x)
        loss = F.binary_cross_entropy(recon, x, reduction="sum") \
            - 0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())
        opt.zero_grad()
        loss.backward()
        opt.step()
    torch.save(model.state_dict(), tmp_path / "model.pt")
    np.save(tmp_path / "x.npy", x.numpy())
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, "-m", "common.measure", "--model", f"{tmp_path}/example_vae.py:VAE",
         "--checkpoint", str(tmp_path / "model.pt"), "--data", str(tmp_path / "x.npy"),
         "--likelihood", "bernoulli_probs", "--preset", "smoke", "--n-points", "8",
         "--out", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    table = (out / "table.md").read_text()
    assert "approximation" in table.lower() and "model" in table
    import csv
    (row,) = list(csv.DictReader(open(out / "gaps.csv")))
    for key in ("logpx", "L_q", "L_qstar", "approx_gap", "amort_gap", "total_gap"):
        assert math.isfinite(float(row[key])) and math.isfinite(float(row[f"{key}_sem"]))
    assert float(row["L_qstar"]) >= float(row["L_q"]) - 1e-3      # q* is at least q
    assert (out / "table.tex").exists() and (out / "eval" / "per_point.csv").exists()
    assert '"command"' in (out / "provenance.json").read_text()


class Tiny(nn.Module):
    def __init__(self, dropout=0.0):
        super().__init__()
        self.enc = nn.Linear(10, 4)
        self.dec = nn.Sequential(nn.Linear(2, 10), nn.Dropout(dropout))

    def encode(self, x):
        mu, logvar = self.enc(x).chunk(2, -1)
        return mu, logvar

    def decode(self, z):
        return self.dec(z)


BINARY = (torch.rand(6, 10, generator=torch.Generator().manual_seed(0)) < 0.5).float()


@pytest.mark.parametrize("case,match", [
    (lambda m: (lambda x: m.enc(x), m.decode, BINARY, {}), "encoder\\(x\\) returned Tensor"),
    (lambda m: (m.encode, lambda z: torch.sigmoid(m.decode(z)) * 2, BINARY,
                {"likelihood": "bernoulli_probs"}), "probabilities outside \\[0, 1\\]"),
    (lambda m: (m.encode, m.decode, BINARY * 0.5, {}), "values other than 0 and 1"),
    (lambda m: (m.encode, lambda z: m.decode(z)[:, :5], BINARY, {}), "expected \\[3, 10\\]"),
    (lambda m: (m.encode, lambda z: m.decode(z) * float("nan"), BINARY, {}), "non-finite"),
    (lambda m: (m.encode, m.decode, BINARY, {"likelihood": "gaussian"}), "likelihood='gaussian'"),
    (lambda m: (m.encode, m.decode, BINARY, {"likelihood": "distribution"}),
     "returned Tensor; use likelihood=bernoulli"),
    (lambda m: (m.encode, m.decode, BINARY[:1], {}), "at least 2 points"),
    (lambda m: (m.encode, m.decode, BINARY, {"preset": "huge"}), "preset='huge'"),
])
def test_bad_inputs_are_one_line_errors_naming_the_argument(case, match):
    from common import inference_gaps
    from common.measure import MeasureError
    torch.manual_seed(0)
    encoder, decoder, x, kw = case(Tiny().eval())
    with pytest.raises(MeasureError, match=match) as err:
        inference_gaps(encoder, decoder, x, preset=kw.pop("preset", "smoke"), verbose=False,
                       **kw)
    assert "\n" not in str(err.value)


def test_a_decoder_in_training_mode_is_not_a_function_of_z_alone():
    from common import inference_gaps
    from common.measure import MeasureError
    torch.manual_seed(0)
    m = Tiny(dropout=0.5).train()
    with pytest.raises(MeasureError, match="not a function of z alone.*eval"):
        inference_gaps(m.encode, m.decode, BINARY, preset="smoke", verbose=False)


def test_cli_bad_arguments_are_one_line(tmp_path):
    for args, match in ((["--model", "nowhere.py:VAE"], "nowhere.py does not exist"),
                        (["--model", "VAE"], "use path/to/file.py:ClassName"),
                        (["--model", "common.models.vae:VAE", "--checkpoint",
                          str(tmp_path / "no.pt")], "does not exist"),
                        (["--data", "cifar"], "use mnist, fashion or an existing .npy")):
        proc = subprocess.run([sys.executable, "-m", "common.measure", *args, "--out",
                               str(tmp_path / "o")], cwd=ROOT, capture_output=True, text=True,
                              timeout=120)
        assert proc.returncode == 2 and match in proc.stderr, (args, proc.stderr)
        assert len(proc.stderr.strip().splitlines()) == 1


def test_flow_qstar_closes_part_of_the_gap_and_out_dir_is_read_back(tmp_path, capsys):
    """flow_qstar adds L[q*] in the flow family (never far below the Gaussian q*: a flow starts
    as the encoder's Gaussian and can only add to it); out_dir keeps the evaluation, and the
    same call again reads it back."""
    from common import inference_gaps
    torch.manual_seed(0)
    model = LinearGaussian(z_dim=2, seed=1)
    with torch.no_grad():
        x = model.decode(torch.randn(12, 2)).sample()
    first = inference_gaps(model.encode, model.decode, x, preset="smoke", flow_qstar=True,
                           qstar_max_steps=300, out_dir=tmp_path / "m")
    s = first.summary
    assert s["L_qstar_flow"] >= s["L_q"] and s["approx_gap_flow"] == pytest.approx(
        s["logpx"] - s["L_qstar_flow"], abs=1e-4)
    assert first.per_point["L_qstar_flow"].shape == (12,)
    assert (tmp_path / "m" / "per_point.csv").exists()
    assert (tmp_path / "m" / "flow_qstar.json").exists()
    capsys.readouterr()
    again = inference_gaps(model.encode, model.decode, x, preset="smoke", flow_qstar=True,
                           qstar_max_steps=300, out_dir=tmp_path / "m")
    assert "[eval] cached" in capsys.readouterr().out
    assert again.summary["approx_gap"] == s["approx_gap"]
