"""gradients.png / .pdf: raw norms, normalised norms and their ratio over epochs, one curve per
model; a moving average is applied per model (never across models)."""
import matplotlib.pyplot as plt
import numpy as np
import seaborn as sns

from common.config import guarded
from common.runs.experiment import Experiment, read_metrics
from exp55_dynamics.train import dynamics_run_dir
from common.results.plots import save



def smooth(values, window):
    """Moving average over one model's own epochs (edges use the available points)."""
    v = np.asarray(values, dtype=float)
    if window <= 1 or len(v) < 3:
        return v
    kernel = np.ones(window)
    return np.convolve(v, kernel, "same") / np.convolve(np.ones_like(v), kernel, "same")


def main(argv=None):
    exp = Experiment("exp_gradients", argv, __doc__)
    sns.set_theme(style="whitegrid")
    fig, axes = plt.subplots(1, 3, figsize=(14, 3.8))
    colors = sns.color_palette("tab10")
    for c, name in enumerate(exp.config.models):
        m = read_metrics(dynamics_run_dir(exp, name), exp.config.epochs, "exp_gradients")
        ep = [int(r["epoch"]) for r in m]
        w = max(1, len(m) // 10)
        g = lambda k: smooth([float(r[k]) for r in m], w)  # noqa: E731
        axes[0].plot(ep, g("enc_grad_norm"), "-", color=colors[c], label=f"{name} enc")
        axes[0].plot(ep, g("dec_grad_norm"), "--", color=colors[c], label=f"{name} dec")
        axes[1].plot(ep, g("enc_grad_norm_normalised"), "-", color=colors[c])
        axes[1].plot(ep, g("dec_grad_norm_normalised"), "--", color=colors[c])
        axes[2].plot(ep, g("grad_ratio_normalised"), "-", color=colors[c], label=name)
    axes[0].set_title("global L2 norm (solid: encoder, dashed: decoder)", fontsize=10)
    axes[1].set_title("norm / sqrt(number of parameters)", fontsize=10)
    axes[2].set_title("ratio encoder / decoder (normalised)", fontsize=10)
    axes[2].axhline(1.0, color="black", lw=0.8)
    for ax in axes:
        ax.set_xlabel("epoch")
        ax.set_yscale("log")
    axes[2].legend(fontsize=8)
    save(fig, exp.out / "gradients")
    print(f"[exp_gradients] wrote {exp.out / 'gradients.png'}")


if __name__ == "__main__":
    guarded(main)
