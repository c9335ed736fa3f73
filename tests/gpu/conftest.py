"""The GPU smoke suite (`tox -e gpu-smoke`): skipped where torch sees no CUDA device; each
test's peak GPU memory goes to perf/results/gpu-smoke.json."""

from __future__ import annotations

import json
import platform
import time
from pathlib import Path

import pytest
import torch

RESULTS = Path(__file__).resolve().parents[2] / "perf" / "results" / "gpu-smoke.json"
_rows: dict[str, dict] = {}


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU: run `tox -e gpu-smoke` on a GPU machine")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _peak_memory(request):
    """Record each test's peak allocated GPU memory and wall time."""
    torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    yield
    _rows[request.node.name] = {"peak_gib": torch.cuda.max_memory_allocated() / 2**30,
                                "seconds": time.perf_counter() - start}


def pytest_sessionfinish(session, exitstatus):
    if not _rows:
        return
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({
        "device": torch.cuda.get_device_name(0), "torch": torch.__version__, "host": platform.node(),
        "date": time.strftime("%Y-%m-%d"), "exit_status": int(exitstatus), "tests": _rows}, indent=1))
