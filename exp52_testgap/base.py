"""exp52's standard MNIST (or Fashion) ffg VAE as the base model of other studies (exp53's frozen
decoder, exp54's 2-layer decoder, exp_refit's encoder): where it lives and how it is trained,
once, by whichever study needs it first."""
import dataclasses
from pathlib import Path

from common.config import CorruptFile, results_dir
from common.data import data_identity, load_dataset
from common.runs.experiment import run_tag, train_or_load, train_split
from common.models.families import GAUSSIAN
from common.runs.train import check_identity, model_from_state, read_checkpoint, run_identity
from common.models.vae import VAE

from .config import PRESETS


def base_config(preset: str, epochs: int = 0):
    """exp52's config for this preset, at `epochs` (0: the preset's own length)."""
    cfg = PRESETS[preset]
    return dataclasses.replace(cfg, epochs=epochs) if epochs else cfg


def base_run_dir(preset: str, seed: int, dataset: str, epochs: int = 0) -> Path:
    epochs = base_config(preset, epochs).epochs
    return results_dir() / "exp52_testgap" / "runs" / run_tag("exp52", preset, epochs, seed) / \
        f"{dataset}_ffg"


def load_base_model(preset: str, seed: int, dataset: str, device, epochs: int = 0) -> VAE:
    """The base model, checked to be what exp52's config trains on `dataset` (never trains it:
    a checkpoint of another config or data set is refused in one line)."""
    cfg = base_config(preset, epochs)
    path = base_run_dir(preset, seed, dataset, epochs) / "last.pt"
    if not path.exists():
        raise CorruptFile(f"{path} is missing; run `make base PRESET={preset}` first")
    state = read_checkpoint(path, device)
    check_identity(state, run_identity(cfg.model_config(GAUSSIAN), cfg.train_config(), seed,
                                       data_identity(dataset, cfg.dynamic_binarisation)), path)
    return model_from_state(state, device)


def base_ffg_model(preset: str, seed: int, dataset: str, device, epochs: int = 0) -> VAE:
    """The standard ffg VAE of exp52 for this preset, seed and dataset (at `epochs`, 0: the
    preset's length). Trained there (once) if it does not exist yet, so `make all` never trains
    it twice."""
    cfg = base_config(preset, epochs)
    run_dir = base_run_dir(preset, seed, dataset, epochs)
    x_train = train_split(dataset, cfg, device)
    x_valid = load_dataset(dataset, "valid", device)
    return train_or_load(run_dir, cfg.model_config(GAUSSIAN), cfg.train_config(), x_train,
                         x_valid, seed, device, label=f"base {dataset}/ffg",
                         data=data_identity(dataset, cfg.dynamic_binarisation))
