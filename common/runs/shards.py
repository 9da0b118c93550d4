"""Evaluation sharded by points: several processes share one evaluation's chunks of points.

An evaluation's points are cut into fixed chunks of `point_chunk` (common/inference/gaps.py:
chunk_starts), and every random draw of a chunk is keyed to the chunk (seed + its first point),
never to the process. So a chunk gives the same bits whichever process computes it, and an
evaluation can be spread over any number of processes without changing a result:

    computed_chunks(folder, key, starts, compute)

claims each chunk that no other process holds (a lock per chunk file), computes it and writes it
(atomically) as `chunk_<start>.pt`; a chunk another process is computing is waited for and read
back, and computed here if that process died (its lock is released with it). Every process then
holds all chunks and merges them into the same per_point.csv and summary. The shard count is not
part of a result's identity: `SHARDS=N` (make) starts N copies of a step (`launch`), each on
cores / N threads, and one process alone computes every chunk in turn.

Results are bit-identical between shard counts at one thread count (a different number of
threads may change the order of floating-point sums inside a matmul).
"""
import argparse
import contextlib
import fcntl
import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import torch

from ..config import atomic_file


def key_hash(key: dict) -> str:
    return hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:16]


def chunk_path(folder: Path, start: int) -> Path:
    return Path(folder) / f"chunk_{start:07d}.pt"


def read_chunk(path: Path, key: str, n: int):
    """The chunk at path if it was computed for this key and holds n points, else None."""
    if not path.exists():
        return None
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:   # a torn or foreign file is recomputed, and said so
        print(f"[shards] recomputing {path}: unreadable ({str(err)[:60]})", flush=True)
        return None
    if not isinstance(data, dict) or data.get("key") != key or data.get("n") != n:
        return None
    return data["result"]


def write_chunk(path: Path, key: str, n: int, result: dict) -> None:
    with atomic_file(path) as tmp:
        torch.save({"key": key, "n": n, "result": result}, tmp)


@contextlib.contextmanager
def file_lock(path: Path, blocking: bool = True):
    """An exclusive lock on path's `.lock` file while the block runs; yields False (and holds
    nothing) when not blocking and another process holds it. The lock goes with its process."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(Path(path).with_suffix(".lock"), "a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _locked_compute(folder: Path, key: str, start: int, n: int, compute, blocking: bool):
    """The chunk's result read back or computed under its lock; None when not blocking and
    another process holds the lock (it is computing the chunk)."""
    path = chunk_path(folder, start)
    with file_lock(path, blocking) as held:
        if not held:
            return None
        hit = read_chunk(path, key, n)
        if hit is not None:
            return hit
        result = compute(start)
        write_chunk(path, key, n, result)
        return result


def computed_chunks(folder: Path, key: dict, sizes: dict, compute, label: str = "") -> list:
    """[compute(start) for every chunk] in order of start, each computed once over all the
    processes that run this at the same time. sizes: {start: points in that chunk}. A chunk
    computed before for the same key is read back."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    key = key_hash(key)
    done, waiting = {}, []
    for start, n in sizes.items():
        result = read_chunk(chunk_path(folder, start), key, n)
        if result is None:
            result = _locked_compute(folder, key, start, n, compute, blocking=False)
        if result is None:
            waiting.append(start)
        else:
            done[start] = result
    if waiting:
        print(f"[shards] {label}waiting for {len(waiting)} chunk(s) another process is "
              f"computing", flush=True)
    for start in waiting:   # another process's: wait for it (or compute it, if that one died)
        done[start] = _locked_compute(folder, key, start, sizes[start], compute, blocking=True)
    return [done[s] for s in sizes]


def my_order(units: list) -> list:
    """The order in which this process visits a step's evaluation units (under `launch`,
    SHARD_INDEX k of SHARD_COUNT n in its environment): rotated to start at the k-th n-th of
    the list. Where each unit is a single chunk (exp55: one checkpoint and split of 100
    points), n shards in the same order would wait on one another's chunk instead of working;
    rotated, they start on different units, and each still visits every unit (computing it,
    or reading back what another process computed). Alone: the list as given."""
    k, n = int(os.environ.get("SHARD_INDEX", 0)), int(os.environ.get("SHARD_COUNT", 1))
    if n <= 1 or not units:
        return list(units)
    start = len(units) * k // n
    return list(units[start:]) + list(units[:start])


# ---- launching N copies of a step ----------------------------------------------------------

def threads_per_shard(shards: int, cores: int = None) -> int:
    """Threads for each of `shards` processes on this machine's cores (OMP_NUM_THREADS, or
    the core count): never more threads than cores in all."""
    cores = cores or int(os.environ.get("OMP_NUM_THREADS") or os.cpu_count() or 1)
    return max(1, cores // shards)


def launch(shards: int, command: list) -> int:
    """Run `command` as `shards` processes at once (each on threads_per_shard threads, its
    lines prefixed with [shard k/N]); the first failure stops the others. Returns the exit
    status: 0, or the first failing process's."""
    env = dict(os.environ, OMP_NUM_THREADS=str(threads_per_shard(shards)), PYTHONUNBUFFERED="1",
               SHARD_COUNT=str(shards))
    procs = [subprocess.Popen(command, env=dict(env, SHARD_INDEX=str(k)), stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, start_new_session=True)
             for k in range(shards)]

    def relay(k, proc):
        for line in proc.stdout:
            sys.stdout.write(f"[shard {k + 1}/{shards}] {line}")
            sys.stdout.flush()

    relays = [threading.Thread(target=relay, args=(k, p), daemon=True)
              for k, p in enumerate(procs)]
    for t in relays:
        t.start()
    status = 0
    try:
        while any(p.poll() is None for p in procs):
            failed = [p for p in procs if p.poll() not in (None, 0)]
            if failed:
                status = failed[0].returncode
                break
            time.sleep(0.2)
        status = status or next((p.returncode for p in procs if p.returncode), 0)
    except KeyboardInterrupt:
        status = 130
    finally:
        for p in procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
        for p in procs:
            p.wait()
        for t in relays:
            t.join(timeout=5)
    if status:
        print(f"[shards] a shard of `{' '.join(command)}` failed (exit {status}); the chunks "
              f"it finished are kept: rerun the same command to go on", file=sys.stderr)
    return status


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m common.runs.shards",
        description="Run one evaluation step as N processes that share its chunks of points "
                    "(make's SHARDS=N).")
    parser.add_argument("shards", type=int, help="processes (>= 1)")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- the step's command")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if args.shards < 1 or not command:
        parser.error("give SHARDS >= 1 and a command after --, e.g. "
                     "python -m common.runs.shards 2 -- python -m exp52_testgap.evaluate")
    if args.shards == 1:
        return subprocess.call(command)
    return launch(args.shards, command)


if __name__ == "__main__":
    sys.exit(main())
