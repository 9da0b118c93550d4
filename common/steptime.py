"""`python -m common.steptime NAME CMD...`: run CMD, append its wall time to RESULTS_DIR/step_times.json.

Every run of a step is kept (a re-run that finds its work done is fast, and must not hide the
time of the run that did the work). The report lists them. The command's exit code is passed
through; a failed step records nothing.
"""
import fcntl
import json
import os
import subprocess
import sys
import time

from .config import atomic_write_text, read_json_or, results_dir


def main() -> int:
    if len(sys.argv) < 3:
        print("usage: python -m common.steptime NAME CMD...", file=sys.stderr)
        return 2
    name, cmd = sys.argv[1], sys.argv[2:]
    t0 = time.time()
    code = subprocess.call(cmd, close_fds=False)   # keeps make's jobserver pipe (make -j N all)
    if code == 0 and not dry_run(os.environ.get("MAKEFLAGS", "")):
        path = results_dir() / "step_times.json"
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(path.with_name(".step_times.lock"), "a") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX)   # `make -j`: steps ending together keep all
                _record(path, name, cmd, time.time() - t0)
        except OSError as err:  # timing is informative: it never fails the step it timed
            print(f"warning: step time not recorded in {path} ({err.strerror})", file=sys.stderr)
    return code


def dry_run(makeflags: str) -> bool:
    """`make -n` still runs a recipe line that calls $(MAKE) (make all's does, through this
    script): its seconds are no step's time. Make's one-letter flags are MAKEFLAGS' first word."""
    first = makeflags.split()[0] if makeflags.split() else ""
    return not first.startswith("-") and "n" in first


def _record(path, name: str, cmd: list, wall_s: float) -> None:
    """Append one run of step `name` to step_times.json (read, add, atomic rewrite)."""
    times = read_json_or(path, {}, "starting it afresh (the old file is kept as .corrupt)")
    if not isinstance(times, dict):
        times = {}
    if path.exists() and not times:
        try:
            os.replace(path, path.with_name(path.name + ".corrupt"))
        except OSError:
            pass
    runs = times.get(name, [])
    runs = runs if isinstance(runs, list) else [runs]
    runs.append({"wall_s": round(wall_s, 1), "command": " ".join(cmd),
                 "finished": time.strftime("%Y-%m-%d %H:%M:%S")})
    times[name] = runs
    try:
        atomic_write_text(path, json.dumps(times, indent=2, sort_keys=True) + "\n")
    except OSError as err:  # timing is informative: it never fails the step it timed
        print(f"warning: step time not recorded in {path} ({err.strerror})", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
