"""Gaps of every small encoder against the one frozen decoder, on the same points.

log p^ (AIS + every encoder's IWAE candidates) is computed once for the decoder and reused for
every encoder, so approximation gaps are comparable. Writes gaps.csv and table.tex / table.md.
"""
from common.experiment import Experiment, evaluate_decoder_family, trained_epochs
from common.gaps import CERTIFICATE_FIELDS
from common.tables import gap_table, write_csv
from common.train import load_model

from .train import FOLDER, encoder_run_dir

FIELDS = ["dataset", "model", "split", "n_points", "encoder_params", "logpx", "logpx_sem",
          "L_qstar", "L_qstar_sem", "L_q", "L_q_sem", "approx_gap", "approx_gap_sem",
          "amort_gap", "amort_gap_sem", "total_gap", "total_gap_sem", "ais", "iwae_q",
          "iwae_qstar", "L_qstar_ffg", "failures"] + CERTIFICATE_FIELDS
NAMES = {"ffg": "FFG", "flow": "Flow", "cflow": "CFlow"}


def main(argv=None):
    exp = Experiment("exp53", FOLDER, argv, __doc__)
    cfg = exp.config
    models, dirs = {}, {}
    for family in cfg.families:
        path = encoder_run_dir(exp, family)
        if not (path / "last.pt").exists():
            raise SystemExit(f"error: {path}/last.pt is missing; run `make exp53` first")
        models[family], dirs[family] = load_model(path / "last.pt", exp.device), path
    rows = []
    for split in cfg.eval_splits:
        x = exp.data(cfg.dataset, split, cfg.n_points)
        print(f"[exp53] {split}: {len(x)} points, encoders {', '.join(models)}", flush=True)
        summaries = evaluate_decoder_family(
            models, x, cfg, exp.seed, {f: dirs[f] / f"eval_{split}" for f in models},
            {"epochs": {f: trained_epochs(d) for f, d in dirs.items()}, "split": split})
        for family, summary in summaries.items():
            rows.append({"dataset": cfg.dataset, "model": family, "split": split,
                         "encoder_params": models[family].parameter_counts()["encoder"],
                         **summary})
    write_csv(exp.out / "gaps.csv", rows, FIELDS)
    for split, stem in (("test", "table"), ("train", "table_train")):
        columns = {f"{NAMES[r['model']]} ({r['encoder_params']:,} enc. params)": r
                   for r in rows if r["split"] == split}
        if columns:
            gap_table(exp.out / stem, columns,
                      f"Frozen {cfg.dataset} decoder, {cfg.encoder} per family: gaps (nats) on "
                      f"{cfg.n_points} {split} points, mean ± s.e.m. (preset {exp.preset}, "
                      f"seed {exp.seed}); log p̂ shared by all encoders")
    exp.write_provenance()
    print(f"[exp53] wrote {exp.out / 'gaps.csv'}")


if __name__ == "__main__":
    main()
