"""Gaps of every exp52 model on fixed test points, and of Table 3's families (ffg, flow:
--train-split-families) on a training subset of the same size.

Writes gaps.csv (one row per dataset x model x split), table.tex / table.md (test split, the
paper's Table-2 layout) and table_train.md/.tex. Finished evaluations are read back, not redone.
"""
from common.results import brief
from common.results.claims import compare_rows, write_claims
from common.config import guarded
from common.runs.experiment import Experiment, evaluate_one, read_metrics
from common.inference.gaps import CERTIFICATE_FIELDS, COMPUTED_FIELDS, PAPER_RULE_FIELDS
from common.models.families import FAMILIES, GAUSSIAN
from common.paper import TABLE2, TABLE3
from common.results.tables import gap_table, merge_rows, write_csv

from .train import run_dir

FIELDS = ["dataset", "model", "split", "n_points", "logpx", "logpx_sem", "L_qstar",
          "L_qstar_sem", "L_q", "L_q_sem", "approx_gap", "approx_gap_sem", "amort_gap",
          "amort_gap_sem", "total_gap", "total_gap_sem", "ais", "iwae_q", "iwae_qstar",
          "L_qstar_ffg", "encoder_params", "decoder_params", "failures"] + PAPER_RULE_FIELDS + CERTIFICATE_FIELDS + \
    COMPUTED_FIELDS
NAMES = {"mnist": "MNIST", "fashion": "Fashion", **{f: c.display for f, c in FAMILIES.items()}}


def main(argv=None):
    exp = Experiment("exp52", argv, __doc__)
    cfg = exp.config
    for dataset in cfg.datasets:   # every size checked before any evaluation
        for family in cfg.families:
            for split in cfg.eval_splits:
                exp.data(dataset, split, cfg.points(split, family))
    rows = []
    for dataset in cfg.datasets:
        for family in cfg.families:
            path = run_dir(exp, dataset, family)
            model = exp.load(path, cfg.model_config(family), cfg.train_config(),
                             data=exp.data_identity(dataset))
            counts = model.parameter_counts()
            for split in cfg.eval_splits:
                if split == "train" and family not in cfg.train_split_families:
                    continue
                n = cfg.points(split, family)
                print(f"[exp52] {dataset} {family} {split}: {n or 'all'} points", flush=True)
                x = exp.data(dataset, split, n)
                summary = evaluate_one(model, x, cfg, exp.seed, path / f"eval_{split}",
                                       {"epoch": cfg.epochs, "split": split})
                rows.append({"dataset": dataset, "model": family, "split": split,
                             "encoder_params": counts["encoder"],
                             "decoder_params": counts["decoder"], **summary})
    # a subset run (--families ffg) updates its rows and keeps the others of this config
    rows = merge_rows(exp.out / "gaps.csv", rows, ("dataset", "model", "split"),
                      exp.config_id(("datasets", "families", "eval_splits",
                                                   "train_split_families")))
    write_csv(exp.out / "gaps.csv", rows, FIELDS)
    for split, stem in (("test", "table"), ("train", "table_train")):
        selected = [r for r in rows if r["split"] == split]
        columns = {f"{NAMES[r['dataset']]} {NAMES[r['model']]}": r for r in selected}
        # the paper's Table 2 is on test points, Table 3 (the variants) on training points; its
        # flow is our AF
        if split == "test":
            table, key = TABLE2, lambda r: (r["dataset"], r["model"])
        else:
            table, key = TABLE3, lambda r: (cfg.variant, r["dataset"], r["model"])
        paper = {f"{NAMES[r['dataset']]} {NAMES[r['model']]}": table[key(r)]
                 for r in selected if key(r) in table and cfg.variant in ("standard", key(r)[0])}
        if not columns:   # no row of this split in this config: no table left from another
            for ext in (".md", ".tex"):
                (exp.out / stem).with_suffix(ext).unlink(missing_ok=True)
            continue
        n = sorted({int(float(r["n_points"])) for r in selected})   # the points evaluated
        gap_table(exp.out / stem, columns,
                  f"Inference gaps (nats) on {'/'.join(map(str, n))} {split} points, mean ± "
                  f"s.e.m. (preset {exp.preset}, seed {exp.seed})" +
                  (f"; variant {cfg.variant}" if cfg.variant != "standard" else "") +
                  (f"; paper rows: Table {2 if table is TABLE2 else 3} of Cremer et al. "
                   f"(2018)" if paper else ""), paper=paper, extra=("L_qstar_ffg",))
    if cfg.variant == "standard":
        test = [r for r in rows if r["split"] == "test"]
        write_claims(exp.out, claims_of(test) + brief.exp52_claims(test, training_spreads(exp)))
    exp.write_provenance()
    print(f"[exp52] wrote {exp.out / 'gaps.csv'}")


def training_spreads(exp) -> dict:
    """{(dataset, flow family): the spread of its validation ELBO's epoch-to-epoch changes}
    (common/brief.epoch_change_spread) of the flows' training runs: the brief's stability."""
    out = {}
    for dataset in exp.config.datasets:
        for family in (f for f in exp.config.families if f in brief.FLOWS):
            metrics = read_metrics(run_dir(exp, dataset, family), exp.config.epochs, "exp52")
            spread = brief.epoch_change_spread([m["valid_elbo"] for m in metrics])
            if spread is not None:
                out[(dataset, family)] = spread
    return out


CLAIMS = (("flows reduce the approximation gap", "approx_gap"),   # (claim, gap: FFG's minus
          ("flows reduce the amortization gap", "amort_gap"),     # the flow model's)
          ("flows reduce the total gap", "total_gap"))


def claims_of(rows: list) -> list:
    """The §5.2 claims on the test split, per data set, with the paper's Table-2 difference."""
    out = []
    for dataset in dict.fromkeys(r["dataset"] for r in rows):
        by_model = {r["model"]: r for r in rows if r["dataset"] == dataset}
        if GAUSSIAN not in by_model:
            continue
        ffg, paper_ffg = by_model[GAUSSIAN], TABLE2.get((dataset, GAUSSIAN))
        out.append(compare_rows(
            "exp52 §5.2", "FFG: the amortization gap exceeds the approximation gap",
            NAMES[dataset], ffg, ffg, "amort_gap", "approx_gap",
            paper_ffg and paper_ffg["amort_gap"] - paper_ffg["approx_gap"]))
        for model in (m for m in by_model if m != GAUSSIAN):
            paper_model = TABLE2.get((dataset, model))
            for text, field in CLAIMS if model in by_model else ():
                out.append(compare_rows(
                    "exp52 §5.2", text, f"{NAMES[dataset]} {NAMES[model]} vs FFG", ffg,
                    by_model[model], field,
                    paper=paper_ffg[field] - paper_model[field] if paper_ffg and paper_model
                    else None))
    return out


if __name__ == "__main__":
    guarded(main)
