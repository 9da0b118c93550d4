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
