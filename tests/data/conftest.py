"""Fixtures for tests/data: small real mp4 files whose frames encode their own index."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import av
import numpy as np
import pytest

LEVEL_BASE = 10
LEVEL_STEP = 4  # grey levels 4 apart; lossless x264 / high-rate mpeg4 decode within +-1


def _frame_level(index: int | np.ndarray) -> np.ndarray:
    """The uniform grey level written into frame `index` (wraps so it stays in uint8 range)."""
    return LEVEL_BASE + (np.asarray(index) * LEVEL_STEP) % 240


def _default_codec() -> str:
    for codec in ("libx264", "mpeg4"):
        if codec in av.codecs_available:
            return codec
    raise RuntimeError("PyAV has neither libx264 nor mpeg4 encoders")


def write_test_video(
    path: Path,
    *,
    num_frames: int = 48,
    fps: int = 12,
    width: int = 64,
    height: int = 48,
    codec: str | None = None,
    faststart: bool = False,
) -> Path:
    """Write an mp4 whose frame i is uniformly grey at `_frame_level(i)`; returns `path`.

    A short GOP (12) makes decord seek through several keyframes. libx264 runs lossless
    (crf 0); mpeg4 (fallback where libx264 is missing) at a high bitrate. `faststart` puts the
    index (moov) before the frame data, as streaming sites do.
    """
    codec = codec or _default_codec()
    options = {"movflags": "faststart"} if faststart else {}
    with av.open(str(path), "w", options=options) as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.gop_size = 12
        if codec == "libx264":
            stream.options = {"crf": "0"}
        else:
            stream.bit_rate = 4_000_000
        for i in range(num_frames):
            img = np.full((height, width, 3), _frame_level(i), dtype=np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


@pytest.fixture
def make_video(tmp_path: Path) -> Callable[..., Path]:
    """Factory: make_video(name="v.mp4", **write_test_video kwargs) -> path under tmp_path."""

    def _make(name: str = "v.mp4", **kwargs) -> Path:
        return write_test_video(tmp_path / name, **kwargs)

    return _make


@pytest.fixture
def frame_level() -> Callable[[int | np.ndarray], np.ndarray]:
    """frame_level(i): the grey level `make_video` wrote into frame i."""
    return _frame_level
