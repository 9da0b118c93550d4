"""summary.csv and table.tex / table.md: per model, the mean normalised encoder/decoder gradient
ratio over the last quarter of training, with its spread (std over those epochs); claims.json: the
brief's findings on them (common/results/brief.py)."""
import math

from common.results import brief
from common.results.claims import write_claims
from common.config import guarded
from common.runs.experiment import Experiment, read_metrics
from exp55_dynamics.train import dynamics_run_dir
from common.results.tables import write_csv, write_tables


def last_quarter_stats(values):
    tail = values[-max(min(2, len(values)), len(values) // 4):]   # 2 at least: an s.e.
    mean = sum(tail) / len(tail)
    std = math.sqrt(sum((v - mean) ** 2 for v in tail) / max(1, len(tail) - 1))
    return mean, std, len(tail)


def main(argv=None):
    exp = Experiment("exp_gradients", argv, __doc__)
    rows = []
    for name in exp.config.models:
        metrics = read_metrics(dynamics_run_dir(exp, name), exp.config.epochs, "exp_gradients")
        row = {"model": name, "epochs": len(metrics), "enc_params": metrics[0]["enc_params"],
               "dec_params": metrics[0]["dec_params"]}
        for key in ("grad_ratio_normalised", "enc_grad_norm", "dec_grad_norm",
                    "enc_grad_norm_normalised", "dec_grad_norm_normalised"):
            mean, std, n = last_quarter_stats([float(m[key]) for m in metrics])
            row[key], row[f"{key}_std"], row["last_quarter_epochs"] = mean, std, n
        rows.append(row)
    write_csv(exp.out / "summary.csv", rows)
    headers = ["model", "enc params", "dec params", "ratio (normalised)", "|g_enc|", "|g_dec|",
               "|g_enc|/sqrt(n)", "|g_dec|/sqrt(n)"]
    table = [[r["model"], f"{int(r['enc_params']):,}", f"{int(r['dec_params']):,}",
              f"{r['grad_ratio_normalised']:.3f} ± {r['grad_ratio_normalised_std']:.3f}",
              f"{r['enc_grad_norm']:.2f}", f"{r['dec_grad_norm']:.2f}",
              f"{r['enc_grad_norm_normalised']:.2e}", f"{r['dec_grad_norm_normalised']:.2e}"]
             for r in rows]
    write_tables(exp.out / "table", headers, table,
                 caption=f"Gradient norms averaged over the last quarter of training "
                         f"({rows[0]['last_quarter_epochs']} epochs; ± = std over those epochs); "
                         f"ratio = (|g_enc|/sqrt(n_enc)) / (|g_dec|/sqrt(n_dec)). Preset "
                         f"{exp.preset}, seed {exp.seed}, {exp.config.dataset}.")
    write_claims(exp.out, brief.gradient_claims(rows))
    exp.write_provenance()
    print(f"[exp_gradients] wrote {exp.out / 'summary.csv'}")


if __name__ == "__main__":
    guarded(main)
