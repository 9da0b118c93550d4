"""Gaps of every small encoder (hidden layer of 100, and linear) against the one frozen decoder,
on the same points.

log p^ (AIS + every encoder's IWAE candidates) is computed once for the decoder and reused for
every encoder, and so is q* of each family (it depends only on the decoder and x; fitted once,
from the best of every encoder's q), so approximation gaps are comparable and the six encoders
cost two q* fits instead of ten. Writes gaps.csv, table.tex / table.md
(hidden-100 encoders, test), table_linear.* (linear encoders, test, with the paper's Table 4)
and their _train versions.
"""
from common.results import brief
from common.results.claims import compare_rows, write_claims
from common.config import guarded
from common.runs.experiment import Experiment, evaluate_decoder_family
from common.models.families import FAMILIES, GAUSSIAN
from common.inference.gaps import CERTIFICATE_FIELDS, COMPUTED_FIELDS, PAPER_RULE_FIELDS
from common.paper import TABLE4_LINEAR
from common.results.tables import gap_table, merge_rows, write_csv

from .train import encoder_run_dir

FIELDS = ["dataset", "encoder", "model", "split", "n_points", "encoder_params", "logpx", "logpx_sem",
          "L_qstar", "L_qstar_sem", "L_q", "L_q_sem", "approx_gap", "approx_gap_sem",
          "amort_gap", "amort_gap_sem", "total_gap", "total_gap_sem", "ais", "iwae_q",
          "iwae_qstar", "L_qstar_ffg", "failures"] + PAPER_RULE_FIELDS + CERTIFICATE_FIELDS + \
    COMPUTED_FIELDS
NAMES = {f: c.display for f, c in FAMILIES.items()}
STEMS = {"small_encoder": "table", "linear_encoder": "table_linear"}
TRUNKS = {"small_encoder": "one hidden layer of 100", "linear_encoder": "linear (no hidden layer)"}


def main(argv=None):
    exp = Experiment("exp53", argv, __doc__)
    cfg = exp.config
    models, dirs = {}, {}
    for encoder in cfg.encoders:
        for family in cfg.families:
            name = f"{encoder}/{family}"
            dirs[name] = encoder_run_dir(exp, encoder, family)
            models[name] = exp.load(dirs[name], cfg.model_config(family, encoder),
                                    cfg.train_config(freeze_decoder=True),
                                    data=exp.data_identity(cfg.dataset))
    rows = []
    for split in cfg.eval_splits:
        x = exp.data(cfg.dataset, split, cfg.n_points)
        print(f"[exp53] {split}: {len(x)} points, encoders {', '.join(models)}", flush=True)
        summaries = evaluate_decoder_family(
            models, x, cfg, exp.seed, {n: dirs[n] / f"eval_{split}" for n in models},
            {"epochs": {n: cfg.epochs for n in dirs}, "split": split}, shared_qstar=True)
        for name, summary in summaries.items():
            encoder, family = name.split("/")
            rows.append({"dataset": cfg.dataset, "encoder": encoder, "model": family,
                         "split": split, "encoder_params": models[name].parameter_counts()["encoder"],
                         **summary})
    # a subset run (--families ffg) updates its rows and keeps the others of this config
    rows = merge_rows(exp.out / "gaps.csv", rows, ("dataset", "encoder", "model", "split"),
                      exp.config_id(("families", "encoders", "eval_splits")))
    write_csv(exp.out / "gaps.csv", rows, FIELDS)
    for encoder, stem in STEMS.items():
        for split, suffix in (("test", ""), ("train", "_train")):
            sel = [r for r in rows if r["split"] == split and r["encoder"] == encoder]
            columns = {f"{NAMES[r['model']]} ({int(r['encoder_params']):,} enc. params)": r
                       for r in sel}
            paper = {label: TABLE4_LINEAR[r["model"]] for label, r in columns.items()
                     if encoder == "linear_encoder"}
            if columns:
                gap_table(exp.out / f"{stem}{suffix}", columns,
                          f"Frozen {cfg.dataset} decoder, encoders with {TRUNKS[encoder]}: gaps "
                          f"(nats) on {cfg.n_points} {split} points, mean ± s.e.m. (preset "
                          f"{exp.preset}, seed {exp.seed}); log p̂ shared by all encoders" +
                          ("; paper rows: Table 4 (its FFG, AF, Flow against our FFG, Flow, "
                           "CFlow)" if paper else ""), paper=paper)
    test = [r for r in rows if r["split"] == "test"]
    write_claims(exp.out, claims_of(test) + brief.exp53_claims(test, TRUNKS))
    exp.write_provenance()
    print(f"[exp53] wrote {exp.out / 'gaps.csv'}")


TRUNKS = {"small_encoder": "one-hidden-layer", "linear_encoder": "linear"}


def claims_of(rows: list) -> list:
    """On one decoder the family alone changes the gaps: per encoder trunk, each flow family's
    amortization gap below FFG's (the paper's Table 4 for linear encoders)."""
    out = []
    for encoder, trunk in TRUNKS.items():
        by_model = {r["model"]: r for r in rows if r["encoder"] == encoder}
        for model in (m for m in by_model if m != GAUSSIAN):
            if GAUSSIAN in by_model:
                paper = TABLE4_LINEAR[GAUSSIAN]["amort_gap"] - TABLE4_LINEAR[model]["amort_gap"] \
                    if encoder == "linear_encoder" and model in TABLE4_LINEAR else None
                out.append(compare_rows(
                    "exp53 Table 4" if paper is not None else "exp53 §5.3",
                    f"on a frozen decoder, with {trunk} encoders, a flow family "
                    f"cuts the amortization gap", f"{NAMES[model]} vs FFG", by_model[GAUSSIAN],
                    by_model[model], "amort_gap", paper=paper))
    return out


if __name__ == "__main__":
    guarded(main)
