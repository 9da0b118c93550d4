"""Dataclass configs -> argparse flags, device choice, run folders. No config framework.

Every experiment's presets (smoke | quick | paper) live in common/runs/presets.py; a script
builds its config with `parse_config(ExpConfig, PRESETS_OF_EXP)`: the preset gives the
defaults, any field can be overridden by a flag of the same name (`--n-points 200`).
"""
import argparse
import contextlib
import dataclasses
import errno
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import NoReturn


ROOT = Path(__file__).resolve().parent.parent
DEVICES = ("auto", "cpu", "cuda")
PRESET_NAMES = ("smoke", "quick", "long", "paper")


class UserError(Exception):
    """A problem the user can fix: printed as one line (what and how to fix it), exit code 2."""


class ConfigError(UserError, ValueError):
    """Bad user input: printed as one line, exit code 2, nothing written."""


class CorruptFile(UserError):
    """A result or checkpoint file that cannot be read; the message names it and the fix."""


def guarded(main):
    """Run a script's main() and return what it returns; a UserError anywhere below ends in one
    line and exit 2."""
    try:
        return main()
    except UserError as err:
        fail(str(err))


def read_json(path: Path, fix: str):
    """The JSON at path, or CorruptFile naming the file and the fix."""
    try:
        return json.loads(Path(path).read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CorruptFile(f"{path} is not valid JSON ({type(err).__name__}); {fix}") from None


def read_json_or(path: Path, default, what: str):
    """The JSON at path, or `default` with a warning when it is absent or unreadable (for files
    that only inform, such as step times and provenance: they must never block a target)."""
    path = Path(path)
    if not path.exists():
        return default
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError, OSError) as err:
        print(f"warning: {path} is unreadable ({type(err).__name__}); {what}", file=sys.stderr)
        return default


RESULTS_MARKER = ".inference-suboptimality-results"   # a RESULTS_DIR this project made


def check_results_dir(path: Path) -> Path:
    """RESULTS_DIR must be a folder this process can write; else one line naming it. A folder
    made here (or found empty) gets RESULTS_MARKER: `make clean` deletes only such a folder."""
    path = Path(path)
    try:
        fresh = not path.exists() or (path.is_dir() and not any(path.iterdir()))
        path.mkdir(parents=True, exist_ok=True)
        if fresh:
            (path / RESULTS_MARKER).write_text("made by the inference-suboptimality study; "
                                               "`make clean` may delete this folder\n")
        probe = temp_path(path / ".write_probe")
        probe.write_text("")
        probe.unlink()
    except OSError as err:
        raise ConfigError(f"RESULTS_DIR={path} is not a writable folder ({err.strerror or err}); "
                          f"set RESULTS_DIR to a folder you can write") from None
    return path


def fail(message: str) -> NoReturn:
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


def check_device_name(name: str) -> None:
    if name not in DEVICES:
        raise ConfigError(f"DEVICE={name} is not allowed; use one of: {', '.join(DEVICES)}")


def resolve_device(name: str):
    """The torch.device of a DEVICE name: cpu, or a GPU: on a node with several, the first one
    no other process of this study holds (claim_gpu), so `make -j N DEVICE=cuda` runs one job
    per GPU. (torch is imported here, not at module level: `common.speed.steptime` and the
    Makefile's variable check import this module in every step, and torch's import is 2 s on 2
    cores.)"""
    import torch
    check_device_name(name)
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("DEVICE=cuda but CUDA is not available on this machine; "
                          "use DEVICE=cpu or DEVICE=auto")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and torch.cuda.device_count() > 1:
        return torch.device("cuda", claim_gpu(torch.cuda.device_count(),
                                              results_dir() / ".gpu_locks"))
    return torch.device(name)


_CLAIMED = []   # open lock files of the GPUs this process holds (released when it exits)


def claim_gpu(n_devices: int, lock_dir: Path, timeout_s: float = None, poll_s: float = 5.0) -> int:
    """Index of a GPU that no other process using the same lock_dir holds, locked (flock) for
    the rest of this process's life. With every GPU held it waits, saying so once; after
    timeout_s (None: never) it stops with a UserError."""
    import fcntl
    lock_dir.mkdir(parents=True, exist_ok=True)
    t0, said = time.time(), False
    while True:
        for i in range(n_devices):
            f = open(lock_dir / f"gpu{i}.lock", "a")
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                f.close()
                continue
            _CLAIMED.append(f)
            return i
        if timeout_s is not None and time.time() - t0 >= timeout_s:
            raise UserError(f"all {n_devices} GPUs are held by other jobs of this study "
                            f"({lock_dir}); run fewer jobs at once (make -j {n_devices})")
        if not said:
            print(f"[device] all {n_devices} GPUs are busy; waiting for one to free up",
                  flush=True)
            said = True
        time.sleep(poll_s)


def folder_from_env(name: str, default: Path) -> Path:
    """The folder an environment variable names (default where unset). Set but empty it would be
    the working directory, the source tree: a ConfigError."""
    value = os.environ.get(name)
    if value is None:
        return Path(default)
    if not value.strip():
        raise ConfigError(f"{name} is set but empty (it would write into the working directory); "
                          f"give it a folder, e.g. {name}=$PWD/{Path(default).name}, or unset it")
    return Path(value)


def results_dir() -> Path:
    return folder_from_env("RESULTS_DIR", ROOT / "results")


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _parse_value(kind, text: str, name: str):
    try:
        if kind is bool:
            if text.lower() not in ("1", "0", "true", "false", "yes", "no"):
                raise ValueError
            return text.lower() in ("1", "true", "yes")
        if kind in (int, float, str):
            return kind(text)
        if kind == tuple:  # comma-separated list of ints (hidden sizes, epochs) or names
            parts = text.split(",") if text else []
            if any(not p.strip() for p in parts):
                raise ValueError
            return tuple(int(p) if p.lstrip("-").isdigit() else p for p in parts)
    except ValueError:
        pass
    raise ConfigError(f"--{name.replace('_', '-')}={text!r} is not a valid {kind.__name__}")


def add_dataclass_flags(parser: argparse.ArgumentParser, cls, exclude=()) -> None:
    for field in dataclasses.fields(cls):
        if field.name in exclude:
            continue
        parser.add_argument(_flag(field.name), dest=field.name, default=None, type=str,
                            help=f"(default from preset) {field.metadata.get('help', '')}")


def parse_config(cls, presets: dict, argv=None, description: str = "", exclude=()):
    """Build `cls` from --preset defaults plus per-field flag overrides; exits 2 on bad input.

    exclude: fields this script does not use (no flag for them: passing one is an error).
    --print-config prints the resolved config and the overrides applied, then exits 0.
    """
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--preset", default="quick", help=" | ".join(presets))   # this study's presets
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda")
    parser.add_argument("--seed", default="0", help="integer seed")
    parser.add_argument("--print-config", action="store_true",
                        help="print the resolved config (preset + overrides) and exit")
    add_dataclass_flags(parser, cls, exclude)
    args = parser.parse_args(argv)
    try:
        if args.preset not in presets:
            raise ConfigError(f"PRESET={args.preset} is not allowed; use one of: "
                              f"{', '.join(presets)}")
        try:
            seed = int(args.seed)
        except ValueError:
            raise ConfigError(f"SEED={args.seed} is not allowed; use a whole number") from None
        if not 0 <= seed < 2 ** 31:
            raise ConfigError(f"SEED={seed} is not allowed; use a whole number in [0, 2^31)")
        device = resolve_device(args.device)
        config = presets[args.preset]
        overrides = {}
        types = {f.name: type(getattr(config, f.name)) for f in dataclasses.fields(cls)
                 if f.name not in exclude}
        for name, kind in types.items():
            text = getattr(args, name)
            if text is not None:
                overrides[name] = _parse_value(kind, text, name)
        config = dataclasses.replace(config, **overrides)
        given = set(overrides)   # fields set on purpose: by a flag, or by a named variant
        variant = getattr(config, "variant_overrides", None)
        if variant:  # a named variant's values, except where a flag was given
            values = {k: v for k, v in variant().items() if k not in overrides}
            config = dataclasses.replace(config, **values)
            given |= set(values)
        settle = getattr(config, "with_given", None)   # the config's own rules for fields set
        if settle:                                     # on purpose (RunConfig: the warm-up)
            config = settle(given)
        validate = getattr(config, "validate", None)
        if validate:
            validate()
    except ConfigError as err:
        fail(str(err))
    shown = ", ".join(f"{k}={to_jsonable(v)}" for k, v in overrides.items()) or "none"
    if args.print_config:
        print(json.dumps({"preset": args.preset, "seed": seed, "device": str(device),
                          "overrides": to_jsonable(overrides), "config": to_jsonable(config)},
                         indent=2, sort_keys=True))
        sys.exit(0)
    print(f"[config] preset {args.preset}, seed {seed}, device {device}; overrides: {shown}",
          flush=True)
    return config, args.preset, seed, device


def to_jsonable(obj):
    if dataclasses.is_dataclass(obj):
        return {k: to_jsonable(v) for k, v in dataclasses.asdict(obj).items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_jsonable(v) for k, v in obj.items()}
    torch = sys.modules.get("torch")   # a torch.device only exists where torch is loaded
    if isinstance(obj, Path) or (torch is not None and isinstance(obj, torch.device)):
        return str(obj)
    return obj


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                             capture_output=True, text=True, timeout=5)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=ROOT, capture_output=True, text=True, timeout=5).stdout
        return out.stdout.strip() + ("+dirty" if dirty.strip() else "") if out.returncode == 0 \
            else "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def portable(text: str) -> str:
    """A command or path as recorded: relative to the repository root, RESULTS_DIR and DATA_DIR
    named as such, so no absolute path of the machine that ran it is kept."""
    import tempfile
    text = str(text)
    results = results_dir().resolve()
    places = [(str(results), "$RESULTS_DIR"),
              (str(folder_from_env("DATA_DIR", ROOT / "data").resolve()), "$DATA_DIR"),
              (str(ROOT), "."), (str(Path(tempfile.gettempdir()).resolve()), "$TMPDIR")]
    if (results.parent / "Makefile").exists():   # the checkout that made RESULTS_DIR
        places.append((str(results.parent), "."))
    for place, name in sorted(places, key=lambda p: -len(p[0])):
        text = text.replace(place + os.sep, name + "/").replace(place, name)
    return text


def command_line() -> str:
    """This process's command, portable (python -m module: the module, not its file path)."""
    argv = list(sys.argv)
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    if spec is not None and spec.name:
        argv[0] = f"-m {spec.name}"
    return portable("python " + " ".join(argv))


def provenance(preset: str, seed: int, device) -> dict:
    import torch
    return {"preset": preset, "seed": seed, "device": str(device), "git_commit": git_commit(),
            "torch": torch.__version__, "python": platform.python_version(),
            "command": command_line(), "time": time.strftime("%Y-%m-%d %H:%M:%S")}


def temp_path(path: Path) -> Path:
    """A temporary name beside `path`, unique to this process: two runs writing the same
    file never share a temporary (the last os.replace wins, whole)."""
    path = Path(path)
    return path.with_name(f"{path.name}.{os.getpid()}.part")


class WriteFailed(UserError):
    """A result could not be written (a full disk, no permission): one line naming the file;
    the temporary file is removed, nothing already written is touched."""


LOW_SPACE = 64 * 2 ** 20   # bytes free below which a failed write is put down to a full disk


def disk_nearly_full(folder: Path) -> bool:
    import shutil
    try:
        return shutil.disk_usage(folder).free < LOW_SPACE
    except OSError:
        return False


def write_error(path: Path, err: Exception) -> WriteFailed:
    """One line for a failed write. torch.save reports a full disk as "file write failed" or as
    "[enforce fail at inline_container.cc] . unexpected pos 576 vs 534" (a short write, seen on a
    full tmpfs): such a failure with little space left is a full disk."""
    text = str(err)
    torch_writer = "inline_container" in text or "PytorchStreamWriter" in text
    if getattr(err, "errno", None) == errno.ENOSPC or "No space left" in text or \
            "write failed" in text or (torch_writer and disk_nearly_full(Path(path).parent)):
        return WriteFailed(f"no space left on device writing {path}; free some space (or set "
                           f"RESULTS_DIR to a disk with room) and rerun: finished work is kept")
    if torch_writer:
        return WriteFailed(f"cannot write {path} (torch's file writer failed: a short write, as a "
                           f"full disk or quota gives); check the space and RESULTS_DIR and rerun")
    return WriteFailed(f"cannot write {path} ({getattr(err, 'strerror', None) or text[:80]}); "
                       f"check RESULTS_DIR and rerun")


@contextlib.contextmanager
def atomic_file(path: Path):
    """A temporary path beside `path` for the block to write, moved onto `path` when it ends. A
    failed write removes the temporary and raises WriteFailed (one line, exit 2 through
    `guarded`), so a full disk leaves no .part file behind to block the rerun."""
    path = Path(path)
    tmp = temp_path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        yield tmp
        os.replace(tmp, path)
    except (OSError, RuntimeError) as err:
        failure = write_error(path, err)   # judged before the temporary goes: a full disk is full
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass
        raise failure from None


def atomic_write_text(path: Path, text: str) -> None:
    with atomic_file(path) as tmp:
        tmp.write_text(text)


def write_json(path: Path, obj) -> None:
    atomic_write_text(path, json.dumps(to_jsonable(obj), indent=2, sort_keys=True) + "\n")


# ---- checksums: a result edited by hand after its step wrote it is never published -------------
def sha256_text(text: str) -> str:
    import hashlib
    return hashlib.sha256(text.encode()).hexdigest()


def content_checksum(obj) -> str:
    """sha256 of a JSON value's canonical text (sorted keys): what a cache records of itself."""
    return sha256_text(json.dumps(to_jsonable(obj), sort_keys=True))


def checksum_file(path: Path) -> Path:
    """Where the checksum of a published file (a table, claims.json) is kept: beside it."""
    path = Path(path)
    return path.with_name(path.name + ".sha256")


def write_checksummed(path: Path, text: str) -> None:
    """Write `path` and, after it, its checksum beside it (a kill between leaves the old checksum,
    which then refuses the new file: the step is rerun, nothing wrong is published)."""
    atomic_write_text(path, text)
    atomic_write_text(checksum_file(path), sha256_text(text) + "\n")


def edited_by_hand(path: Path) -> bool:
    """Whether `path` differs from the checksum its step recorded beside it (False where none was
    recorded: files written before checksums, such as an older committed snapshot)."""
    record = checksum_file(path)
    if not record.exists():
        return False
    try:
        return record.read_text().strip() != sha256_text(Path(path).read_text())
    except (OSError, UnicodeDecodeError):
        return True


def check_main(argv=None) -> int:
    """`python -m common.config DEVICE PRESET`: validate Make variables before anything runs."""
    argv = sys.argv[1:] if argv is None else argv
    try:
        device = argv[0] if argv else "auto"
        check_device_name(device)   # torch (2 s to import) only where cuda must be checked
        if device == "cuda":
            resolve_device(device)
        if len(argv) > 1 and argv[1] not in PRESET_NAMES:
            raise ConfigError(f"PRESET={argv[1]} is not allowed; use one of: "
                              f"{', '.join(PRESET_NAMES)}")
    except ConfigError as err:
        fail(str(err))
    return 0


if __name__ == "__main__":
    sys.exit(check_main())
