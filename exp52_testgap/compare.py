"""A Table-3 variant against the standard models on the same training points:
table_vs_standard.md/.tex (a table*.md, so the report and the snapshot carry it).

Differences are paired (variant minus standard, point by point: the same x), with the standard
error of the mean difference. The paper's claims (6.1.2 / Table 3):
  large_encoder: a larger encoder mainly shrinks the amortization gap
      held per column when the amortization gap's fall minus the approximation gap's move,
      -Δamort - |Δapprox|, exceeds 3 s.e. (both paired), both evaluations certified;
  no_annealing: without entropy annealing the true posterior is more Gaussian
      held per flow model when L[q*_flow] - L[q*_FFG] falls by more than 3 s.e., both certified,
      and both rows' ffg q* fits (behind L[q*_FFG]) within the cap and probe targets.
"""
import math
from pathlib import Path

from common.results.claims import claim, mean_sem, truthy, write_claims
from common.config import CorruptFile, read_json_or
from common.inference.gaps import EvalConfig, read_per_point
from common.results.tables import pm, write_tables

from common.models.families import GAUSSIAN
from .evaluate import NAMES

STUDY = "exp52 Table 3"
CLAIMS = {"large_encoder": "a larger encoder mainly shrinks the amortization gap",
          "no_annealing": "without annealing the posterior is more Gaussian "
                          "(L[q*_flow] - L[q*_FFG] shrinks)"}


def _per_point(path: Path) -> dict:
    """The per-point columns of an evaluation; one line naming the file when one is not a
    number or a column the comparison needs is missing."""
    out = read_per_point(path, "delete it and rerun `make exp52` to recompute it")
    missing = [k for k in ("approx_gap", "amort_gap", "L_qstar", "L_qstar_ffg") if k not in out]
    if missing:
        raise CorruptFile(f"{path} lacks {', '.join(missing)}; delete it and rerun `make exp52`")
    return out


def paired(a: list, b: list) -> tuple:
    """Mean and standard error of b - a over paired points."""
    return mean_sem(y - x for x, y in zip(a, b))


def _eval_fields(summary_path: Path) -> dict:
    """The evaluation config of a summary, but its point count: a variant evaluated on fewer
    training points is paired with the first points of the standard evaluation (the same x)."""
    key = (read_json_or(summary_path, {}, "") or {}).get("key", {})
    return {f: key.get(f) for f in EvalConfig.__dataclass_fields__ if f != "n_points"}


def compare(variant: str, rows: list, variant_runs: Path, standard_runs: Path, out: Path) -> list:
    """Write out/table_vs_standard.md/.tex; return the lines said about it (also when it cannot be
    made: no standard training-split evaluation, or one made with another evaluation config)."""
    header = ["model (train points)", "approximation gap: standard -> variant (Δ)",
              "amortization gap: standard -> variant (Δ)",
              "L[q*] - L[q*_FFG]: standard -> variant (Δ)", "certified (std / var)", "claim"]
    table, said, claims = [], [], []
    for r in rows:
        if r["split"] != "train":
            continue
        name = f"{r['dataset']}_{r['model']}"
        var_dir, std_dir = variant_runs / name / "eval_train", standard_runs / name / "eval_train"
        if not (std_dir / "per_point.csv").exists():
            said.append(f"{name}: no standard training-split evaluation "
                        f"({std_dir}); run `make exp52` first")
            continue
        if _eval_fields(std_dir / "summary.json") != _eval_fields(var_dir / "summary.json"):
            said.append(f"{name}: the standard model was evaluated with another evaluation "
                        f"config; rerun `make exp52` with this preset")
            continue
        s, v = _per_point(std_dir / "per_point.csv"), _per_point(var_dir / "per_point.csv")
        n = len(v["approx_gap"])
        if n > len(s["approx_gap"]):
            said.append(f"{name}: the variant has {n} training points, the standard evaluation "
                        f"{len(s['approx_gap'])}; rerun `make exp52` with at least as many")
            continue
        s = {k: col[:n] for k, col in s.items()}   # the same first n training points
        std_sum = read_json_or(std_dir / "summary.json", {}, "")["summary"]
        certified = truthy(std_sum.get("certified")) and truthy(r.get("certified"))
        column = f"{NAMES[r['dataset']]} {NAMES[r['model']]}"
        deltas = {q: paired(s[q], v[q]) for q in ("approx_gap", "amort_gap")}
        cells, judged = [], None
        for q, (d, se) in deltas.items():
            cells.append(f"{sum(s[q]) / len(s[q]):.2f} -> {sum(v[q]) / len(v[q]):.2f} "
                         f"({pm(d, se)})")
        if variant == "large_encoder":   # "mainly shrinks the amortization gap": the
            (da, sa), (dm, sm) = deltas["approx_gap"], deltas["amort_gap"]   # fall beats
            judged = claim(STUDY, CLAIMS[variant], column, -dm - abs(da),    # |approx move|
                           math.sqrt(sm ** 2 + sa ** 2), certified)
        if r["model"] != GAUSSIAN:
            gs = [a - b for a, b in zip(s["L_qstar"], s["L_qstar_ffg"])]
            gv = [a - b for a, b in zip(v["L_qstar"], v["L_qstar_ffg"])]
            d, se = paired(gs, gv)
            cells.append(f"{sum(gs) / len(gs):.2f} -> {sum(gv) / len(gv):.2f} ({pm(d, se)})")
            if variant == "no_annealing":   # L[q*_FFG] too: both rows' ffg fits converged
                ffg_fits = truthy(std_sum.get("ffg_fit_certified")) and \
                    truthy(r.get("ffg_fit_certified"))
                judged = claim(STUDY, CLAIMS[variant], column, -d, se, certified and ffg_fits)
        else:
            cells.append("–")
        if judged:
            claims.append(judged)
        table.append([f"{r['dataset']} {r['model']} ({len(s['approx_gap'])})", *cells,
                      f"{'yes' if truthy(std_sum.get('certified')) else 'no'} / "
                      f"{'yes' if truthy(r.get('certified')) else 'no'}",
                      judged["verdict"] if judged else "–"])
    if table:
        write_tables(out / "table_vs_standard", header, table,
                     caption=f"Variant {variant} against the standard exp52 models on the same "
                             f"training points; Δ = variant - standard, paired mean ± s.e.m. "
                             f"Claim: {CLAIMS[variant]}; 'held' = beyond 3 s.e. and both "
                             f"evaluations certified.")
        write_claims(out, claims)
        said.append(f"wrote {out / 'table_vs_standard.md'} and claims.json")
    else:   # nothing to compare: no comparison of an earlier run may stand for this one
        for stale in (out / "table_vs_standard.md", out / "table_vs_standard.tex",
                      out / "claims.json"):
            stale.unlink(missing_ok=True)
    return said
