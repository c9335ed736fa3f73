"""Qwen2.5-VL video frames are sized as Qwen's own video pipeline sizes them
(QwenLM/Qwen2.5-VL qwen-vl-utils/src/qwen_vl_utils/vision_process.py `fetch_video`), not
with the image bounds of preprocessor_config.json. Expected numbers are worked by hand."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from harness.data.video import smart_resize
from harness.model.qwen_vl import (
    VIDEO_MAX_PIXELS,
    VIDEO_MIN_PIXELS,
    VIDEO_TOTAL_PIXELS,
    video_frame_max_pixels,
)


def _tokens_per_frame(height, width, frames, lo=VIDEO_MIN_PIXELS, hi=VIDEO_MAX_PIXELS, total=VIDEO_TOTAL_PIXELS):
    h, w = smart_resize(height, width, 28, lo, video_frame_max_pixels(frames, lo, hi, total))
    return (h // 28) * (w // 28) // 2  # one merged token per 28x28 block, two frames per unit


@pytest.mark.parametrize("frames, expected", [
    # 16 frames: the budget 90316800 / 16 * 2 is above VIDEO_MAX_PIXELS = 602112, so
    # 720x1280 shrinks by sqrt(921600 / 602112) = 1.237 to 560x1008: 20 x 36 / 2 = 360.
    (16, 360),
    # 512 frames: 90316800 / 512 * 2 = 352800 per frame -> 420x784: 15 x 28 / 2 = 210.
    (512, 210),
])
def test_720p_tokens_per_frame(frames, expected):
    assert _tokens_per_frame(720, 1280, frames) == expected


def test_long_rl_preset_gives_60_tokens_per_frame():
    """Long-RL's copy of qwen-vl-utils caps VIDEO_MAX_PIXELS at 128*28*28; the 1.05 floor
    makes the cap 105369, so 720x1280 -> 224x420: 8 x 15 / 2 = 60 (`tokens_per_frame=60`
    of examples/new_supports/qwen2_5_vl_3b_video_1h.sh)."""
    assert video_frame_max_pixels(3600, 128 * 28 * 28, 128 * 28 * 28, VIDEO_TOTAL_PIXELS) == 105369
    assert _tokens_per_frame(720, 1280, 3600, hi=128 * 28 * 28) == 60


def test_image_bounds_are_not_used_for_video(tiny_qwen):
    """A checkpoint whose preprocessor_config holds only the released image bounds
    (min 3136, max 12845056) sizes video frames with the video defaults."""
    tiny_qwen.preprocess_cfg = {k: v for k, v in tiny_qwen.preprocess_cfg.items() if not k.startswith("video_")}
    tiny_qwen.preprocess_cfg.update(min_pixels=3136, max_pixels=12845056)
    assert tiny_qwen.video_pixels == (VIDEO_MIN_PIXELS, VIDEO_MAX_PIXELS, VIDEO_TOTAL_PIXELS)


def test_video_prompt_layout(tiny_qwen):
    """Golden layout: <|vision_start|> U*h*w video rows <|vision_end|>, M-RoPE positions."""
    tok = tiny_qwen.tokenizer
    frames = np.random.default_rng(0).integers(0, 255, (4, 32, 32, 3), dtype=np.uint8)
    video = tiny_qwen.encode_frames(frames, np.arange(4.0) / 2)
    prompt = tiny_qwen.build_prompt(tiny_qwen.chat_prompt_ids("Why?"), video)
    start, end = prompt.spans[0][1:]
    u, (h, w) = video.embeds.shape[0], video.grid_hw
    assert (u, end - start) == (2, u * h * w)
    ids = prompt.input_ids.tolist()
    assert ids[start - 1] == tok.convert_tokens_to_ids("<|vision_start|>")
    assert ids[end] == tok.convert_tokens_to_ids("<|vision_end|>")
    assert prompt.positions.shape == (3, len(prompt))
    assert torch.equal(prompt.positions[:, start - 1], torch.full((3,), start - 1))


def test_time_axis_uses_the_seconds_each_frame_stands_for(tiny_qwen):
    """qwen-vl-utils: second_per_grid_t = temporal_patch_size / sample_fps with sample_fps =
    frames / total frames x video fps, i.e. 2 x duration / frames. 8 frames of a 10 s video
    taken at indices 0..299 by linspace: mean spacing 1.2857 s, Qwen's 1.25 s per frame."""
    frames = np.zeros((8, 32, 32, 3), dtype=np.uint8)
    timestamps = np.linspace(0, 299, 8).astype(np.int64) / 30.0
    assert tiny_qwen.preprocess(frames, timestamps, frame_seconds=10.0 / 8).seconds_per_unit == 2.5
    assert tiny_qwen.preprocess(frames, timestamps).seconds_per_unit == pytest.approx(2 * 299 / 7 / 30)


def test_first_harness_qwen_folders_keep_their_small_bounds(tiny_qwen, tmp_path):
    """Folders this harness wrote before it had video bounds carry only its toy image bounds
    (32x32): video is sized with those, not with Qwen's 128*28*28 minimum (which would give
    a toy frame hundreds of tokens)."""
    import json

    from harness.model.build import load_model

    tiny_qwen.save_pretrained(tmp_path / "old")
    pre = tmp_path / "old" / "preprocessor_config.json"
    cfg = {k: v for k, v in json.loads(pre.read_text()).items() if not k.startswith("video_")}
    pre.write_text(json.dumps(cfg))
    old = load_model(tmp_path / "old")
    assert old.video_pixels == (32 * 32, 32 * 32, VIDEO_TOTAL_PIXELS)
    frames = np.zeros((2, 48, 64, 3), dtype=np.uint8)
    assert old.encode_frames(frames, np.arange(2.0)).embeds.shape[:2] == tiny_qwen.encode_frames(
        frames, np.arange(2.0)).embeds.shape[:2]
