"""Does TF32 change our estimates? (issue 16: TF32 only if it changes log p^ by < 0.01 nat)

`python tools/tf32_check.py --device cuda`: the IWAE bound (k samples) of a trained MNIST ffg
model on fixed test points, with float32 and with TF32 matmuls, from the same seeded samples;
prints and writes RESULTS_DIR/bench/tf32.json: mean and largest per-point change, and the time
of each. On a CPU TF32 does not exist and both runs are float32 (the script still runs: a check
of the script itself).
"""
import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from common.speed.bench import _timed, trained_mnist_model  # noqa: E402
from common.config import resolve_device, results_dir, write_json  # noqa: E402
from common.data import load_dataset  # noqa: E402

TARGET_NATS = 0.01


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--points", type=int, default=500)
    parser.add_argument("--k", type=int, default=1000)
    args = parser.parse_args(argv)
    device = resolve_device(args.device)
    model, source = trained_mnist_model("quick", 0, device)
    model.eval()
    x = load_dataset("mnist", "test", device)[:args.points]
    values, seconds = {}, {}
    for tf32 in (False, True):
        torch.backends.cuda.matmul.allow_tf32 = tf32
        torch.manual_seed(0)
        out = {}
        seconds[tf32] = _timed(lambda: out.update(v=model.iwae(x, args.k)), device)
        values[tf32] = out["v"].double().cpu()
    torch.backends.cuda.matmul.allow_tf32 = False
    change = values[True] - values[False]
    result = {"device": str(device), "model": source, "points": len(x), "k": args.k,
              "mean_change_nats": change.mean().item(),
              "max_abs_change_nats": change.abs().max().item(),
              "seconds_float32": seconds[False], "seconds_tf32": seconds[True],
              "within_target": abs(change.mean().item()) < TARGET_NATS}
    write_json(results_dir() / "bench" / "tf32.json", result)
    print(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
