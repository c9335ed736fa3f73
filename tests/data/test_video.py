"""Tests for harness.data.video: sampler, decoding real mp4 files, resize and patchify."""

from __future__ import annotations

import math
import os

import av
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.data import video
from harness.data.video import (
    CLIP_MEAN,
    CLIP_STD,
    VideoDecodeError,
    load_video,
    patchify,
    patchify_qwen,
    preprocess_siglip,
    probe_video,
    sample_frame_indices,
    smart_resize,
    unpatchify,
    unpatchify_qwen,
)

CODECS = [c for c in ("libx264", "mpeg4") if c in av.codecs_available]
GREY_TOL = 1.5  # decoded mean vs written grey level (levels are 4 apart)


# ----------------------------------------------------------------------------- sampler


@given(total=st.integers(1, 200_000), data=st.data())
def test_uniform_matches_lmms_eval_expression(total: int, data: st.DataObject) -> None:
    n = data.draw(st.integers(1, min(total, 8192)))
    expected = np.linspace(0, total - 1, n, dtype=int)
    np.testing.assert_array_equal(sample_frame_indices(total, n), expected)


@given(total=st.integers(1, 20_000), n=st.integers(1, 8192))
def test_uniform_properties(total: int, n: int) -> None:
    idx = sample_frame_indices(total, n)
    assert idx.dtype == np.int64 and idx.shape == (n,)
    assert np.all(np.diff(idx) >= 0)
    assert idx.min() >= 0 and idx.max() < total
    if n <= total:
        assert len(np.unique(idx)) == n
        if n >= 2:
            assert idx[0] == 0 and idx[-1] == total - 1
            gaps = np.diff(idx)
            assert gaps.max() - gaps.min() <= 1
    else:
        counts = np.bincount(idx, minlength=total)
        assert counts.min() >= 1 and counts.max() - counts.min() <= 1


@given(total=st.integers(1, 500), data=st.data())
def test_collision_fix_makes_indices_unique_with_small_moves(
    total: int, data: st.DataObject
) -> None:
    n = data.draw(st.integers(1, total))
    raw = np.sort(np.array(data.draw(st.lists(st.integers(0, total - 1), min_size=n, max_size=n))))
    fixed = video._separate(raw.astype(np.int64), total)
    assert np.all(np.diff(fixed) >= 1) and fixed.min() >= 0 and fixed.max() < total
    # Already-distinct input is left alone; otherwise no index moves further than n.
    if len(np.unique(raw)) == n:
        np.testing.assert_array_equal(fixed, raw)
    assert np.abs(fixed - raw).max() <= n


def test_uniform_small_cases() -> None:
    assert sample_frame_indices(10, 4).tolist() == [0, 3, 6, 9]
    assert sample_frame_indices(10, 3).tolist() == [0, 4, 9]
    assert sample_frame_indices(7, 1).tolist() == [0]
    assert sample_frame_indices(1, 3).tolist() == [0, 0, 0]
    assert sample_frame_indices(2, 4).tolist() == [0, 0, 1, 1]
    assert sample_frame_indices(5, 5).tolist() == [0, 1, 2, 3, 4]


def test_fps_mode_small_cases() -> None:
    # 120 frames at 24 fps = 5 s; 2 samples per second -> times 0, 0.5, ..., 4.5.
    idx = sample_frame_indices(120, video_fps=24, sample_fps=2)
    assert idx.tolist() == list(range(0, 120, 12))
    # Capped at 4: uniform over those 10 -> positions 0, 3, 6, 9.
    assert sample_frame_indices(120, 4, video_fps=24, sample_fps=2).tolist() == [0, 36, 72, 108]
    # Exact multiples must not fall one frame short through float error (30 / 0.3 = 100).
    assert sample_frame_indices(1000, video_fps=30, sample_fps=0.3).tolist() == list(
        range(0, 1000, 100)
    )
    # Shorter than one sampling period: still one frame.
    assert sample_frame_indices(3, video_fps=30, sample_fps=1).tolist() == [0]


@given(
    total=st.integers(1, 50_000),
    video_fps=st.floats(1.0, 120.0),
    sample_fps=st.floats(0.05, 60.0),
    cap=st.one_of(st.none(), st.integers(1, 8192)),
)
def test_fps_mode_properties(
    total: int, video_fps: float, sample_fps: float, cap: int | None
) -> None:
    idx = sample_frame_indices(total, cap, video_fps=video_fps, sample_fps=sample_fps)
    count = max(1, math.ceil(total * sample_fps / video_fps - 1e-9))
    effective_cap = 8192 if cap is None else cap
    assert len(idx) == min(count, effective_cap)
    assert np.all(np.diff(idx) >= 0)
    assert idx.min() >= 0 and idx.max() < total
    if count <= effective_cap:
        times = np.arange(len(idx)) / sample_fps
        # Each index is the frame showing at time k / sample_fps.
        assert np.all(idx / video_fps <= times + 1e-6)
        assert np.all(times < (idx + 1) / video_fps + 1e-6)


@pytest.mark.parametrize(
    "kwargs, names",
    [  # each error names the argument: numpy or math raising ValueError on its own would not
        (dict(total_frames=10, num_frames=0), "num_frames"),
        (dict(total_frames=10, num_frames=8193), "num_frames"),
        (dict(total_frames=10, num_frames=-3), "num_frames"),
        (dict(total_frames=10, num_frames=True), "num_frames"),
        (dict(total_frames=10, num_frames=2.0), "num_frames"),
        (dict(total_frames=0, num_frames=4), "total_frames"),
        (dict(total_frames=-1, num_frames=4), "total_frames"),
        (dict(total_frames=10), "num_frames"),
        (dict(total_frames=10, sample_fps=1.0), "video_fps"),
        (dict(total_frames=10, video_fps=30.0, sample_fps=0.0), "sample_fps"),
        (dict(total_frames=10, video_fps=30.0, sample_fps=-1.0), "sample_fps"),
        (dict(total_frames=10, video_fps=30.0, sample_fps=float("nan")), "sample_fps"),
        (dict(total_frames=10, video_fps=0.0, sample_fps=1.0), "video_fps"),
        (dict(total_frames=10, num_frames=0, video_fps=30.0, sample_fps=1.0), "num_frames"),
    ],
)
def test_sampler_rejects_bad_arguments(kwargs: dict, names: str) -> None:
    with pytest.raises(ValueError, match=names):
        sample_frame_indices(**kwargs)


# ----------------------------------------------------------------------------- decoding


def _assert_frames_are(clip: video.VideoClip, frame_level) -> None:
    means = clip.frames.reshape(len(clip.frames), -1).mean(axis=1)
    np.testing.assert_allclose(means, frame_level(clip.indices), atol=GREY_TOL)


@pytest.mark.parametrize("codec", CODECS)
def test_load_video_uniform_returns_the_right_frames(make_video, frame_level, codec: str) -> None:
    path = make_video(num_frames=48, fps=12, width=64, height=48, codec=codec)
    clip = load_video(path, 8)
    assert clip.frames.dtype == np.uint8 and clip.frames.shape == (8, 48, 64, 3)
    assert clip.indices.dtype == np.int64
    np.testing.assert_array_equal(clip.indices, sample_frame_indices(48, 8))
    assert clip.video_fps == pytest.approx(12.0)
    assert clip.total_frames == 48 and clip.duration == pytest.approx(4.0)
    assert clip.path == str(path)
    np.testing.assert_allclose(clip.timestamps, clip.indices / 12.0)
    _assert_frames_are(clip, frame_level)


def test_load_video_fps_mode(make_video, frame_level) -> None:
    path = make_video(num_frames=48, fps=12)
    clip = load_video(path, sample_fps=3.0)  # 4 s at 3 fps -> every 4th frame
    assert clip.indices.tolist() == list(range(0, 48, 4))
    np.testing.assert_allclose(clip.timestamps, np.arange(12) / 3.0)
    _assert_frames_are(clip, frame_level)
    capped = load_video(path, sample_fps=3.0, max_frames=5)
    assert len(capped.indices) == 5
    _assert_frames_are(capped, frame_level)
    assert load_video(path, 4, sample_fps=3.0).indices.tolist() == [0, 12, 28, 44]


def test_load_video_more_frames_than_video(make_video, frame_level) -> None:
    path = make_video(num_frames=10, fps=10)
    clip = load_video(path, 25)
    assert clip.frames.shape[0] == 25
    assert np.bincount(clip.indices).tolist() == [3, 2, 3, 2, 3, 2, 3, 2, 3, 2]
    _assert_frames_are(clip, frame_level)


def test_load_video_all_frames_sequential_and_single_seeks(make_video, frame_level) -> None:
    path = make_video(num_frames=60, fps=24)
    _assert_frames_are(load_video(path, 60), frame_level)
    for n in (1, 2, 3, 7):  # sparse requests seek across keyframes (GOP 12)
        _assert_frames_are(load_video(path, n), frame_level)


def test_probe_video(make_video) -> None:
    path = make_video(num_frames=36, fps=12, width=80, height=32)
    info = probe_video(path)
    assert (info.width, info.height, info.total_frames) == (80, 32, 36)
    assert info.fps == pytest.approx(12.0) and info.duration == pytest.approx(3.0)
    assert info.path == str(path)


def _bad_files(make_video, tmp_path) -> dict[str, os.PathLike]:
    good = make_video("good.mp4", num_frames=48).read_bytes()
    fast = make_video("fast.mp4", num_frames=48, faststart=True).read_bytes()
    files = {
        "missing": tmp_path / "does_not_exist.mp4",
        "empty": tmp_path / "empty.mp4",
        "truncated_40pct": tmp_path / "trunc40.mp4",
        "truncated_100_bytes": tmp_path / "trunc100.mp4",
        "faststart_truncated_40pct": tmp_path / "fast_trunc40.mp4",
        "faststart_truncated_100_bytes": tmp_path / "fast_trunc100.mp4",
        "random_bytes": tmp_path / "random.mp4",
        "directory": tmp_path / "a_directory.mp4",
    }
    files["empty"].write_bytes(b"")
    files["truncated_40pct"].write_bytes(good[: int(len(good) * 0.4)])
    files["truncated_100_bytes"].write_bytes(good[:100])
    files["faststart_truncated_40pct"].write_bytes(fast[: int(len(fast) * 0.4)])
    files["faststart_truncated_100_bytes"].write_bytes(fast[:100])
    files["random_bytes"].write_bytes(np.random.default_rng(0).bytes(20_000))
    files["directory"].mkdir()
    return files


BAD_KINDS = [
    "missing",
    "empty",
    "truncated_40pct",
    "truncated_100_bytes",
    "faststart_truncated_40pct",
    "faststart_truncated_100_bytes",
    "random_bytes",
    "directory",
]


@pytest.mark.parametrize("kind", BAD_KINDS)
def test_bad_files_raise_with_path(make_video, tmp_path, kind: str) -> None:
    path = _bad_files(make_video, tmp_path)[kind]
    for call in (
        lambda: load_video(path, 4),
        lambda: probe_video(path),
        lambda: load_video(path, sample_fps=1.0),
    ):
        with pytest.raises(VideoDecodeError) as info:
            call()
        assert str(path) in str(info.value)
        assert isinstance(info.value, RuntimeError) and info.value.path == str(path)


def test_links_that_lead_nowhere_say_so(tmp_path) -> None:
    """Was: a symlink loop (and a broken link) was reported as "file not found", which sends
    the user looking for a file that is there."""
    loop = tmp_path / "loop.mp4"
    loop.symlink_to(loop)
    gone = tmp_path / "gone.mp4"
    gone.symlink_to(tmp_path / "nowhere.mp4")
    with pytest.raises(VideoDecodeError, match="symlink loop"):
        load_video(loop, 4)
    with pytest.raises(VideoDecodeError, match="broken symlink: its target .*nowhere.mp4 does not exist"):
        probe_video(gone)
    with pytest.raises(VideoDecodeError, match="file not found"):
        load_video(tmp_path / "missing.mp4", 4)


class _ReaderWithBrokenBatch:
    """Wraps a real decord reader; get_batch misbehaves like decord on a damaged file."""

    def __init__(self, reader, mode: str) -> None:
        self._reader, self._mode = reader, mode

    def __len__(self) -> int:
        return len(self._reader)

    def get_avg_fps(self) -> float:
        return self._reader.get_avg_fps()

    def get_batch(self, indices):
        if self._mode == "raise":
            raise video.decord.DECORDError("av_read_frame failed")
        frames = self._reader.get_batch(indices).asnumpy()
        return video.decord.nd.array(frames[:-1])  # one frame short


@pytest.mark.parametrize("mode", ["raise", "short"])
def test_failures_during_frame_decoding_raise(make_video, monkeypatch, mode: str) -> None:
    path = make_video(num_frames=24)
    real = video.decord.VideoReader
    monkeypatch.setattr(
        video.decord, "VideoReader", lambda *a, **k: _ReaderWithBrokenBatch(real(*a, **k), mode)
    )
    with pytest.raises(VideoDecodeError, match="truncated or corrupt") as info:
        load_video(path, 6)
    assert str(path) in str(info.value)


def test_argument_errors_come_before_opening(tmp_path) -> None:
    missing = tmp_path / "missing.mp4"
    with pytest.raises(ValueError):
        load_video(missing)  # neither num_frames nor sample_fps
    with pytest.raises(ValueError):
        load_video(missing, 100, max_frames=10)
    with pytest.raises(ValueError):
        load_video(missing, 0)
    with pytest.raises(ValueError):
        load_video(missing, sample_fps=-1.0)


# ----------------------------------------------------------------------------- resizing


def test_preprocess_siglip_shape_and_values() -> None:
    frames = np.stack([np.full((30, 50, 3), v, np.uint8) for v in (0, 51, 255)])
    out = preprocess_siglip(frames, 16)
    assert out.shape == (3, 3, 16, 16) and out.dtype == torch.float32
    expected = torch.tensor([0, 51, 255], dtype=torch.float32) / 255 * 2 - 1
    torch.testing.assert_close(out.mean(dim=(1, 2, 3)), expected, atol=1e-6, rtol=0)
    same = preprocess_siglip(frames[:, :16, :16], 16)  # no resize at the target size
    torch.testing.assert_close(
        same, torch.from_numpy(frames[:, :16, :16]).permute(0, 3, 1, 2) / 127.5 - 1
    )


def _smooth_image(h: int, w: int) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w]
    chans = [128 + 100 * np.sin(xx / 9.0), 128 + 100 * np.cos(yy / 7.0), (xx + yy) % 256]
    return np.stack(chans, axis=-1).astype(np.uint8)  # [h, w, 3]


@pytest.mark.parametrize("size", [32, 200])  # down- and up-sampling
def test_preprocess_siglip_matches_transformers_pil_processor(size: int) -> None:
    from transformers.models.siglip.image_processing_pil_siglip import SiglipImageProcessorPil

    img = _smooth_image(90, 120)
    ref = SiglipImageProcessorPil(size={"height": size, "width": size})(
        images=[img], return_tensors="pt"
    )
    ours = preprocess_siglip(img[None], size)  # [1, 3, S, S]
    # torch's antialiased bicubic and PIL's agree to one grey level (rounding).
    assert (ours - ref["pixel_values"]).abs().max() <= 1.0 / 127.5 + 1e-6


def test_preprocess_rejects_non_uint8() -> None:
    with pytest.raises(ValueError):
        preprocess_siglip(np.zeros((2, 8, 8, 3), np.float32), 4)
    with pytest.raises(ValueError):
        patchify_qwen(np.zeros((2, 8, 8), np.uint8))


def _reference_smart_resize():
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import smart_resize as ref

    return ref


@settings(max_examples=300)
@given(
    h=st.integers(1, 6000),
    w=st.integers(1, 6000),
    factor=st.sampled_from([14, 28, 32]),
    min_pixels=st.integers(1, 200_000),
    max_pixels=st.integers(1, 2_000_000),
)
def test_smart_resize_equals_transformers(h, w, factor, min_pixels, max_pixels) -> None:
    ref = _reference_smart_resize()
    if max(h, w) / min(h, w) > 200:
        with pytest.raises(ValueError):
            smart_resize(h, w, factor, min_pixels, max_pixels)
        return
    assert smart_resize(h, w, factor, min_pixels, max_pixels) == ref(
        h, w, factor, min_pixels, max_pixels
    )


@given(
    h=st.integers(1, 8000),
    aspect=st.floats(1.0, 4.0),
    tall=st.booleans(),
    factor=st.sampled_from([14, 28, 32]),
    min_mult=st.integers(1, 64),
    max_ratio=st.integers(16, 2000),
)
def test_smart_resize_invariants(h, aspect, tall, factor, min_mult, max_ratio) -> None:
    # Domain where the rule provably lands in range: aspect <= 4, min >= factor^2,
    # max >= 16 * min (see smart_resize's docstring for the extremes outside it).
    w = max(1, round(h * aspect))
    if tall:
        h, w = w, h
    min_pixels = factor * factor * min_mult
    max_pixels = min_pixels * max_ratio
    rh, rw = smart_resize(h, w, factor, min_pixels, max_pixels)
    assert rh % factor == 0 and rw % factor == 0 and rh >= factor and rw >= factor
    assert min_pixels <= rh * rw <= max_pixels


def test_smart_resize_rejects_extreme_aspect() -> None:
    with pytest.raises(ValueError, match="aspect ratio"):
        smart_resize(10, 2010)


# ----------------------------------------------------------------------------- patchify


def test_patchify_qwen_matches_transformers_image_processor() -> None:
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    img = np.random.default_rng(0).integers(0, 256, size=(56, 84, 3), dtype=np.uint8)
    assert smart_resize(56, 84) == (56, 84)  # already at the target size: no resize either side
    ref = Qwen2VLImageProcessorPil()(images=[img], do_resize=False, return_tensors="pt")
    for frames in (img[None], np.stack([img, img])):  # one frame is padded to two
        pixel_values, grid = patchify_qwen(frames)
        assert grid == tuple(ref["image_grid_thw"][0].tolist()) == (1, 4, 6)
        assert pixel_values.shape == ref["pixel_values"].shape == (24, 3 * 2 * 14 * 14)
        torch.testing.assert_close(pixel_values, ref["pixel_values"].float(), atol=1e-5, rtol=0)


def test_patchify_qwen_with_resize_matches_transformers() -> None:
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    img = _smooth_image(90, 130)
    ref = Qwen2VLImageProcessorPil()(images=[img], return_tensors="pt")
    pixel_values, grid = patchify_qwen(img[None])
    assert grid == tuple(ref["image_grid_thw"][0].tolist())
    one_level = 1 / 255 / min(CLIP_STD)
    assert (pixel_values - ref["pixel_values"]).abs().max() <= one_level + 1e-5


@settings(max_examples=60, deadline=None)
@given(
    t=st.integers(1, 5),
    patch_size=st.sampled_from([2, 4, 14]),
    merge_size=st.sampled_from([1, 2]),
    tps=st.sampled_from([1, 2, 3]),
    gh=st.integers(1, 4),
    gw=st.integers(1, 4),
    seed=st.integers(0, 2**16),
)
def test_patchify_qwen_round_trip(t, patch_size, merge_size, tps, gh, gw, seed) -> None:
    factor = patch_size * merge_size
    h, w = gh * factor, gw * factor
    frames = np.random.default_rng(seed).integers(0, 256, size=(t, h, w, 3), dtype=np.uint8)
    kwargs = dict(patch_size=patch_size, temporal_patch_size=tps, merge_size=merge_size)
    pixel_values, grid = patchify_qwen(frames, min_pixels=1, max_pixels=10**9, **kwargs)
    grid_t = -(-t // tps)
    assert grid == (grid_t, h // patch_size, w // patch_size)
    assert pixel_values.shape == (
        grid_t * (h // patch_size) * (w // patch_size),
        3 * tps * patch_size**2,
    )
    back = unpatchify_qwen(pixel_values, grid, **kwargs)  # [grid_t*tps, 3, H, W]
    x = torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255
    x = (x - torch.tensor(CLIP_MEAN).view(1, 3, 1, 1)) / torch.tensor(CLIP_STD).view(1, 3, 1, 1)
    padded = torch.cat([x, x[-1:].expand(grid_t * tps - t, -1, -1, -1)])  # last frame repeated
    torch.testing.assert_close(back, padded, atol=1e-6, rtol=0)


def test_patchify_qwen_merge_windows_are_consecutive_rows() -> None:
    # With merge_size 2, rows 4k..4k+3 must be one 2x2 window (they merge into one LLM token).
    h, w, ps = 4 * 14, 4 * 14, 14
    patch_id = np.arange((h // ps) * (w // ps)).reshape(h // ps, w // ps)  # row-major patch id
    img = np.kron(patch_id, np.ones((ps, ps), dtype=np.int64)).astype(np.uint8)
    frames = np.repeat(img[None, :, :, None], 3, axis=-1)  # [1, H, W, 3]
    pixel_values, _ = patchify_qwen(frames, min_pixels=1, max_pixels=10**9)
    row_ids = (pixel_values[:, 0] * CLIP_STD[0] + CLIP_MEAN[0]) * 255
    expected = [0, 1, 4, 5, 2, 3, 6, 7, 8, 9, 12, 13, 10, 11, 14, 15]
    assert row_ids.round().long().tolist() == expected


def test_unpatchify_qwen_rejects_wrong_grid() -> None:
    pixel_values = torch.zeros(24, 3 * 2 * 14 * 14)
    with pytest.raises(ValueError):
        unpatchify_qwen(pixel_values, (1, 4, 4))


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(1, 3),
    c=st.integers(1, 4),
    patch=st.integers(1, 8),
    ph=st.integers(1, 5),
    pw=st.integers(1, 5),
)
def test_patchify_round_trip(n, c, patch, ph, pw) -> None:
    frames = torch.randn(n, c, ph * patch, pw * patch)
    patches = patchify(frames, patch)
    assert patches.shape == (n, ph * pw, c * patch * patch)
    torch.testing.assert_close(
        unpatchify(patches, patch, ph * patch, pw * patch), frames, rtol=0, atol=0
    )


def test_patchify_matches_conv_patch_embedding() -> None:
    torch.manual_seed(0)
    frames = torch.randn(2, 3, 28, 42)
    conv = torch.nn.Conv2d(3, 16, kernel_size=14, stride=14, bias=False)
    ref = conv(frames).flatten(2).transpose(1, 2)  # [N, P, 16], row-major patches
    ours = patchify(frames, 14) @ conv.weight.flatten(1).T  # [N, P, 16]
    torch.testing.assert_close(ours, ref, atol=1e-4, rtol=1e-4)


def test_patchify_rejects_indivisible() -> None:
    with pytest.raises(ValueError):
        patchify(torch.zeros(1, 3, 30, 28), 14)
    with pytest.raises(ValueError):
        unpatchify(torch.zeros(1, 6, 3 * 14 * 14), 14, 28, 28)


def test_clip_frame_seconds_is_duration_over_frames(make_video):
    path = make_video(num_frames=48, fps=12)
    clip = load_video(path, 8)
    assert clip.duration == pytest.approx(4.0) and clip.frame_seconds == pytest.approx(0.5)


@pytest.mark.parametrize("total, fps, kwargs, expected", [
    # nframes mode: 7 rounds to 8 (Python round(3.5) = 4); linspace(0, 99, 8) rounded
    (100, 30.0, {"nframes": 7}, [0, 14, 28, 42, 57, 71, 85, 99]),
    # fps mode: 10 s at 2 fps = 20 frames
    (300, 30.0, {}, list(np.round(np.linspace(0, 299, 20)).astype(int))),
    # a 1 s clip at 2 fps asks 2 frames, clamped up to the minimum 4
    (30, 30.0, {}, [0, 10, 19, 29]),
    # an hour at 2 fps is 7200 frames, capped at 768
    (108000, 30.0, {}, None),
])
def test_qwen_frame_indices(total, fps, kwargs, expected):
    """qwen-vl-utils smart_nframes + torch.linspace(...).round() (worked by hand)."""
    idx = video.qwen_frame_indices(total, fps, **kwargs)
    if expected is None:
        assert len(idx) == 768 and idx[0] == 0 and idx[-1] == total - 1
    else:
        assert idx.tolist() == expected


def test_qwen_sampler_in_load_video(make_video):
    path = make_video(num_frames=48, fps=12)
    assert load_video(path, 5, sampler="qwen").indices.tolist() == [0, 16, 31, 47]  # 5 -> 4
    assert len(load_video(path, sample_fps=2.0, sampler="qwen").indices) == 8  # 4 s at 2 fps
    with pytest.raises(ValueError, match="frame sampler"):
        load_video(path, 4, sampler="nearest")


def test_qwen_sampling_of_a_video_shorter_than_its_frames_is_a_decode_skip(make_video):
    """A 1-frame video under qwen sampling is the video's problem (a counted skip naming it,
    as the recipes and eval treat unreadable videos), not a setting error that stops the run;
    fewer than 2 frames asked is the setting's."""
    path = make_video(num_frames=1, fps=12)
    with pytest.raises(VideoDecodeError, match=r"has 1 frames; qwen frame sampling takes 4") as err:
        load_video(path, 4, sampler="qwen")
    assert str(path) in str(err.value)
    with pytest.raises(ValueError, match="at least 2 frames"):
        video.qwen_frame_indices(48, 12.0, nframes=1)
