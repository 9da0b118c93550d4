"""`python -m common.speed.steptime NAME CMD...`: run CMD, append its wall time to
RESULTS_DIR/step_times.json.

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
from pathlib import Path

from ..config import UserError, atomic_write_text, guarded, portable, results_dir


def main() -> int:
    if len(sys.argv) < 3:
        print("usage: python -m common.speed.steptime NAME CMD...", file=sys.stderr)
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
        except (OSError, UserError) as err:   # timing is informative: never fails its step
            print(f"warning: step time not recorded in {path} "
                  f"({getattr(err, 'strerror', None) or err})", file=sys.stderr)
    return code


def dry_run(makeflags: str) -> bool:
    """`make -n` still runs a recipe line that calls $(MAKE) (make all's does, through this
    script): its seconds are no step's time. Make's one-letter flags are MAKEFLAGS' first word."""
    first = makeflags.split()[0] if makeflags.split() else ""
    return not first.startswith("-") and "n" in first


def valid_times(times) -> bool:
    """step_times.json's schema: {step: [{"wall_s": number, "finished": text, ...}, ...]}."""
    return isinstance(times, dict) and all(
        isinstance(runs, list) and all(
            isinstance(r, dict) and isinstance(r.get("wall_s"), (int, float)) and
            not isinstance(r.get("wall_s"), bool) and isinstance(r.get("finished"), str)
            for r in runs) for runs in times.values())


def read_times(path: Path) -> dict:
    """step_times.json, or {} when absent; a file that is not JSON or of another shape is
    informative only: set aside as step_times.json.corrupt with a one-line warning, never a
    traceback."""
    path = Path(path)
    if not path.exists():
        return {}
    try:
        times = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError, OSError):
        times = None
    if valid_times(times):
        return times
    try:
        os.replace(path, path.with_name(path.name + ".corrupt"))
        aside = f"set aside as {path.name}.corrupt"
    except OSError:
        aside = "left in place"
    print(f"warning: {path} is unreadable (not a table of step times); {aside}",
          file=sys.stderr)
    return {}


def _record(path, name: str, cmd: list, wall_s: float) -> None:
    """Append one run of step `name` to step_times.json (read, add, atomic rewrite)."""
    times = read_times(path)
    runs = times.get(name, [])
    runs.append({"wall_s": round(wall_s, 1), "command": portable(" ".join(cmd)),
                 "finished": time.strftime("%Y-%m-%d %H:%M:%S")})
    times[name] = runs
    try:
        atomic_write_text(path, json.dumps(times, indent=2, sort_keys=True) + "\n")
    except (OSError, UserError) as err:   # timing is informative: it never fails its step
        print(f"warning: step time not recorded in {path} "
              f"({getattr(err, 'strerror', None) or err})", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(guarded(main))
