"""Which q* rule reaches the same converged L[q*] with the fewest decoder rows?

For one trained model and its first N test points, each rule (lr, per-point plateau decay,
patience, samples per step) fits the model's q* fits as the evaluation does
(common/inference/gaps.py:
ffg, and for a flow model the flow q* from the best start), then lets each fit run on under
twice the patience and cap (the probe, on every point). Reported per rule and fit: mean steps,
cap share, decoder rows with a gradient (the cost, independent of what else the machine runs),
mean L[q*] (k_eval samples) and the probe. A rule is better when its L[q*] is as high and its
probe as small for fewer rows.

    python -m tools.qstar_rules --checkpoint results/.../mnist_flow/last.pt --points 200
"""
import argparse
import dataclasses
import json
import time

from common.inference import timing
from common.data import load_dataset
from common.inference.gaps import fit_qstar, longer_fits
from common.studies import study
from common.runs.train import load_model

RULES = {  # name: EvalConfig overrides (the default quick preset's rule is "quick")
    "quick": {},
    "former quick (lr 1e-3, constant, patience 3)": dict(qstar_lr=1e-3, qstar_lr_decay=1.0,
                                                         qstar_patience=3, qstar_max_steps=4000),
    "quick, tol 0.02": dict(qstar_tol=0.02),
    "quick, tol 0.05": dict(qstar_tol=0.05),
    "quick, tol 0.1": dict(qstar_tol=0.1),
    "quick, S 5": dict(qstar_samples=5),
    "quick, window 50": dict(qstar_check_every=50),
    "quick, patience 1": dict(qstar_patience=1),
    "quick, window 50, tol 0.025": dict(qstar_check_every=50, qstar_tol=0.025),
}


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--dataset", default="mnist")
    p.add_argument("--points", type=int, default=200)
    p.add_argument("--rules", default="", help="rule names separated by ; (default: all)")
    p.add_argument("--out", default="")
    args = p.parse_args()
    model = load_model(args.checkpoint)
    model.eval()
    x = load_dataset(args.dataset, "test")[:args.points]
    base = study("exp52").presets["quick"]
    results = {}
    names = [r for r in RULES if not args.rules or r in args.rules.split(";")]
    for name in names:
        cfg = dataclasses.replace(base, **RULES[name])
        with timing.recording() as totals:
            t0 = time.perf_counter()
            fits = fit_qstar(model, x, cfg, 0)
            t_fit = time.perf_counter() - t0
            fit_units = {k: dict(v) for k, v in totals.items()}
        longer = longer_fits(model, x, fits, cfg, 0)
        row = {"fit_s": t_fit}
        for f, r in fits.items():
            unit = fit_units.get(f"q* {f} fit", {})
            row[f] = {"steps": r.steps.float().mean().item(),
                      "capped": r.capped.float().mean().item(),
                      "grad_rows_M": unit.get("grad_rows", 0) / 1e6,
                      "L_qstar": r.elbo.mean().item(),
                      "probe": (longer[f].elbo.mean() - r.elbo.mean()).item(),
                      "L_qstar_longer": longer[f].elbo.mean().item()}
        results[name] = row
        print(json.dumps({name: row}, indent=1), flush=True)
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"checkpoint": args.checkpoint, "points": args.points, "rules": results}, f,
                      indent=1)


if __name__ == "__main__":
    main()
