"""`make profile`: where one evaluation's time goes, unit by unit.

One flow model (default: exp52's MNIST flow model of the preset, seed 0) is evaluated on the
first --points test points exactly as exp52 evaluates it (L[q], the ffg and flow q* fits with
their start scores and final bounds, the probe, AIS of log p^, BDMC), with
common/inference/timing.py's
units on: each unit's exclusive seconds, share, optimisation steps, time per step, and the
decoder's FLOP/s against this machine's plain-matmul rate for the same shapes (the decoder's
matmuls only: forward rows x 2 x MACs, rows with an input gradient x 4 x MACs; the per-point
flow's own batched matmuls are not counted).

--before FIELD=VALUE,...: the same evaluation first under these config values (the earlier
rule), side by side in one run. Writes RESULTS_DIR/bench/profile.json and the "eval_profile"
entry of RESULTS_DIR/bench/bench.json; prints the tables.
"""
import argparse
import dataclasses
import sys
import time

from tabulate import tabulate

from ..inference import timing
from .bench import decoder_flops_per_row, matmul_flops
from ..config import (ConfigError, UserError, guarded, portable, provenance, read_json_or,
                     resolve_device, results_dir, to_jsonable, write_json)
from ..data import load_dataset
from ..runs.experiment import run_tag
from ..inference.gaps import ais_logpx, bdmc_bound, encoder_bounds
from ..studies import study
from ..runs.train import load_model

# the rule before issue 24: constant lr 1e-3, patience 3, cap 4000, the probe refits from start
DEFAULT_BEFORE = ("qstar_probe_mode=refit,qstar_lr=0.001,qstar_lr_decay=1.0,qstar_tol=0.0,"
                  "qstar_patience=3,qstar_max_steps=4000")


def parse_overrides(text: str, cfg) -> dict:
    """'a=1,b=x' -> {field: value} typed like cfg's fields; ConfigError naming a bad one."""
    out = {}
    for item in filter(None, (t.strip() for t in text.split(","))):
        name, _, value = item.partition("=")
        if not hasattr(cfg, name) or not value:
            raise ConfigError(f"--before {item!r}: use FIELD=VALUE with a field of the evaluation "
                              f"config, e.g. {DEFAULT_BEFORE}")
        kind = type(getattr(cfg, name))
        out[name] = (value.lower() in ("1", "true", "yes")) if kind is bool else kind(value)
    return out


def profile_once(model, x, cfg, seed) -> dict:
    """Run one evaluation with units on; {unit: {s, calls, steps, grad_rows, fwd_rows}} and the
    wall time, plus the steps per point of each q* fit."""
    with timing.recording() as totals:
        t0 = time.perf_counter()
        bounds, params = encoder_bounds(model, x, cfg, seed)
        ais_logpx(model, x, cfg, seed, params)
        bdmc_bound(model, cfg, seed)
        wall = time.perf_counter() - t0
        units = {k: dict(v) for k, v in totals.items()}
    fits = {k[len("qstar_steps_"):]: v.mean().item() for k, v in bounds.items()
            if k.startswith("qstar_steps_")}
    probes = {f: bounds[f"qstar_probe_{f}"][0].item() for f in fits}
    return {"wall_s": wall, "units": units, "qstar_steps_per_point": fits, "probes": probes,
            "L_qstar": bounds["L_qstar"].mean().item()}


def unit_rows(result: dict, flops_per_row: float, matmul_rate: float) -> list:
    wall = result["wall_s"]
    rows = []
    accounted = 0.0
    for name, u in sorted(result["units"].items(), key=lambda kv: -kv[1]["s"]):
        accounted += u["s"]
        flops = (2 * u.get("grad_rows", 0) + u.get("fwd_rows", 0)) * flops_per_row / 2
        rate = flops / u["s"] if u["s"] > 0 else 0.0
        steps = u.get("steps", 0)
        rows.append({"unit": name, "s": u["s"], "share": u["s"] / wall, "calls": u["calls"],
                     "steps": steps, "ms_per_step": 1e3 * u["s"] / steps if steps else None,
                     "gflops": rate / 1e9, "of_matmul_rate": rate / matmul_rate})
    rows.append({"unit": "other (outside every unit)", "s": wall - accounted,
                 "share": (wall - accounted) / wall, "calls": None, "steps": 0,
                 "ms_per_step": None, "gflops": None, "of_matmul_rate": None})
    return rows


def print_table(label: str, result: dict, rows: list) -> None:
    print(f"\n[profile] {label}: {result['wall_s']:.1f} s in all; q* steps per point "
          f"{ {k: round(v) for k, v in result['qstar_steps_per_point'].items()} }, probes "
          f"{ {k: round(v, 3) for k, v in result['probes'].items()} }, L[q*] "
          f"{result['L_qstar']:.3f}")
    fmt = lambda v, f: "" if v is None else format(v, f)  # noqa: E731
    print(tabulate([[r["unit"], f"{r['s']:.1f}", f"{r['share']:.0%}", fmt(r["calls"], "d"),
                     r["steps"] or "", fmt(r["ms_per_step"], ".1f"), fmt(r["gflops"], ".1f"),
                     fmt(r["of_matmul_rate"], ".0%")] for r in rows],
                   headers=["unit", "s", "share", "calls", "steps", "ms/step", "GFLOP/s",
                            "of matmul"], tablefmt="github"))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="quick")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--seed", default="0")
    parser.add_argument("--checkpoint", default="",
                        help="a trained model's last.pt (default: exp52's MNIST flow model)")
    parser.add_argument("--points", type=int, default=500)
    parser.add_argument("--before", default=DEFAULT_BEFORE,
                        help="config values of the earlier rule, FIELD=VALUE,... ('' for none)")
    args = parser.parse_args(argv)
    presets = study("exp52").presets   # exp52's flow model, by design
    if args.preset not in presets:
        raise ConfigError(f"PRESET={args.preset} is not allowed; use one of: "
                          f"{', '.join(presets)}")
    if args.points < 1:
        raise ConfigError(f"--points={args.points} is not allowed; use a whole number >= 1")
    device, seed = resolve_device(args.device), int(args.seed)
    cfg = dataclasses.replace(presets[args.preset], n_points=args.points)
    before = parse_overrides(args.before, cfg)
    path = args.checkpoint or (results_dir() / "exp52_testgap" / "runs" /
                               run_tag("exp52", args.preset, cfg.epochs, seed) / "mnist_flow" /
                               "last.pt")
    try:
        model = load_model(path, device)
    except UserError as err:
        raise UserError(f"{err} (the profile needs a trained flow model: run `make exp52 "
                        f"PRESET={args.preset}` or pass --checkpoint)") from None
    model.eval()
    x = load_dataset("mnist", "test", device)[:args.points]
    flops_per_row = decoder_flops_per_row(model)        # forward + input gradient
    rate = matmul_flops(args.points * cfg.qstar_samples, model, device)
    out = {"provenance": provenance(args.preset, seed, device), "checkpoint": portable(path),
           "points": args.points, "matmul_gflops": rate / 1e9, "config": to_jsonable(cfg),
           "before_overrides": before, "runs": {}}
    for label in ((["before"] if before else []) + ["after"]):
        c = dataclasses.replace(cfg, **before) if label == "before" else cfg
        print(f"[profile] {label}: evaluating {args.points} points "
              f"({', '.join(f'{k}={v}' for k, v in before.items()) if label == 'before' else 'defaults'})",
              flush=True)
        result = profile_once(model, x, c, seed)
        rows = unit_rows(result, flops_per_row, rate)
        out["runs"][label] = {**result, "table": rows}
        print_table(label, result, rows)
    if before:
        out["speedup"] = out["runs"]["before"]["wall_s"] / out["runs"]["after"]["wall_s"]
        print(f"\n[profile] before / after: {out['speedup']:.2f}x")
    print(f"[profile] plain matmul of the decoder's shapes: {rate / 1e9:.1f} GFLOP/s")
    write_json(results_dir() / "bench" / "profile.json", out)
    bench_path = results_dir() / "bench" / "bench.json"
    bench = read_json_or(bench_path, {}, "writing a new one")
    write_json(bench_path, {**(bench if isinstance(bench, dict) else {}), "eval_profile": out})
    print(f"[profile] wrote {results_dir() / 'bench' / 'profile.json'}")


if __name__ == "__main__":
    guarded(lambda: main())
    sys.exit(0)
