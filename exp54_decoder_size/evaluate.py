"""Gaps of the FFG VAEs with decoders of 0, 2 and 4 hidden layers (Table 5), each decoder with
its own log p^, on fixed test points. Writes gaps.csv and table.md / table.tex with the paper's
Table 5 beside ours."""
from common.results.claims import compare_rows, write_claims
from common.config import guarded
from common.runs.experiment import Experiment, evaluate_one
from common.inference.gaps import CERTIFICATE_FIELDS, COMPUTED_FIELDS, PAPER_RULE_FIELDS
from common.paper import TABLE5
from common.results.tables import gap_table, merge_rows, write_csv

from .train import model_config, run_dir

FIELDS = ["dataset", "decoder_layers", "split", "n_points", "logpx", "logpx_sem", "L_qstar",
          "L_qstar_sem", "L_q", "L_q_sem", "approx_gap", "approx_gap_sem", "amort_gap",
          "amort_gap_sem", "total_gap", "total_gap_sem", "ais", "iwae_q", "iwae_qstar",
          "decoder_params", "failures"] + PAPER_RULE_FIELDS + CERTIFICATE_FIELDS + \
    COMPUTED_FIELDS


def label(layers) -> str:
    return f"{layers} hidden layer{'s' if int(layers) != 1 else ''}"


def main(argv=None):
    exp = Experiment("exp54", argv, __doc__)
    cfg = exp.config
    rows = []
    for layers in cfg.decoder_layers:
        path = run_dir(exp, layers)
        model = exp.load(path, model_config(cfg, layers), cfg.train_config(),
                         data=exp.data_identity(cfg.dataset))
        for split in cfg.eval_splits:
            print(f"[exp54] decoder with {layers} hidden layers, {split}", flush=True)
            x = exp.data(cfg.dataset, split, cfg.n_points)
            summary = evaluate_one(model, x, cfg, exp.seed,
                                   exp.out / "evals" / f"{cfg.dataset}_dec{layers}_{split}",
                                   {"epoch": cfg.epochs, "split": split})
            rows.append({"dataset": cfg.dataset, "decoder_layers": layers, "split": split,
                         "decoder_params": model.parameter_counts()["decoder"], **summary})
    rows = merge_rows(exp.out / "gaps.csv", rows, ("dataset", "decoder_layers", "split"),
                      exp.config_id(("decoder_layers", "eval_splits")))
    write_csv(exp.out / "gaps.csv", rows, FIELDS)
    for split in dict.fromkeys(r["split"] for r in rows):
        sel = sorted((r for r in rows if r["split"] == split), key=lambda r: int(r["decoder_layers"]))
        columns = {f"{label(r['decoder_layers'])} ({int(r['decoder_params']):,})": r for r in sel}
        paper = {c: TABLE5[int(r["decoder_layers"])] for c, r in columns.items()
                 if int(r["decoder_layers"]) in TABLE5 and cfg.dataset == "mnist"}
        gap_table(exp.out / ("table" if split == "test" else f"table_{split}"), columns,
                  f"FFG VAEs on {cfg.dataset} by decoder depth (decoder parameters in brackets): "
                  f"gaps (nats) on {cfg.n_points} {split} points, mean ± s.e.m., each decoder "
                  f"with its own log p̂ (preset {exp.preset}, seed {exp.seed})" +
                  ("; paper rows: Table 5" if paper else ""), paper=paper)
    test = sorted((r for r in rows if r["split"] == "test"), key=lambda r: int(r["decoder_layers"]))
    write_claims(exp.out, [compare_rows(
        "exp54 Table 5", "a deeper decoder needs a less flexible approximation (smaller "
        "approximation gap)", f"{label(a['decoder_layers'])} vs {b['decoder_layers']}", a, b,
        "approx_gap", paper=TABLE5[int(a["decoder_layers"])]["approx_gap"] -
        TABLE5[int(b["decoder_layers"])]["approx_gap"]
        if {int(a["decoder_layers"]), int(b["decoder_layers"])} <= set(TABLE5) and
        cfg.dataset == "mnist" else None) for a, b in zip(test, test[1:])])
    exp.write_provenance()
    print(f"[exp54] wrote {exp.out / 'gaps.csv'}")


if __name__ == "__main__":
    guarded(main)
