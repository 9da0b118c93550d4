"""At every kept checkpoint of every exp55 model: log p^, L[q*], L[q] and the gaps on a fixed
training subset and a fixed validation subset of the same size. Writes gaps_over_epochs.csv and
a table of the final-epoch gaps."""
from common.results import brief
from common.results.claims import compare_rows, write_claims
from common.config import guarded
from common.runs.experiment import Experiment, evaluate_one
from common.runs.shards import my_order
from common.inference.gaps import CERTIFICATE_FIELDS, COMPUTED_FIELDS, PAPER_RULE_FIELDS
from common.results.tables import gap_table, merge_rows, write_csv

from .config import MODELS
from .train import dynamics_run_dir

FIELDS = ["model", "split", "epoch", "n_points", "logpx", "logpx_sem", "L_qstar", "L_qstar_sem",
          "L_q", "L_q_sem", "approx_gap", "approx_gap_sem", "amort_gap", "amort_gap_sem",
          "total_gap", "total_gap_sem", "ais", "iwae_q", "iwae_qstar",
          "failures"] + PAPER_RULE_FIELDS + CERTIFICATE_FIELDS + \
    COMPUTED_FIELDS
SPLITS = ("train", "valid")


def main(argv=None):
    exp = Experiment("exp55", argv, __doc__)
    cfg = exp.config
    points = {s: exp.data(cfg.dataset, s, cfg.n_points) for s in SPLITS}
    units = [(name, epoch, split) for name in cfg.models for epoch in cfg.checkpoint_epochs()
             for split in SPLITS]
    summaries, loaded, model = {}, None, None
    # each unit is one chunk of points: shards (SHARDS=N) start on different units (my_order)
    for name, epoch, split in my_order(units):
        run = dynamics_run_dir(exp, name)
        if loaded != (name, epoch):   # a checkpoint's splits follow each other: loaded once
            family, architecture = MODELS[name]
            model = exp.load(run, cfg.model_config(family, architecture),
                             cfg.train_config(checkpoint_epochs=cfg.checkpoint_epochs()),
                             checkpoint=f"epoch_{epoch}.pt", data=exp.data_identity(cfg.dataset))
            loaded = (name, epoch)
        print(f"[exp55] {name} epoch {epoch} {split}", flush=True)
        summaries[(name, epoch, split)] = evaluate_one(
            model, points[split], cfg, exp.seed, run / f"eval_e{epoch}_{split}",
            {"epoch": epoch, "split": split})
    rows = [{"model": name, "split": split, "epoch": epoch, **summaries[(name, epoch, split)]}
            for name, epoch, split in units]
    # a subset run (--families ffg) updates its rows and keeps the others of this config
    rows = merge_rows(exp.out / "gaps_over_epochs.csv", rows, ("model", "split", "epoch"),
                      exp.config_id(("models",)))
    write_csv(exp.out / "gaps_over_epochs.csv", rows, FIELDS)
    last = cfg.checkpoint_epochs()[-1]
    columns = {f"{r['model']} ({r['split']})": r for r in rows if r["epoch"] == last}
    gap_table(exp.out / "table", columns,
              f"{cfg.dataset}, epoch {last}: gaps (nats) on {cfg.n_points} train / valid points, "
              f"mean ± s.e.m. (preset {exp.preset}, seed {exp.seed})")
    final = {(r["model"], r["split"]): r for r in rows if int(r["epoch"]) == last}
    # the claim's text names no epoch: common/reporting/ladder.py joins a claim's lengths by
    # its text
    write_claims(exp.out, [compare_rows(
        "exp55 §5.5", "at the last epoch the amortization gap is larger on validation than on "
        "training data (the encoder overfits)", model, final[(model, "valid")],
        final[(model, "train")], "amort_gap") for model in cfg.models
        if (model, "valid") in final and (model, "train") in final] + brief.exp55_claims(final))
    exp.write_provenance()
    print(f"[exp55] wrote {exp.out / 'gaps_over_epochs.csv'}")


if __name__ == "__main__":
    guarded(main)
