"""`python -m common.steptime NAME CMD...`: run CMD, append its wall time to RESULTS_DIR/step_times.json.

Every run of a step is kept (a re-run that finds its work done is fast, and must not hide the
time of the run that did the work). The report lists them. The command's exit code is passed
through; a failed step records nothing.
"""
import json
import subprocess
import sys
import time

from .config import atomic_write_text, results_dir


def main() -> int:
    if len(sys.argv) < 3:
        print("usage: python -m common.steptime NAME CMD...", file=sys.stderr)
        return 2
    name, cmd = sys.argv[1], sys.argv[2:]
    t0 = time.time()
    code = subprocess.call(cmd)
    if code == 0:
        path = results_dir() / "step_times.json"
        times = json.loads(path.read_text()) if path.exists() else {}
        runs = times.get(name, [])
        runs = runs if isinstance(runs, list) else [runs]
        runs.append({"wall_s": round(time.time() - t0, 1), "command": " ".join(cmd),
                     "finished": time.strftime("%Y-%m-%d %H:%M:%S")})
        times[name] = runs
        atomic_write_text(path, json.dumps(times, indent=2, sort_keys=True) + "\n")
    return code


if __name__ == "__main__":
    sys.exit(main())
