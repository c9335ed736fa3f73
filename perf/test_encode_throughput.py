"""Frame decoding and vision encoding throughput of the tiny models (pytest-benchmark).

Run with `tox -e perf`; JSON lands in perf/results/. These are the stage-1 building blocks
whose cost MR-SP splits across ranks and caches; the full MR-SP suite comes with the perf issue.
"""

import numpy as np
import pytest

from harness.data.video import load_video
from harness.model.build import init_model

FRAMES = 64


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    import av

    path = tmp_path_factory.mktemp("perf") / "clip.mp4"
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=8)
        stream.width, stream.height, stream.pix_fmt = 64, 64, "yuv420p"
        rng = np.random.default_rng(0)
        for _ in range(240):  # 30 s at 8 fps
            frame = av.VideoFrame.from_ndarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8), "rgb24")
            out.mux(stream.encode(frame))
        out.mux(stream.encode())
    return path


def test_decode_uniform_frames(benchmark, video):
    clip = benchmark(load_video, video, FRAMES)
    assert clip.frames.shape == (FRAMES, 64, 64, 3)


@pytest.mark.parametrize("family", ["vila", "qwen2_5_vl"])
def test_encode_frames(benchmark, video, family):
    import torch

    model = init_model(family, "tiny")
    clip = load_video(video, FRAMES)
    pixels = model.preprocess(clip.frames, clip.timestamps, clip.frame_seconds)
    with torch.no_grad():
        out = benchmark(model.encode_video, pixels)
    benchmark.extra_info["video_tokens"] = out.num_tokens
    assert out.embeds.shape[0] == pixels.units.shape[0]
