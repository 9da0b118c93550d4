"""What every experiment's train / evaluate / plot steps share: run folders, train-or-resume,
evaluation points, cached evaluations, and the start-of-script boilerplate.

Layout: RESULTS_DIR/<experiment folder>/runs/<preset>[-e<epochs>]-seed<seed>/<run name>/ holds a
model's config.json, metrics.csv and checkpoints (-e<epochs> when the length is not the preset's
own); evaluations sit beside them in eval_<split>/. Tables, CSVs and figures go to the study's
folder for smoke and quick, and to <folder>_<preset>[_e<epochs>] for the other presets and
lengths (each length of the ladder is a result of its own), with _seed<k> for seeds other than
0 (common/reporting/seeds.py judges the claims across them).
"""
import hashlib
import json
import math
import time
from dataclasses import replace
from pathlib import Path

import torch

from .. import studies
from ..config import (ConfigError, CorruptFile, UserError, check_results_dir, command_line, fail,
                     git_commit, parse_config, portable, provenance, results_dir, sha256_text,
                     to_jsonable, write_json, content_checksum)
from ..data import data_identity, load_dataset, load_intensities
from ..inference.gaps import (EVAL_VERSION, EvalConfig, SharedQstar, add_gaps, ais_acceptance,
                              ais_chunk, assemble_bounds, certified_bdmc, certificates,
                              chunk_starts, encoder_bounds_chunk, logpx_from, pooled_logpx_from,
                              model_hash, own_family, summarise, worst_probe, write_per_point)
from .shards import computed_chunks, file_lock
from .presets import EVAL_ONLY
from .train import (RunMismatch, TrainConfig, check_identity, finished, model_from_state,
                    read_checkpoint, restore_metrics, run_identity, train)
from ..models.vae import VAE


# config fields that change how a result is computed, not what it is (excluded from config ids)
HOW_NOT_WHAT = ("stack", "compile", "seeds")


class Experiment:
    """Parsed config + paths of one experiment invocation."""

    def __init__(self, key: str, argv=None, description: str = "", stage: str = "evaluate"):
        """key: the study's name (common/studies.py); stage "train": the evaluation-only flags
        (EVAL_ONLY) are not offered."""
        study = studies.study(key)
        presets = study.presets
        check_preset(key, presets, argv)
        cls = type(presets["quick"])
        self.config, self.preset, self.seed, self.device = parse_config(
            cls, presets, argv, description, EVAL_ONLY if stage == "train" else ())
        self.key, self.folder = key, study.folder
        folder = study.folder
        try:
            check_results_dir(results_dir())
        except ConfigError as err:
            fail(str(err))
        variant = getattr(self.config, "variant", "standard")
        base = results_dir() / (folder if variant == "standard" else f"{folder}_{variant}")
        self.out = base.with_name(base.name + output_suffix(key, self.preset, self.config.epochs)
                                  + ("" if self.seed == 0 else f"_seed{self.seed}"))
        self.runs = base / "runs" / run_tag(key, self.preset, self.config.epochs, self.seed)
        # taken at start: the commit and command that this run's code and config came from
        self._provenance = {**provenance(self.preset, self.seed, self.device),
                            "eval_version": EVAL_VERSION, "config": self.config}
        torch.manual_seed(self.seed)

    def provenance(self) -> dict:
        return self._provenance

    def make_command(self) -> str:
        """The make command that trains and evaluates this config's preset and length."""
        tag = length_tag(self.key, self.preset, self.config.epochs)
        return f"make {self.key} PRESET={self.preset}" + (f" EPOCHS={self.config.epochs}"
                                                          if tag else "")

    def config_id(self, selection=()) -> str:
        """Short hash of preset, seed and config without the `selection` fields (which models or
        data sets were asked for): rows of one config_id can be merged across subset runs."""
        cfg = {k: v for k, v in to_jsonable(self.config).items()
               if k not in selection and k not in HOW_NOT_WHAT}
        text = json.dumps({"preset": self.preset, "seed": self.seed, "config": cfg},
                          sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:12]

    def load(self, run_dir: Path, model_config, train_config: TrainConfig,
             checkpoint: str = "last.pt", data: dict = None) -> VAE:
        """The model trained in run_dir, checked to be what this config would train (model,
        training, seed): a run of another config is refused, never evaluated as this one."""
        path = Path(run_dir) / checkpoint
        if not path.exists():
            raise CorruptFile(f"{path} is missing; run `{self.make_command()}` (its train step) "
                              f"first")
        state = read_checkpoint(path, self.device)
        check_identity(state, run_identity(model_config, train_config, self.seed, data), path)
        if checkpoint == "last.pt" and (state["epoch"] > train_config.epochs
                                        or not finished(state, train_config)):
            raise RunMismatch(f"{run_dir} is trained for {state['epoch']} epochs, not "
                              f"{train_config.epochs}; run `make {self.key}` first")
        return model_from_state(state, self.device)

    def write_provenance(self, name: str = "provenance.json") -> None:
        write_json(self.out / name, self.provenance())

    def read_rows(self, name: str, target: str, numeric=(), known: dict = None) -> list:
        """Rows of a result CSV of this experiment, checked against its schema: the `numeric`
        columns present and finite numbers, `known` columns ({column: allowed values}) within
        their values. Anything else is one line naming the file and the make target."""
        import math
        from ..results.tables import read_csv
        path = self.out / name
        fix = f"run `make {target}` to rewrite it"
        if not path.exists():
            raise CorruptFile(f"{path} is missing; run `make {target}` first")
        rows = read_csv(path, tuple(numeric) + tuple(known or ()), fix)
        if not rows:
            raise CorruptFile(f"{path} holds no rows; {fix}")
        for i, r in enumerate(rows, 1):
            for col in numeric:
                try:
                    ok = math.isfinite(float(r[col]))
                except ValueError:
                    ok = False
                if not ok:
                    raise CorruptFile(f"{path} row {i}: {col}={r[col]!r} is not a number; {fix}")
            for col, allowed in (known or {}).items():
                if r[col] not in allowed:
                    raise CorruptFile(f"{path} row {i}: {col}={r[col]!r} is unknown (allowed: "
                                      f"{', '.join(allowed)}); {fix}")
        return rows

    def data_identity(self, dataset: str) -> dict:
        """What this config's runs on `dataset` are trained on (their identity's `data`)."""
        return data_identity(dataset, getattr(self.config, "dynamic_binarisation", False))

    def train_data(self, dataset: str) -> torch.Tensor:
        """The training split: static bits, or grey levels with --dynamic-binarisation."""
        return train_split(dataset, self.config, self.device)

    def data(self, dataset: str, split: str, n: int = 0) -> torch.Tensor:
        """The first n points of a split (n = 0: all), on the device: fixed evaluation points.
        More points than the split holds is a ConfigError (a caption would name points never
        evaluated)."""
        x = load_dataset(dataset, split, self.device)
        if n > x.shape[0]:
            raise ConfigError(f"{n} {split} points asked for (--n-points, --train-points or "
                              f"--af-points) but {dataset}'s {split} split holds "
                              f"{x.shape[0]}; use at most {x.shape[0]} (0: all)")
        return x[:n] if n else x


def check_preset(key: str, presets: dict, argv=None) -> None:
    """A study asked for a preset it does not have: one line naming what to run, exit 2."""
    import argparse
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--preset", default="quick")
    asked = parser.parse_known_args(argv)[0].preset
    if asked in presets:
        return
    having = [n for n, s in studies.studies().items() if asked in s.presets]
    fail(f"{key} has no {asked} preset (it has: {', '.join(presets)})" +
         (f"; {asked} is for {', '.join(having)}" if having else ""))


def length_tag(key: str, preset: str, epochs: int) -> str:
    """"" at the preset's own length, else "-e<epochs>" (a rung of the training-length ladder)."""
    return "" if epochs == studies.study(key).presets[preset].epochs else f"-e{epochs}"


def run_tag(key: str, preset: str, epochs: int, seed: int) -> str:
    """The run folder's name under runs/: <preset>[-e<epochs>]-seed<seed>."""
    return f"{preset}{length_tag(key, preset, epochs)}-seed{seed}"


def output_suffix(key: str, preset: str, epochs: int) -> str:
    """What the study's result folder name gains: nothing for smoke and quick at their own
    length, else _<preset> and/or _e<epochs>."""
    return ("" if preset in ("smoke", "quick") else f"_{preset}") + \
        length_tag(key, preset, epochs).replace("-", "_")


def train_split(dataset: str, config, device) -> torch.Tensor:
    if getattr(config, "dynamic_binarisation", False):
        return load_intensities(dataset, "train", device)
    return load_dataset(dataset, "train", device)


def trained_epochs(run_dir: Path) -> int:
    path = Path(run_dir) / "last.pt"
    if not path.exists():
        return 0
    return read_checkpoint(path)["epoch"]


def run_finished(run_dir: Path, train_config: TrainConfig) -> bool:
    path = Path(run_dir) / "last.pt"
    return path.exists() and finished(read_checkpoint(path), train_config)


def train_or_load(run_dir: Path, model_config, train_config: TrainConfig, x_train, x_valid,
                  seed: int, device, init_from: Path = None, label: str = "",
                  data: dict = None) -> VAE:
    """Load a finished run, resume an interrupted one, or train from scratch.

    init_from: a checkpoint whose decoder is copied in before training (frozen-decoder runs).
    data: what x_train is (`Experiment.data_identity`), part of the run's identity.
    """
    last = Path(run_dir) / "last.pt"
    state = read_checkpoint(last, device) if last.exists() else None
    if state is not None and finished(state, train_config):
        check_identity(state, run_identity(model_config, train_config, seed, data), last)
        if state["epoch"] > train_config.epochs:
            raise RunMismatch(f"{run_dir} is trained for {state['epoch']} epochs, not "
                              f"{train_config.epochs}; delete it to retrain")
        restore_metrics(run_dir, state)
        return model_from_state(state, device)
    torch.manual_seed(seed)
    model = VAE(model_config).to(device)
    if init_from is not None and state is None:
        base = model_from_state(read_checkpoint(init_from, device), device)
        model.decoder.load_state_dict(base.decoder.state_dict())
    t0 = time.time()
    print(f"[train] {label or run_dir} ({train_config.epochs} epochs)", flush=True)
    train(model, x_train, x_valid, train_config, run_dir, seed, resume=True,
          extra_config={"init_from": portable(init_from) if init_from else None},
          log_prefix=f"[{label}] " if label else "", data_identity=data)
    print(f"[train] {label} done in {time.time() - t0:.0f}s", flush=True)
    return model


def train_many(run_dirs: list, model_config, train_config: TrainConfig, x_trains: list,
               x_valids: list, seed, device, labels: list, stack: bool, datas: list = None) -> list:
    """train_or_load for several runs of one architecture (e.g. one family on each dataset, and
    on each seed: `seed` is one seed for all or a list, one per run). With stack, the runs still
    to train are trained as ONE batched computation (common/runs/stacked.py; the same weights as
    alone, within float tolerance)."""
    seeds = list(seed) if isinstance(seed, (list, tuple)) else [seed] * len(run_dirs)
    datas = list(datas) if datas else [None] * len(run_dirs)
    todo = [i for i, d in enumerate(run_dirs) if not run_finished(d, train_config)]
    if not stack or len(todo) < 2 or train_config.stop_patience:   # (stacked runs stop together)
        return [train_or_load(d, model_config, train_config, xt, xv, s, device, label=lab,
                              data=da)
                for d, xt, xv, s, lab, da in zip(run_dirs, x_trains, x_valids, seeds, labels, datas)]
    from .stacked import train_stacked
    models = []
    for i in todo:
        torch.manual_seed(seeds[i])   # each model starts as train_or_load would start it
        models.append(VAE(model_config).to(device))
    t0 = time.time()
    print(f"[train] {', '.join(labels[i] for i in todo)} stacked ({train_config.epochs} "
          f"epochs)", flush=True)
    try:
        train_stacked(models, [x_trains[i] for i in todo], [x_valids[i] for i in todo],
                      train_config, [run_dirs[i] for i in todo], [seeds[i] for i in todo],
                      [labels[i] for i in todo], extra_config={"init_from": None, "stacked": True},
                      datas=[datas[i] for i in todo])
        print(f"[train] stacked runs done in {time.time() - t0:.0f}s", flush=True)
    except UserError:
        raise
    except RuntimeError as err:   # e.g. an op vmap cannot batch on this device: each run is
        print(f"[train] stacked training failed ({type(err).__name__}: {str(err)[:120]}); "
              f"training the runs one by one (each resumes from its last checkpoint)", flush=True)
    return [train_or_load(d, model_config, train_config, xt, xv, s, device, label=lab, data=da)
            for d, xt, xv, s, lab, da in zip(run_dirs, x_trains, x_valids, seeds, labels, datas)]


def read_metrics(run_dir: Path, epochs: int, target: str) -> list:
    """metrics.csv of a finished run: one readable row per epoch 1..epochs (1..the epoch it stopped
    at, for a run stopped early), else CorruptFile. The
    checkpoint carries the true rows: a file that differs from them in any field (a hand edit)
    is rebuilt from it first, and said so."""
    from ..results.tables import read_csv
    from .train import METRIC_FIELDS, metrics_file_matches
    path = Path(run_dir) / "metrics.csv"
    fix = f"run `make {target}` (its train step rebuilds metrics.csv from the checkpoint)"
    last = Path(run_dir) / "last.pt"
    if last.exists():
        state = read_checkpoint(last)
        if state.get("stopped_early"):   # TrainConfig.stop_patience: fewer epochs than asked
            epochs = state["epoch"]
        rows = [{k: r.get(k) for k in METRIC_FIELDS} for r in state.get("metrics", [])]
        if rows and not metrics_file_matches(path, rows):
            print(f"[metrics] {path} differs from its checkpoint's rows; rebuilt from "
                  f"{last.name}", flush=True)
            restore_metrics(run_dir, state)
    if not path.exists():
        raise CorruptFile(f"{path} is missing; {fix}")
    rows = read_csv(path, METRIC_FIELDS, fix)
    try:
        got = [int(r["epoch"]) for r in rows]
    except ValueError:
        raise CorruptFile(f"{path} has a non-integer epoch; {fix}") from None
    if got != list(range(1, epochs + 1)):
        raise CorruptFile(f"{path} holds {len(got)} epoch rows, not epochs 1..{epochs}; {fix}")
    return rows


def cached(path: Path, key: dict, with_rows: int = None):
    """The cached JSON at path if it was made with the same key, else None. An unreadable cache
    (or, with_rows=n, a per_point.csv beside it that is not n readable rows) is recomputed, and
    the reason printed."""
    path = Path(path)
    if not path.exists():
        return None
    from ..results.tables import read_csv
    try:
        data = json.loads(path.read_text())
        if not isinstance(data, dict) or "key" not in data:
            raise ValueError("no key")
        if data["key"] != json.loads(json.dumps(key, default=str)):
            print(f"[eval] recomputing: {path} was made with another config, code version "
                  f"(EVAL_VERSION) or model", flush=True)
            return None
        rows = path.parent / "per_point.csv"
        if with_rows is not None and len(read_csv(rows)) != with_rows:
            raise ValueError(f"per_point.csv has not {with_rows} rows")
        body = {k: v for k, v in data.items() if k != "checksum"}
        if data.get("checksum") != content_checksum(body) or (
                with_rows is not None and body.get("rows_sha256") != sha256_text(rows.read_text())):
            print(f"[eval] recomputing: {path} (or the per_point.csv beside it) differs from the "
                  f"checksum its evaluation recorded (edited by hand, or written before "
                  f"checksums)", flush=True)
            return None
    except (ValueError, UnicodeDecodeError, OSError, CorruptFile) as err:
        print(f"[eval] recomputing: cache {path} is unreadable ({str(err)[:60]})", flush=True)
        return None
    return data


def write_cache(path: Path, key: dict, name: str, value, rows_file: Path = None) -> None:
    """The cache {key, name: value} with its content checksum (and that of the per-point file
    it summarises, if any): `cached` recomputes a cache edited after it was written."""
    body = {"key": key, name: value}
    if rows_file is not None:
        body["rows_sha256"] = sha256_text(Path(rows_file).read_text())
    write_json(path, {**body, "checksum": content_checksum(body)})


def eval_key(cfg: EvalConfig, extra: dict = None) -> dict:
    return {**{f: getattr(cfg, f) for f in EvalConfig.__dataclass_fields__},
            "eval_version": EVAL_VERSION, **(extra or {})}


def decoder_bdmc(model: VAE, cfg: EvalConfig, seed: int, path: Path) -> dict:
    """BDMC of one decoder along the AIS path of cfg, extended until certified or at the cap
    (gaps.certified_bdmc: its `ais_steps_used` is what the AIS of log p^ runs), computed once
    per decoder (and proposal encoder) and reused by every split and encoder that shares it:
    cached at `path`. Processes sharing an evaluation (shards) compute it once: the others wait
    for it and read it back."""
    key = {**{f: getattr(cfg, f) for f in EvalConfig.__dataclass_fields__
              if f.startswith(("ais_", "bdmc_", "qstar_"))}, "eval_version": EVAL_VERSION,
           "seed": seed, "decoder": model_hash(model, "decoder"),
           "encoder": model_hash(model, "encoder")}
    with file_lock(path):
        hit = cached(path, key)
        if hit is not None and not math.isfinite(hit["bdmc"]["bdmc_gap"]):
            print(f"[eval] recomputing: cached BDMC gap in {path} is not finite", flush=True)
            hit = None
        if hit is not None:
            print(f"[eval] BDMC cached: gap {hit['bdmc']['bdmc_gap']:.3f} nats", flush=True)
            return hit["bdmc"]
        t0 = time.time()
        result = certified_bdmc(model, cfg, seed, verbose=True)
        print(f"[eval] BDMC ({result['bdmc_path']} path, {result['ais_steps_used']} steps): "
              f"forward {result['bdmc_lower']:.2f}, reverse {result['bdmc_upper']:.2f}, gap "
              f"{result['bdmc_gap']:.3f} nats"
              f"{' (at the step cap)' if result['bdmc_at_cap'] else ''} "
              f"({time.time() - t0:.0f}s)", flush=True)
        write_cache(path, key, "bdmc", result)
        return result


def evaluate_decoder_family(models: dict, x: torch.Tensor, cfg: EvalConfig, seed: int,
                            out_dirs: dict, key_extra: dict = None, ais_source: str = None,
                            with_bdmc: bool = True, shared_qstar: bool = False) -> dict:
    """Gaps of several encoders that share ONE decoder, on the same points.

    log p^ is computed once (AIS on the decoder of the first model, from that model's q* or q,
    plus every encoder's IWAE candidates) and reused for every encoder, so approximation gaps
    are comparable. shared_qstar: the encoders were trained on one frozen decoder, so q* (which
    depends only on the decoder and x) is fitted once per family for all of them (SharedQstar).
    Returns {name: summary}; per_point.csv and summary.json go to
    out_dirs[name]. Cached: an evaluation with the same config, seed and model contents is read
    back instead of recomputed.

    Order: the decoder's BDMC (it sets the steps of AIS), then each chunk of cfg.point_chunk
    points (every model's bounds and the chunk's AIS), computed once by whichever of the
    processes running this evaluation claims it (common/runs/shards.py: SHARDS=N), then the
    merge, which every such process makes alike.
    """
    key = {**eval_key(cfg, key_extra), "seed": seed, "models": sorted(models),
           **({"shared_qstar": True} if shared_qstar else {}),
           "n": int(x.shape[0]), "model_hashes": {n: model_hash(m) for n, m in models.items()}}
    summaries = {n: cached(Path(d) / "summary.json", key, int(x.shape[0]))
                 for n, d in out_dirs.items()}
    if all(s is not None for s in summaries.values()):
        print(f"[eval] cached: {', '.join(sorted(models))}", flush=True)
        return {n: s["summary"] for n, s in summaries.items()}
    source = ais_source or next(iter(models))
    for model in models.values():
        model.eval()
    decoder_model = models[source]
    # one BDMC per decoder: named by its content, so checkpoints of one run never share a file
    bdmc = decoder_bdmc(decoder_model, cfg, seed, Path(out_dirs[source]).parent /
                        f"bdmc_{model_hash(decoder_model, 'decoder')[:10]}.json") \
        if with_bdmc else {}
    ais_cfg = replace(cfg, ais_steps=bdmc.get("ais_steps_used", cfg.ais_steps),   # the path
                      ais_proposal=bdmc.get("bdmc_path", cfg.ais_proposal))     # BDMC certified
    fit = SharedQstar(models, cfg, verbose=True) if shared_qstar else None
    n = int(x.shape[0])
    sizes = {s: min(cfg.point_chunk, n - s) for s in chunk_starts(n, cfg.point_chunk)}
    t0 = time.time()

    def compute(start):
        xc, t1 = x[start:start + sizes[start]], time.time()
        out = {"bounds": {}, "probes": {}}
        for name, model in models.items():
            out["bounds"][name], params, out["probes"][name] = encoder_bounds_chunk(
                model, xc, cfg, seed, start, verbose=True, fit=fit)
            if name == source:
                qstar_params = params
        out["ais"], out["ais_stats"] = ais_chunk(decoder_model, xc, ais_cfg, seed, start,
                                                 qstar_params, verbose=True)
        print(f"[eval] points {start}-{start + sizes[start] - 1} of {n} done "
              f"({time.time() - t1:.0f}s)", flush=True)
        return out

    parts = computed_chunks(Path(out_dirs[source]) / "chunks", {**key, "bdmc": bdmc,
                                                                "point_chunk": cfg.point_chunk},
                            sizes, compute, label=f"{Path(out_dirs[source]).name}: ")
    bounds = {name: assemble_bounds(models[name], [p["bounds"][name] for p in parts],
                                    parts[0]["probes"][name]) for name in models}
    ais_values = torch.cat([p["ais"] for p in parts])
    ais_stats = ais_acceptance([p["ais_stats"] for p in parts])
    for name, b in bounds.items():
        print(f"[eval] {name}: L[q] {b['L_q'].mean():.2f}, L[q*] {b['L_qstar'].mean():.2f} "
              f"(q* capped {b['qstar_capped'].mean():.0%}, mean {b['qstar_steps'].mean():.0f} "
              f"steps, probe {worst_probe(b['qstar_probe']):+.3f})", flush=True)
    print(f"[eval] AIS {ais_values.mean():.2f} ({ais_cfg.ais_steps} steps); {len(parts)} "
          f"chunk(s) in {time.time() - t0:.0f}s", flush=True)
    paper_rule = logpx_from(ais_values, bounds.values())
    pooled = pooled_logpx_from(ais_values, bounds.values())
    computed = {"computed_commit": git_commit(), "computed_command": command_line(),
                "computed_time": time.strftime("%Y-%m-%d %H:%M:%S")}
    result = {}
    for name, b in bounds.items():
        per_point = add_gaps(b, ais_values, paper_rule, pooled)
        summary = summarise(per_point)
        summary.update({"ais": ais_values.mean().item(),
                        "iwae_q": per_point["iwae_q"].mean().item(),
                        "iwae_qstar": per_point[f"iwae_qstar_{own_family(models[name])}"].mean().item(),
                        "L_qstar_ffg": per_point["L_qstar_ffg"].mean().item()
                        if "L_qstar_ffg" in per_point else float("nan"),
                        **ais_stats, **certificates(per_point, bdmc), **computed})
        if summary["failures"]:
            print(f"[eval] WARNING {name}: {summary['failures']}", flush=True)
        if not summary["certified"]:
            print(f"[eval] not certified {name}: {summary['certificate_misses']}", flush=True)
        write_per_point(Path(out_dirs[name]) / "per_point.csv", per_point)
        if not summary["failures"]:   # a failed estimate is reported, never cached as a success
            write_cache(Path(out_dirs[name]) / "summary.json", key, "summary", summary,
                        Path(out_dirs[name]) / "per_point.csv")
        result[name] = summary
    return result


def evaluate_one(model: VAE, x, cfg: EvalConfig, seed: int, out_dir: Path, key_extra=None):
    return evaluate_decoder_family({"model": model}, x, cfg, seed, {"model": out_dir},
                                   key_extra)["model"]
