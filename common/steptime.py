"""`python -m common.steptime NAME CMD...`: run CMD, record its wall time in RESULTS_DIR/step_times.json.

The report lists these so every figure can be traced to how long its step took. The command's
exit code is passed through; a failed step records nothing.
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
        times[name] = {"wall_s": round(time.time() - t0, 1), "command": " ".join(cmd[2:]),
                       "finished": time.strftime("%Y-%m-%d %H:%M:%S")}
        atomic_write_text(path, json.dumps(times, indent=2, sort_keys=True) + "\n")
    return code


if __name__ == "__main__":
    sys.exit(main())
