"""`make bench`: speed measured as ratios side by side in one run (never timing assertions in tests).

1. Trainer overhead: one epoch of the standard ffg VAE on MNIST through common/runs/train.py vs a
bare
   PyTorch loop over the same model, data and batch size (target <= 1.10x); flow and cflow epochs.
2. Batched q* vs the reference per-point loop (same algorithm and stopping rule): the loop is
   timed on a subset and scaled per point; mean L[q*] of both on that subset.
3. AIS: achieved FLOP/s of the decoder forward/backward inside AIS as a fraction of a plain
   matmul's FLOP/s of the same shapes on this machine.
4. IWAE k = 5000 throughput, points per second.
5. Stacked training (common/runs/stacked.py): a model's share of a training step (the real trainer,
   one epoch) alone vs stacked two and four at a time, per family of exp52.
6. Cost model (common/speed/costmodel.py): per-unit costs (a training step per architecture, an AIS
   leapfrog row, a q* step row, a decoder forward row), measured at the paper's width on a GPU
   (100 chains x 1000 points, 50 samples x 1000 points) and at a small width on a CPU, multiplied
   out to the predicted wall time of every study and of `make all PRESET=paper`
   (`paper_preset_predicted_h`: as `--stack auto` trains, i.e. stacked on a GPU; both variants
   are given). On a GPU the mean steps of a q* fit under the paper's rule
   are measured too; elsewhere they are an assumption, printed as such.
Writes RESULTS_DIR/bench/bench.json and prints a table.
"""
import argparse
import sys
import tempfile
import time

import torch
from tabulate import tabulate

from ..config import (ConfigError, atomic_write_text, fail, guarded, portable, provenance,
                      resolve_device, results_dir, write_json)
from ..data import load_dataset
from ..inference.estimators import ais
from ..runs.experiment import trained_epochs
from ..inference.gaps import EvalConfig, local_bounds
from .costmodel import predict
from .machine import bare_step
from ..models.families import FAMILIES, GAUSSIAN, local_family, local_name
from ..inference.local_opt import optimize_local, optimize_local_loop
from ..studies import studies, study
from ..runs.train import TrainConfig, load_model, train
from ..models.vae import VAE, BatchLikelihood, model_config


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def bare_epoch(model, x, batch_size, seed):
    """The reference: the simplest correct PyTorch loop for one epoch of the same objective."""
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, eps=1e-4)
    order = torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(seed))
    for start in range(0, x.shape[0], batch_size):
        bare_step(model, opt, x[order[start:start + batch_size].to(x.device)])


def _timed(fn, device) -> float:
    sync(device)
    t0 = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - t0


def trainer_epoch(family, x_train, x_valid, cfg, seed, device):
    torch.manual_seed(seed)
    model = VAE(model_config(family=family)).to(device)
    with tempfile.TemporaryDirectory() as tmp:
        train(model, x_train, x_valid, cfg, tmp, seed=seed, resume=False,
              log_prefix=f"[bench {family}] ")


def bench_trainer(x_train, x_valid, device, repeats: int):
    """Bare loop and trainer alternate, `repeats` times each; the fastest of each is kept, so
    neither side pays for a cold start or a busy moment alone."""
    cfg = TrainConfig(epochs=1, warmup_epochs=0, n_valid_monitor=0)
    bare_epoch(VAE(model_config(family=GAUSSIAN)).to(device), x_train, cfg.batch_size, 0)  # warm-up
    t_bare, t_trainer = [], []
    for r in range(repeats):
        t_bare.append(_timed(lambda: bare_epoch(VAE(model_config(family=GAUSSIAN)).to(device),
                                                x_train, cfg.batch_size, r), device))
        t_trainer.append(_timed(lambda: trainer_epoch(GAUSSIAN, x_train, x_valid, cfg, r, device),
                                device))
    out = {"epoch_s_bare_ffg": min(t_bare), "epoch_s_ffg": min(t_trainer)}
    for family in (f for f in FAMILIES if f != GAUSSIAN):
        out[f"epoch_s_{family}"] = _timed(
            lambda: trainer_epoch(family, x_train, x_valid, cfg, 0, device), device)
    out["trainer_over_bare_ffg"] = out["epoch_s_ffg"] / out["epoch_s_bare_ffg"]
    return out


def trained_mnist_model(preset, seed, device):
    from exp52_testgap.base import base_run_dir   # exp52's base model: what bench measures
    path = base_run_dir(preset, seed, "mnist") / "last.pt"
    if trained_epochs(path.parent):
        return load_model(path, device), portable(path)
    print("[bench] no trained MNIST ffg model found; training one for 2 epochs", flush=True)
    model = VAE(model_config(family=GAUSSIAN)).to(device)
    with tempfile.TemporaryDirectory() as tmp:
        train(model, load_dataset("mnist", "train", device), load_dataset("mnist", "valid", device),
              TrainConfig(epochs=2, n_valid_monitor=0), tmp, seed)
    return model, "fresh 2-epoch model"


def bench_qstar(model, x, loop_points, cfg: EvalConfig, seed):
    """The batched q* fit against the same algorithm (qstar_rule) run one point at a time from
    the same starts; the points differ only in their noise."""
    from ..inference.gaps import qstar_rule, qstar_start
    init = qstar_start(model, x, GAUSSIAN, cfg, seed)   # both fits' starts, chosen once
    t0 = time.perf_counter()
    batched = local_bounds(model, x, GAUSSIAN, cfg, seed, init=init)
    t_batched = time.perf_counter() - t0
    sub = x[:loop_points]
    init = {k: v[:loop_points] for k, v in init.items()} if init is not None else None
    t0 = time.perf_counter()
    looped = optimize_local_loop(BatchLikelihood(model, sub),
                                 local_family(GAUSSIAN, model.z_dim, model.config), len(sub),
                                 init=init, seed=seed, **qstar_rule(cfg))
    t_loop = time.perf_counter() - t0
    per_point_loop = t_loop / loop_points
    return {"qstar_points": len(x), "qstar_batched_s": t_batched,
            "qstar_loop_points_timed": loop_points, "qstar_loop_s_per_point": per_point_loop,
            "qstar_loop_s_scaled": per_point_loop * len(x),
            "qstar_speedup": per_point_loop * len(x) / t_batched,
            "qstar_mean_steps_batched": batched.steps.float().mean().item(),
            "qstar_mean_steps_loop": looped.steps.float().mean().item(),
            "L_qstar_batched_subset": batched.elbo[:loop_points].mean().item(),
            "L_qstar_loop_subset": looped.elbo.mean().item(),
            "L_qstar_abs_diff": abs(batched.elbo[:loop_points].mean().item()
                                    - looped.elbo.mean().item()),
            # the same points fitted twice with different noise: is the difference noise?
            "L_qstar_diff_sem": (batched.elbo[:loop_points] - looped.elbo).std().item()
            / loop_points ** 0.5}


def decoder_flops_per_row(model) -> int:
    """Forward + input-gradient backward of the decoder MLP: 2 matmuls per layer, 2 FLOP/MAC."""
    macs = sum(m.in_features * m.out_features for m in model.decoder.modules()
               if isinstance(m, torch.nn.Linear))
    return 2 * 2 * macs


def matmul_flops(rows, model, device, repeats=5):
    """FLOP/s of plain matmuls with the decoder's shapes (forward and input-gradient)."""
    layers = [m for m in model.decoder.modules() if isinstance(m, torch.nn.Linear)]
    xs = [torch.randn(rows, m.in_features, device=device) for m in layers]
    ws = [m.weight.detach().T.contiguous() for m in layers]
    gs = [torch.randn(rows, m.out_features, device=device) for m in layers]
    best = float("inf")
    for _ in range(repeats):
        sync(device)
        t0 = time.perf_counter()
        for x, w, g in zip(xs, ws, gs):
            x @ w
            g @ w.T
        sync(device)
        best = min(best, time.perf_counter() - t0)
    return rows * decoder_flops_per_row(model) / best


def bench_ais(model, x, chains, steps, leapfrog, seed, device):
    rows = chains * x.shape[0]
    t0 = time.perf_counter()
    ais(BatchLikelihood(model, x), x.shape[0], model.z_dim, n_chains=chains, n_steps=steps,
        n_leapfrog=leapfrog, seed=seed, init_step=0.1, device=device)
    sync(device)
    t = time.perf_counter() - t0
    flops = rows * steps * leapfrog * decoder_flops_per_row(model) / t
    peak = matmul_flops(rows, model, device)
    return {"ais_rows": rows, "ais_s": t, "ais_gflops": flops / 1e9,
            "matmul_gflops_same_shapes": peak / 1e9, "ais_flop_fraction": flops / peak}


def bench_iwae(model, x, k, seed):
    torch.manual_seed(seed)
    t0 = time.perf_counter()
    model.iwae(x, k)
    t = time.perf_counter() - t0
    return {"iwae_k": k, "iwae_points": len(x), "iwae_s": t, "iwae_points_per_s": len(x) / t}


PAPER_QSTAR_STEPS_ASSUMED = 3000  # mean q* steps under the paper's rule when not measured


def model_names() -> list:
    """Every "<family>/<architecture>" that some study trains, per the paper preset (each
    study's folder declares its models)."""
    return sorted({n for s in studies().values() if s.models and "paper" in s.presets
                   for n in s.models("paper")})


def unit_train_step(name, x, batch, steps, device):
    family, architecture = name.split("/")
    torch.manual_seed(0)
    model = VAE(model_config(architecture, family=family)).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, eps=1e-4)

    def run(n):
        for i in range(n):
            xb = x[(i * batch) % (len(x) - batch):][:batch]
            z, log_q = model.encoder.sample_and_log_prob(xb, 1)
            loss = -(model.log_joint(xb, z) - log_q).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    run(5)
    return _timed(lambda: run(steps), device) / steps


def unit_train_step_trainer(name, x, batch, steps, device, models: int = 1) -> float:
    """A model's share of one step of the real trainer, from one epoch of `steps` steps (warm-up
    and validation off): one model alone (models=1, common/runs/train.py), or `models` models
    stacked (common/runs/stacked.py)."""
    from pathlib import Path
    from ..runs.stacked import train_stacked
    family, architecture = name.split("/")
    cfg = TrainConfig(epochs=1, warmup_epochs=0, n_valid_monitor=0, batch_size=batch)
    xs = x[:batch * steps]
    with tempfile.TemporaryDirectory() as tmp:
        ms = [VAE(model_config(architecture, family=family)).to(device) for _ in range(models)]
        dirs = [Path(tmp) / str(i) for i in range(models)]
        if models == 1:
            t = _timed(lambda: train(ms[0], xs, xs[:0], cfg, dirs[0], 0, resume=False), device)
        else:
            t = _timed(lambda: train_stacked(ms, [xs] * models, [xs[:0]] * models, cfg, dirs,
                                             list(range(models))), device)
    return t / (steps * models)


def bench_stacked(x, device, small: bool) -> dict:
    """Per-model step of exp52's architectures alone vs stacked two, three (the three seeds of
    SEEDS=0,1,2: unit_train_step_trainer stacks models of different seeds) and four at a
    time."""
    steps = 10 if small else (100 if device.type == "cuda" else 30)
    out = {}
    for family in study("exp52").presets["paper"].families:
        name = f"{family}/standard"
        unit_train_step_trainer(name, x, 100, 3, device, 2)   # warm-up
        alone = unit_train_step_trainer(name, x, 100, steps, device, 1)
        for m in (2, 3, 4):
            stacked = unit_train_step_trainer(name, x, 100, steps, device, m)
            out[f"stacked_x{m}_step_ms_{family}"] = stacked * 1e3
            out[f"stacked_x{m}_speedup_{family}"] = alone / stacked
        out[f"alone_step_ms_{family}"] = alone * 1e3
    return out


def unit_ais_row(model, x, chains, steps, leapfrog, device):
    _timed(lambda: ais(BatchLikelihood(model, x[:2]), 2, model.z_dim, n_chains=2, n_steps=2,
                       n_leapfrog=2, seed=0, device=device), device)
    t = _timed(lambda: ais(BatchLikelihood(model, x), len(x), model.z_dim, n_chains=chains,
                           n_steps=steps, n_leapfrog=leapfrog, seed=0, init_step=0.1,
                           device=device), device)
    return t / (chains * len(x) * steps * leapfrog)


def unit_qstar_row(model, x, family, samples, steps, device):
    """One q* step per (point, sample) row of a local family, from the family's prior start."""
    ll = BatchLikelihood(model, x)
    local = local_family(family, model.z_dim, model.config)
    fit = lambda n: optimize_local(ll, local, len(x), n_samples=samples,  # noqa: E731
                                   check_every=n, patience=10 ** 6, max_steps=n, eval_samples=1,
                                   seed=0, device=device)
    fit(3)
    return _timed(lambda: fit(steps), device) / (len(x) * samples * steps)


def paper_rule_qstar_steps(model, x, device) -> float:
    """Mean steps of the ffg q* under the paper preset's rule (from the prior, lr 1e-3, S = 50,
    window 100, patience 10)."""
    c = study("exp52").presets["paper"]
    r = optimize_local(BatchLikelihood(model, x), local_family(GAUSSIAN, model.z_dim, model.config),
                       len(x),
                       n_samples=c.qstar_samples, lr=c.qstar_lr, check_every=c.qstar_check_every,
                       patience=c.qstar_patience, max_steps=c.qstar_max_steps, eval_samples=1,
                       seed=0, device=device)
    return r.steps.float().mean().item()


def bench_cost_model(model, x_train, x_test, device, small: bool, stacked: dict) -> dict:
    gpu = device.type == "cuda"
    points = 1000 if gpu else (20 if small else 100)
    x = x_test[:points]
    units = {"train_step": {n: unit_train_step(n, x_train, 100, 50 if gpu else 10, device)
                            for n in model_names()},
             "ais_row": unit_ais_row(model, x, 100 if gpu else 10, 5 if gpu else 2,
                                     10 if gpu else 5, device),
             "qstar_row": {f: unit_qstar_row(model, x, f, 50 if gpu else 10, 20 if gpu else 5,
                                             device)
                           for f in dict.fromkeys(local_name(f) for f in FAMILIES)}}
    t = _timed(lambda: model.iwae(x[:100], 5000 if gpu else 500), device)
    units["iwae_row"] = t / (len(x[:100]) * (5000 if gpu else 500))
    # exp52 stacks one family over its data sets: the single step scaled by the ratio section 5
    # measured with the real trainers (stacked x M vs alone, same steps)
    m = len(study("exp52").presets["paper"].datasets)
    units["train_step_stacked"] = {
        f"{f}/standard": units["train_step"][f"{f}/standard"] * stacked[f"stacked_x{m}_step_ms_{f}"]
        / stacked[f"alone_step_ms_{f}"]
        for f in study("exp52").presets["paper"].families if f"stacked_x{m}_step_ms_{f}" in stacked}
    if gpu:
        steps, source = paper_rule_qstar_steps(model, x_test[:100], device), "measured (100 points)"
    else:
        steps, source = PAPER_QSTAR_STEPS_ASSUMED, "assumed"
    prediction = predict(units, "paper", steps, stacked=gpu)   # what --stack auto does
    unstacked = predict(units, "paper", steps, stacked=False)
    return {"cost_units": units, "cost_qstar_steps_paper_rule": steps,
            "cost_qstar_steps_source": source, "cost_model_paper_s": prediction,
            "paper_preset_predicted_h": prediction["all_h"],
            "paper_preset_predicted_h_stacked": predict(units, "paper", steps, True)["all_h"],
            "paper_preset_predicted_h_unstacked": unstacked["all_h"],
            **{f"paper_predicted_h_{k}": v["total"] / 3600 for k, v in prediction.items()
               if isinstance(v, dict)}}


def summary_markdown(r: dict) -> str:
    """The README's speed table, from one bench.json (tools/sync_readmes.py quotes it, so no
    number is typed by hand)."""
    q = r["qstar_config"]
    families = [f for f in ("ffg", "flow", "cflow", "af") if f"alone_step_ms_{f}" in r]
    prov, machine = r.get("provenance", {}), r.get("machine", {})
    rows = [
        ("one MNIST epoch, trainer / bare PyTorch loop (ffg, fastest of the alternated runs)",
         f"{r['epoch_s_ffg']:.2f} s / {r['epoch_s_bare_ffg']:.2f} s = "
         f"**{r['trainer_over_bare_ffg']:.2f}x** (target 1.10x)"),
        ("one MNIST epoch, " + " / ".join(f for f in families[1:]) + " (one run each)",
         " / ".join(f"{r[f'epoch_s_{f}']:.2f} s" for f in families[1:])),
        (f"ffg q*, {r['qstar_points']} test points, batched (quick rule: S = {q['qstar_samples']}, "
         f"lr {q['qstar_lr']:g} decayed x{q['qstar_lr_decay']:g} per point after each window of "
         f"{q['qstar_check_every']} steps without a {q['qstar_tol']:g}-nat gain, patience "
         f"{q['qstar_patience']}, cap {q['qstar_max_steps']})",
         f"{r['qstar_batched_s']:.1f} s, {r['qstar_mean_steps_batched']:.0f} steps on average"),
        (f"the same algorithm one point at a time (timed on {r['qstar_loop_points_timed']}, "
         f"scaled)", f"{r['qstar_loop_s_scaled']:.0f} s: **{r['qstar_speedup']:.1f}x** slower"),
        (f"mean L[q*] on those {r['qstar_loop_points_timed']} points, batched vs loop",
         f"{r['L_qstar_batched_subset']:.2f} vs {r['L_qstar_loop_subset']:.2f} (difference "
         f"{r['L_qstar_batched_subset'] - r['L_qstar_loop_subset']:+.3f} ± "
         f"{r['L_qstar_diff_sem']:.3f} nats)"),
        ("AIS decoder forward/backward FLOP/s / plain matmul FLOP/s (same shapes)",
         f"{r['ais_gflops']:.0f} / {r['matmul_gflops_same_shapes']:.0f} GFLOP/s = "
         f"**{r['ais_flop_fraction']:.2f}**"),
        (f"IWAE, k = {r['iwae_k']}", f"{r['iwae_points_per_s']:.1f} points/s")]
    for f in families:
        ms = [r[f"alone_step_ms_{f}"]] + [r[f"stacked_x{m}_step_ms_{f}"] for m in (2, 3, 4)]
        speed = [r[f"stacked_x{m}_speedup_{f}"] for m in (2, 3, 4)]
        rows.append((f"a model's training step (real trainer), alone / stacked x2 / x3 / x4, {f}",
                     " / ".join(f"{v:.2f}" for v in ms) + " ms ("
                     + " / ".join(f"{v:.2f}x" for v in speed) + ")"))
    rows.append((f"`make all PRESET=paper` predicted on this machine by the cost model (q* steps "
                 f"{r['cost_qstar_steps_source']})",
                 f"{r['paper_preset_predicted_h_unstacked']:.0f} h unstacked, "
                 f"{r['paper_preset_predicted_h_stacked']:.0f} h with exp52 stacked"))
    per_study = sorted(((k, v) for k, v in r.get("cost_model_paper_s", {}).items()
                        if isinstance(v, dict)), key=lambda kv: kv[1]["total"])
    if per_study:
        rows.append(("the same per study, training + evaluation (h), cheapest first",
                     ", ".join(f"{k} {v['train'] / 3600:.1f} + {v['evaluate'] / 3600:.1f}"
                               for k, v in per_study)))
    head = (f"`make bench` on commit {str(prov.get('git_commit', '?'))[:12]}, "
            f"{prov.get('time', '?')}, device {prov.get('device', '?')}"
            + (f"; this machine: {machine['cpu']}, {machine['cores']} cores, one MNIST ffg "
               f"training step {machine['ffg_step_ms_2_threads']:.1f} ms on 2 threads"
               if {"cpu", "cores", "ffg_step_ms_2_threads"} <= set(machine) else "") + ".")
    return head + "\n\n" + tabulate(rows, headers=["measure", "value"],
                                      tablefmt="github") + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--preset", default="quick")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--seed", default="0")
    parser.add_argument("--qstar-points", type=int, default=1000)
    parser.add_argument("--loop-points", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    try:
        device = resolve_device(args.device)
        if args.preset not in study("exp52").presets:
            raise ConfigError(f"PRESET={args.preset} is not allowed; use smoke, quick or paper")
    except ConfigError as err:
        fail(str(err))
    seed = int(args.seed)
    cfg = study("exp52").presets["quick"]
    result = {"provenance": provenance(args.preset, seed, device), "qstar_config": {
        k: getattr(cfg, k) for k in ("qstar_samples", "qstar_lr", "qstar_lr_decay", "qstar_tol",
                                     "qstar_check_every", "qstar_patience", "qstar_max_steps",
                                     "k_eval", "qstar_warm_start")}}
    if device.type == "cpu":   # the machine's speed at this project's training step (TIMES.md's)
        from .machine import measure
        result["machine"] = measure()
    x_train = load_dataset("mnist", "train", device)
    x_valid = load_dataset("mnist", "valid", device)
    x_test = load_dataset("mnist", "test", device)
    small = args.preset == "smoke"
    if small:
        x_train = x_train[:2000]
    print("[bench] 1/6 trainer vs bare loop", flush=True)
    result.update(bench_trainer(x_train, x_valid, device, 1 if small else args.repeats))
    model, source = trained_mnist_model(args.preset, seed, device)
    result["model"] = source
    for p in model.parameters():
        p.requires_grad_(False)
    n_q = 50 if small else args.qstar_points
    print(f"[bench] 2/6 q*: batched on {n_q} points vs loop on {args.loop_points}", flush=True)
    result.update(bench_qstar(model, x_test[:n_q], min(args.loop_points, n_q), cfg, seed))
    print("[bench] 3/6 AIS FLOP efficiency", flush=True)
    result.update(bench_ais(model, x_test[:100], 16, 5 if small else 20, 5, seed, device))
    print("[bench] 4/6 IWAE k=5000 throughput", flush=True)
    result.update(bench_iwae(model, x_test[:20 if small else 100], 5000, seed))
    print("[bench] 5/6 stacked training: a model's step alone vs stacked", flush=True)
    stacked = bench_stacked(x_train, device, small)
    result.update(stacked)
    print("[bench] 6/6 cost model: per-unit costs -> paper preset wall time", flush=True)
    result.update(bench_cost_model(model, x_train, x_test, device, small, stacked))
    write_json(results_dir() / "bench" / "bench.json", result)
    atomic_write_text(results_dir() / "bench" / "summary.md", summary_markdown(result))
    table = [[k, f"{v:.4g}" if isinstance(v, float) else v] for k, v in result.items()
             if not isinstance(v, dict)]
    print(tabulate(table, headers=["measure", "value"], tablefmt="github"))
    print(f"[bench] wrote {results_dir() / 'bench' / 'bench.json'} and summary.md (the README's "
          f"table)")
    return 0


if __name__ == "__main__":
    sys.exit(guarded(main))
