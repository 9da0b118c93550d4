"""What the evaluation's point chunk costs: one quick evaluation (no BDMC) of the same model on the
same MNIST test points at several point_chunk values, wall time and mean L[q*] of each. The
model is trained here first (`epochs`, default 10), so run it with the machine to itself.

    .venv/bin/python tools/chunk_cost.py flow 200 200,100,50 10

Measured 2026-12-06 (make bench unit 1.88 s): 112 s in one chunk of 200, 122 s in two, 156 s
and 198 s in four (two runs), mean L[q*] the same to 0.005 nats: hence point_chunk 250 at quick
and paper (common/runs/presets.py)."""
import dataclasses
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from common.data import load_dataset  # noqa: E402
from common.models.vae import VAE, model_config  # noqa: E402
from common.runs.experiment import evaluate_decoder_family  # noqa: E402
from common.runs.train import TrainConfig, train  # noqa: E402
from exp52_testgap.config import PRESETS  # noqa: E402


def main(family="flow", n="200", chunks="200,100,50", epochs="10"):
    torch.manual_seed(0)
    model = VAE(model_config(family=family))
    tmp = Path(tempfile.mkdtemp())
    train(model, load_dataset("mnist", "train", "cpu"), load_dataset("mnist", "valid", "cpu"),
          TrainConfig(epochs=int(epochs), n_valid_monitor=0), tmp / "train", 0)
    x = load_dataset("mnist", "test", "cpu")[:int(n)]
    for chunk in (int(c) for c in chunks.split(",")):
        cfg = dataclasses.replace(PRESETS["quick"], point_chunk=chunk)
        t0 = time.time()
        s = evaluate_decoder_family({"m": model}, x, cfg, 0, {"m": tmp / f"eval_{chunk}"},
                                    with_bdmc=False)["m"]
        print(f"RESULT {family} n={n} chunk={chunk}: {time.time() - t0:.1f}s "
              f"L[q*] {s['L_qstar']:.3f}", flush=True)


if __name__ == "__main__":
    main(*sys.argv[1:])
