import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


@pytest.fixture(autouse=True)
def _seed_and_threads():
    torch.manual_seed(0)
    yield


@pytest.fixture(scope="session")
def dirs(tmp_path_factory):
    """(synthetic data dir, results dir) shared by every end-to-end test."""
    from smoke_results import make_dirs
    return make_dirs(tmp_path_factory)


@pytest.fixture(scope="session")
def smoke(dirs):
    """Every experiment run once on the smoke preset; returns each target's stdout."""
    from smoke_results import run_smoke
    return run_smoke(dirs)
