"""What machine ran a timed command, and how fast it is at this project's work.

`python -m common.speed.machine` (`make all` runs it first, while nothing else runs) writes
RESULTS_DIR/machine.json: the CPU, its cores, and the time of one bare training step of quick's
MNIST ffg VAE (batch 100, Adam: the step of `common/speed/bench.py`'s bare loop) on one torch thread
and on every core, the median of STEPS steps after WARMUP. TIMES.md quotes it beside `make all`'s
time. This project's session machines differed 2.4x at its training (exp52's base model, 30
epochs on one thread: 65 s on one, 158 s on another) while their plain matmul rate differed less
than 2x (215 against 119 GFLOP/s), so a `make all` time is comparable only between machines of a
similar step time.
"""
import json
import os
import platform
import statistics
import sys
import time

from ..config import UserError, atomic_write_text, results_dir

WARMUP = 20   # steps before timing (allocator, thread pool)
STEPS = 60    # timed steps; their median is reported
BATCH = 100   # quick's batch size


def bare_step(model, opt, xb):
    """One step of the simplest correct PyTorch loop: the negative ELBO (one sample), Adam."""
    z, log_q = model.encoder.sample_and_log_prob(xb, 1)
    loss = -(model.log_joint(xb, z) - log_q).mean()
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def step_ms(threads: int, seed: int = 0) -> float:
    """Median wall time (ms) of one bare ffg training step on `threads` torch threads."""
    import torch

    from ..models.families import GAUSSIAN
    from ..models.vae import VAE, model_config
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        gen = torch.Generator().manual_seed(seed)
        torch.manual_seed(seed)
        model = VAE(model_config(family=GAUSSIAN))
        x = (torch.rand(BATCH, 784, generator=gen) < 0.3).float()
        opt = torch.optim.Adam(model.parameters(), lr=1e-3, eps=1e-4)
        times = []
        for i in range(WARMUP + STEPS):
            t0 = time.perf_counter()
            bare_step(model, opt, x)
            if i >= WARMUP:
                times.append(time.perf_counter() - t0)
        return 1000 * statistics.median(times)
    finally:
        torch.set_num_threads(before)


def measure() -> dict:
    cores = os.cpu_count() or 1
    return {"cpu": cpu_model(), "cores": cores, "ffg_step_ms_1_thread": round(step_ms(1), 3),
            f"ffg_step_ms_{cores}_threads": round(step_ms(cores), 3),
            "measured": time.strftime("%Y-%m-%d %H:%M:%S")}


def describe(machine: dict) -> str:
    """One line for TIMES.md."""
    if not isinstance(machine, dict) or "ffg_step_ms_1_thread" not in machine:
        return ""
    cores = machine.get("cores", "?")
    every = machine.get(f"ffg_step_ms_{cores}_threads")
    return (f"Machine: {machine.get('cpu', 'unknown')}, {cores} cores; one bare training step of "
            f"quick's MNIST ffg VAE (batch {BATCH}) {machine['ffg_step_ms_1_thread']:.2f} ms on one "
            f"thread" + (f", {every:.2f} ms on {cores}" if isinstance(every, (int, float)) else "")
            + f" (measured {machine.get('measured', '?')}, before the run; "
              f"`common/speed/machine.py`).")


def main(argv=None) -> int:
    if argv is None:
        argv = sys.argv[1:]
    if argv:
        print("usage: python -m common.speed.machine (writes RESULTS_DIR/machine.json)",
              file=sys.stderr)
        return 2
    machine = measure()
    try:
        path = results_dir() / "machine.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, json.dumps(machine, indent=2) + "\n")
    except (OSError, UserError) as err:   # informative: it never stops a run
        print(f"warning: machine.json not written ({getattr(err, 'strerror', None) or err})",
              file=sys.stderr)
    print(f"[machine] {describe(machine)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
