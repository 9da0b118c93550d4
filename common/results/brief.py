"""The brief's own findings (../shared/seed/project-brief-fr.md), judged as claims beside the
paper's (source "brief", common/results/claims.py): each is a difference of estimates with its s.e.,
"held" beyond 3 s.e. with every certificate within target. One function per study, called by
its evaluate step on the rows it writes; each returns [] where its rows are missing.

Where the brief's finding is not a difference of two printed estimates, the quantity judged is
said in the claim's text and here:
  stability of training (exp52): the s.d. of the epoch-to-epoch changes of the validation ELBO
      over the second half of training, s.e. s.d. / sqrt(2 (n - 1)) (normal approximation);
  balance of the gradients (exp_gradients): |ln r|, r the normalised encoder/decoder gradient
      ratio averaged over the last quarter of training (n epochs), s.e. (std / r) / sqrt(n);
  stability of the gradients: the coefficient of variation std / mean of r over those epochs,
      s.e. cv / sqrt(2 (n - 1));
  refitting (exp_refit): the IWAE from epoch 0 to the first epoch at 20% of the refit ("first"),
      and from there to the last ("then"), on A (refit) and B (held out).
"""
import math
import statistics

from .claims import contrast
from ..models.families import FAMILIES, GAUSSIAN

GAPS = (("approx_gap", "approximation"), ("amort_gap", "amortization"), ("total_gap", "total"))
DATA = {"mnist": "MNIST", "fashion": "Fashion"}
FLOWS = ("flow", "cflow")
# exp55: the approximation gap "stays stable between train and valid" within this many nats
SAME_WITHIN = 0.5
EARLY_SHARE = 0.2   # exp_refit: "first" ends at the first epoch at this share of the refit


def _name(family: str) -> str:
    return FAMILIES[family].display if family in FAMILIES else family


def _brief(study: str, text: str, column: str, terms: list, **kw) -> dict:
    return contrast(study, text, column, terms, source="brief", **kw)


def exp52_claims(rows: list, spreads: dict = None) -> list:
    """§5.2 test rows (dataset, model, gaps): the Contextual Flow reduces each gap more than the
    Flow; the flows' reductions are larger on Fashion-MNIST; the amortization gap dominates for
    every flow family too (the brief's conclusion, per family); spreads {(dataset, model): {"spread", "spread_sem"}} (epoch_change_spread):
    the Contextual Flow trains more stably than the Flow on Fashion-MNIST."""
    by = {(r["dataset"], r["model"]): r for r in rows}
    out = []
    for dataset in dict.fromkeys(r["dataset"] for r in rows):
        flow, cflow = by.get((dataset, "flow")), by.get((dataset, "cflow"))
        for field, name in GAPS if flow and cflow else ():
            out.append(_brief("exp52 §5.2", f"the Contextual Flow reduces the {name} gap more "
                              f"than the Flow", DATA.get(dataset, dataset),
                              [(1, flow, field), (-1, cflow, field)]))
        for (d, family), row in by.items():   # (FFG's is the paper's claim)
            if d == dataset and family != GAUSSIAN:
                out.append(_brief("exp52 §5.2", "the amortization gap dominates for the flows "
                                  "too (it exceeds the approximation gap)",
                                  f"{DATA.get(dataset, dataset)} {_name(family)}",
                                  [(1, row, "amort_gap"), (-1, row, "approx_gap")]))
    for family in FLOWS:
        keys = [(d, m) for d in ("fashion", "mnist") for m in (GAUSSIAN, family)]
        if all(k in by for k in keys):
            f_ffg, f_flow, m_ffg, m_flow = (by[k] for k in keys)
            for field, name in GAPS[:2]:   # reduction on Fashion minus reduction on MNIST
                out.append(_brief("exp52 §5.2", f"flows reduce the {name} gap more on "
                                  f"Fashion-MNIST than on MNIST", _name(family),
                                  [(1, f_ffg, field), (-1, f_flow, field), (-1, m_ffg, field),
                                   (1, m_flow, field)]))
    spreads = spreads or {}
    if ("fashion", "flow") in spreads and ("fashion", "cflow") in spreads:
        out.append(_brief("exp52 §5.2", "the Contextual Flow trains more stably than the Flow "
                          "on complex data (smaller s.d. of the epoch-to-epoch change of the "
                          "validation ELBO, second half of training)", "Fashion",
                          [(1, spreads[("fashion", "flow")], "spread"),
                           (-1, spreads[("fashion", "cflow")], "spread")], certified=True))
    return out


def epoch_change_spread(values: list):
    """{"spread", "spread_sem"}: the s.d. of the epoch-to-epoch changes of a per-epoch series
    over its second half, and its s.e. sd / sqrt(2 (n - 1)); None with fewer than 3 changes."""
    tail = [float(v) for v in values[len(values) // 2:]]
    changes = [b - a for a, b in zip(tail, tail[1:])]
    if len(changes) < 3:
        return None
    sd = statistics.stdev(changes)
    return {"spread": sd, "spread_sem": sd / math.sqrt(2 * (len(changes) - 1))}


def exp53_claims(rows: list, trunks: dict) -> list:
    """§5.3 test rows (encoder, model): per encoder trunk ({encoder: words}), the Contextual Flow
    reduces the approximation and the amortization gap more than the Flow."""
    out = []
    for encoder, trunk in trunks.items():
        by = {r["model"]: r for r in rows if r["encoder"] == encoder}
        if "flow" in by and "cflow" in by:
            for field, name in GAPS[:2]:
                out.append(_brief("exp53 §5.3", f"on a frozen decoder the Contextual Flow "
                                  f"reduces the {name} gap more than the Flow", f"{trunk} encoders",
                                  [(1, by["flow"], field), (-1, by["cflow"], field)]))
    return out


def exp55_claims(final: dict) -> list:
    """§5.5 at the last epoch, final {(model, split): row}: the approximation gap the same on
    training and validation data; the large encoder's amortization gap grows more from train to
    valid than FFG's; each flow's validation total gap below every Gaussian model's."""
    models = list(dict.fromkeys(m for m, _ in final))
    out = []
    for model in models:
        if (model, "train") in final and (model, "valid") in final:
            out.append(_brief("exp55 §5.5", f"the approximation gap is the same on training "
                              f"and validation data (within {SAME_WITHIN} nat)", model,
                              [(1, final[(model, "valid")], "approx_gap"),
                               (-1, final[(model, "train")], "approx_gap")],
                              within=SAME_WITHIN))
    if all((m, s) in final for m in ("large_encoder", GAUSSIAN) for s in ("train", "valid")):
        out.append(_brief("exp55 §5.5", "the amortization gap explodes on validation data for "
                          "the large encoder (its growth from train to valid exceeds FFG's)",
                          "large_encoder vs ffg",
                          [(1, final[("large_encoder", "valid")], "amort_gap"),
                           (-1, final[("large_encoder", "train")], "amort_gap"),
                           (-1, final[(GAUSSIAN, "valid")], "amort_gap"),
                           (1, final[(GAUSSIAN, "train")], "amort_gap")]))
    gaussians = [final[(m, "valid")] for m in (GAUSSIAN, "large_encoder", "large_decoder")
                 if (m, "valid") in final]
    for flow in (f for f in FLOWS if (f, "valid") in final and gaussians):
        best = min(gaussians, key=lambda r: float(r["total_gap"]))
        out.append(_brief("exp55 §5.5", "the flows offer the best trade-off: a smaller "
                          "validation total gap than every Gaussian model (against the smallest)",
                          flow, [(1, best, "total_gap"), (-1, final[(flow, "valid")], "total_gap")],
                          detail=f"vs {best['model']}"))
    return out


def gradient_measures(row: dict) -> dict:
    """exp_gradients' summary row -> the judged measures with their s.e. (module docstring):
    imbalance |ln r|, the encoder's gradient norm, the coefficient of variation of r."""
    n = int(float(row["last_quarter_epochs"]))
    r, r_std = float(row["grad_ratio_normalised"]), float(row["grad_ratio_normalised_std"])
    enc, enc_std = float(row["enc_grad_norm"]), float(row["enc_grad_norm_std"])
    cv = r_std / r
    return {"model": row["model"], "n": n,
            "imbalance": abs(math.log(r)), "imbalance_sem": r_std / r / math.sqrt(n),
            "enc_grad_norm": enc, "enc_grad_norm_sem": enc_std / math.sqrt(n),
            "ratio_cv": cv, "ratio_cv_sem": cv / math.sqrt(2 * (n - 1))}


def gradient_claims(rows: list) -> list:
    """The gradient analysis (summary.csv rows of exp_gradients): large decoders unbalance the
    optimisation most, large encoders put the most pressure on the encoder, the flows' gradients
    are more balanced than FFG's, the Contextual Flow's are the most stable. Needs at least two
    epochs in the last quarter (an s.e.)."""
    if not rows or min(int(float(r["last_quarter_epochs"])) for r in rows) < 2:
        return []
    g = {r["model"]: gradient_measures(r) for r in rows}
    out = []

    def above_all(model, field, text, lower=False):
        others = [m for m in g.values() if m["model"] != model]
        if model not in g or not others:
            return
        pick = min if lower else max
        runner = pick(others, key=lambda m: m[field])
        sign = -1 if lower else 1
        out.append(_brief("exp_gradients", text, model,
                          [(sign, g[model], field), (-sign, runner, field)],
                          detail=f"vs {runner['model']}"))
    above_all("large_decoder", "imbalance", "large decoders unbalance the optimisation most "
              "(the largest |ln| of the normalised encoder/decoder gradient ratio)")
    above_all("large_encoder", "enc_grad_norm", "large encoders put the most pressure on "
              "learning (the largest encoder gradient norm)")
    for flow in (f for f in FLOWS if f in g and GAUSSIAN in g):
        out.append(_brief("exp_gradients", "the flows' gradients are more balanced than FFG's "
                          "(smaller |ln| of the normalised gradient ratio)", flow,
                          [(1, g[GAUSSIAN], "imbalance"), (-1, g[flow], "imbalance")]))
    above_all("cflow", "ratio_cv", "the Contextual Flow is the most stable (the smallest "
              "coefficient of variation of its gradient ratio over the last quarter)", lower=True)
    return out


def refit_claims(curves: list) -> list:
    """The refit under noise (curves.csv rows: noise, epoch, set, iwae, iwae_sem): the IWAE
    first rises on A (refit) and on B (held out), then keeps rising mainly on A."""
    out = []
    for noise in sorted({int(r["noise"]) for r in curves}):
        by = {(r["set"], int(r["epoch"])): r for r in curves if int(r["noise"]) == noise}
        epochs = sorted({e for _, e in by})
        last = epochs[-1]
        early = next((e for e in epochs if e >= max(1, EARLY_SHARE * last)), None)
        if early is None or early == last or not all((s, e) in by for s in "AB"
                                                      for e in (0, early, last)):
            continue
        for s in ("A", "B"):
            out.append(_brief("exp_refit", "refitting the encoder first raises the IWAE on "
                              "the refit set A and on the held-out set B", f"noise {noise}, "
                              f"set {s}", [(1, by[(s, early)], "iwae"), (-1, by[(s, 0)], "iwae")],
                              detail=f"epoch 0 to {early}"))
        out.append(_brief("exp_refit", "then the IWAE keeps rising mainly on A (local "
                          "adaptation): its later gain on A exceeds that on B",
                          f"noise {noise}",
                          [(1, by[("A", last)], "iwae"), (-1, by[("A", early)], "iwae"),
                           (-1, by[("B", last)], "iwae"), (1, by[("B", early)], "iwae")],
                          detail=f"epoch {early} to {last}"))
    return out
