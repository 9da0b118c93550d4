import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


# What makes a test end-to-end (`make test-e2e`, not `make test`): it reads the results of
# every study run through the Makefile (the session's `smoke` fixture, directly or through
# test_faults' `results` copy), or carries @pytest.mark.e2e itself (a real browser, make all).
E2E_FIXTURES = {"smoke", "results"}
LONG_SMOKE_USERS = {"test_make_all_over_two_seeds_judges_every_claim_across_them",
                    "test_ladder_judges_every_claim_at_each_length_from_its_own_runs",
                    "test_exp52_variant_writes_beside_the_standard_results"}


def pytest_configure(config):
    config.addinivalue_line("markers", "e2e: an end-to-end test (make test-e2e): it runs the "
                                       "studies through the Makefile or a real browser")


@pytest.hookimpl(tryfirst=True)   # before pytest-xdist reads the xdist_group marks below
def pytest_collection_modifyitems(config, items):
    for item in items:
        if E2E_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.e2e)
            # under pytest-xdist (make test-e2e: --dist loadgroup) the smoke run's readers go to
            # one worker and its three longest users (each runs more studies on top of it) to
            # another, the real-Slurm tests (tests/test_slurm_e2e.py) as a third group, so both
            # stay busy; the smoke run itself is made once (the fixture below)
            item.add_marker(pytest.mark.xdist_group(
                "smoke_long" if item.originalname in LONG_SMOKE_USERS else
                "slurm" if item.module.__name__.endswith("test_slurm_e2e") else "smoke"))


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
def smoke(dirs, tmp_path_factory, worker_id):
    """Every experiment run once on the smoke preset; returns each target's stdout. Under
    pytest-xdist the first worker that needs it makes it and the others copy its results into
    their own folder (the synthetic data are the same bytes in every worker: seeded), so the
    whole suite makes it once (80 s) and each worker's tests write only their own copy."""
    import fcntl
    import json
    import shutil
    from smoke_results import run_smoke
    if worker_id == "master":
        return run_smoke(dirs)
    shared = tmp_path_factory.getbasetemp().parent / "smoke_shared"
    with open(f"{shared}.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)           # the others wait here while it is made
        done = shared / "stdout.json"
        if done.exists():
            shutil.copytree(shared / "results", dirs[1], dirs_exist_ok=True)
            return json.loads(done.read_text())
        runs = run_smoke(dirs)
        shutil.copytree(dirs[1], shared / "results")
        done.write_text(json.dumps(runs))
        return runs
