"""Options and shared fixtures of the perf suites (`tox -e perf`, `tox -e perf-smoke`).

    pytest perf --perf-config configs/perf/cpu-2rank.yaml [--perf-work DIR]

The MR-SP sweep runs once per session and feeds both the efficiency and the breakdown suite.
"""

from __future__ import annotations

from pathlib import Path

import pytest


def pytest_addoption(parser):
    parser.addoption("--perf-config", default="configs/perf/cpu-2rank.yaml",
                     help="configs/perf/*.yaml: model, frames, budget, world size, RL settings")
    parser.addoption("--perf-work", default=None,
                     help="folder for the suites' data, model and runs (default: a temp dir)")


@pytest.fixture(scope="session")
def perf_config_path(request) -> str:
    return request.config.getoption("--perf-config")


@pytest.fixture(scope="session")
def perf_config(perf_config_path):
    from perf.mrsp import PerfConfig

    return PerfConfig.load(perf_config_path)


@pytest.fixture(scope="session")
def perf_work(request, tmp_path_factory) -> Path:
    given = request.config.getoption("--perf-work")
    if given:
        Path(given).mkdir(parents=True, exist_ok=True)
        return Path(given)
    return tmp_path_factory.mktemp("perf")


@pytest.fixture(scope="session")
def mrsp_sweep(perf_config, perf_work):
    """Rows of the side-by-side sweep (run on first use) and the sweep's wall seconds."""
    import time

    from perf.mrsp import sweep

    start = time.perf_counter()
    rows = sweep(perf_config, perf_work)
    return rows, time.perf_counter() - start
