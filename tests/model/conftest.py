import numpy as np
import pytest

from harness.model.build import init_model


@pytest.fixture(scope="session", params=["vila", "qwen2_5_vl"])
def tiny_model(request):
    return init_model(request.param, "tiny", seed=0)


@pytest.fixture
def frames():
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, size=(8, 48, 64, 3), dtype=np.uint8)  # [N, H, W, 3]
    timestamps = np.arange(8) * 0.5
    return frames, timestamps


@pytest.fixture
def tiny_qwen():
    return init_model("qwen2_5_vl", "tiny", seed=0)
