"""Images and several images in one Qwen2.5-VL prompt: an image is one unit of the video
path (the frame repeated over the temporal patch, as Qwen2-VL's image processor does);
prompts with images (and video) give transformers' own logits, and the vLLM request carries
`image_embeds` + `image_grid_thw` whose M-RoPE positions equal the trainer's."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from harness.model.build import init_model
from harness.model.qwen_vl import vllm_mrope_positions


@pytest.fixture(scope="module")
def qwen():
    return init_model("qwen2_5_vl", "tiny")


def _image(seed: int, h: int = 40, w: int = 56) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_image_pixels_are_the_image_processors(qwen):
    """Our patches equal transformers' Qwen2-VL image processor (PIL backend) under the
    checkpoint's image bounds, rows and grid alike."""
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    p, v = qwen.preprocess_cfg, qwen.model.config.vision_config
    proc = Qwen2VLImageProcessorPil(min_pixels=p["min_pixels"], max_pixels=p["max_pixels"], patch_size=v.patch_size,
                                    temporal_patch_size=v.temporal_patch_size, merge_size=v.spatial_merge_size)
    yy, xx = np.mgrid[0:40, 0:56]
    smooth = np.stack([xx * 4, yy * 6, (xx + yy) * 2], axis=-1).astype(np.uint8)  # [40, 56, 3]: a resize keeps it exact-ish
    ref = proc(images=[smooth], return_tensors="pt")
    image = qwen.encode_image(smooth)
    pixels = ref["pixel_values"]  # [h*w, 3*2*p*p]
    (t, h, w), = ref["image_grid_thw"].tolist()
    assert (t, image.embeds.shape[0]) == (1, 1)
    m = v.spatial_merge_size
    assert image.grid_hw == (h // m, w // m) and image.kind == "image" and image.seconds_per_unit == 0.0
    from harness.data.video import patchify_qwen

    ours, grid = patchify_qwen(smooth[None], patch_size=v.patch_size, temporal_patch_size=v.temporal_patch_size,
                               merge_size=m, min_pixels=p["min_pixels"], max_pixels=p["max_pixels"])
    assert grid == (t, h, w)
    one_level = 1 / 255 / min(p["image_std"])  # uint8 resize rounding, as for video frames
    assert (ours - pixels).abs().max() <= one_level + 1e-5


def test_two_images_and_a_video_give_transformers_logits(qwen):
    """Our path (cached embeddings spliced in order, multi-span M-RoPE) equals the model's
    own forward on the same pixels, for two images before a video."""
    images = [_image(1), _image(2, 32, 32)]
    frames = np.random.default_rng(3).integers(0, 256, (4, 32, 32, 3), dtype=np.uint8)
    ts = np.arange(4) * 0.25  # short spacing: both position rules agree on the video
    media = [qwen.encode_image(im) for im in images] + [qwen.encode_frames(frames, ts)]
    content = [{"type": "image"}, {"type": "text", "text": "and"}, {"type": "image"}, {"type": "video"},
               {"type": "text", "text": "Same object?"}]  # one user turn: image, text, image, video, text
    ids = qwen.chat_prompt_ids(content, media=())
    prompt = qwen.build_prompt(ids, media)
    assert [k for k, _, _ in prompt.spans] == ["image", "image", "video"]
    v = qwen.model.config.vision_config
    from harness.data.video import patchify_qwen

    p = qwen.preprocess_cfg
    image_pixels = [patchify_qwen(im[None], patch_size=v.patch_size, temporal_patch_size=v.temporal_patch_size,
                                  merge_size=v.spatial_merge_size, min_pixels=p["min_pixels"],
                                  max_pixels=p["max_pixels"]) for im in images]
    video = qwen.preprocess(frames, ts)
    u, h, w = video.units.shape[0], *video.grid_hw
    image_id, video_id = qwen.placeholder_id("image"), qwen.placeholder_id("video")
    types = (prompt.input_ids == image_id).int() + 2 * (prompt.input_ids == video_id).int()
    with torch.no_grad():
        ours = qwen.lm_head(qwen.hidden_states(prompt.embeds[None], prompt.positions[:, None]))
        hf = qwen.model(
            input_ids=prompt.input_ids[None],
            pixel_values=torch.cat([px for px, _ in image_pixels]),
            image_grid_thw=torch.tensor([list(g) for _, g in image_pixels]),
            pixel_values_videos=video.units.reshape(u * h * w, -1),
            video_grid_thw=torch.tensor([[u, h, w]]),
            second_per_grid_ts=torch.tensor([video.seconds_per_unit]),
            mm_token_type_ids=types[None],
        ).logits
    torch.testing.assert_close(ours, hf, rtol=1e-4, atol=1e-5)


def test_vllm_request_for_images_and_a_video(qwen):
    """Each medium folds back to one placeholder; the embeddings and grids are listed per
    kind in prompt order, and vLLM's rule on them gives the trainer's positions."""
    frames = np.zeros((6, 32, 32, 3), dtype=np.uint8)
    media = [qwen.encode_image(_image(4)), qwen.encode_frames(frames, np.arange(6.0)), qwen.encode_image(_image(5))]
    content = [{"type": "image"}, {"type": "video"}, {"type": "text", "text": "Q"}, {"type": "image"}]
    prompt = qwen.build_prompt(qwen.chat_prompt_ids(content, media=()), media)
    request = qwen.rollout_request(prompt)
    ids = torch.tensor(request["prompt_token_ids"])
    assert (ids == qwen.placeholder_id("image")).sum() == 2 and (ids == qwen.placeholder_id("video")).sum() == 1
    mm = request["multi_modal_data"]
    images = mm["image"]
    assert images["image_embeds"].shape[0] == sum(m.num_tokens for m in media if m.kind == "image")
    assert images["image_grid_thw"][:, 0].tolist() == [1, 1]
    assert mm["video"]["video_grid_thw"][0, 0] == 3
    assert len(request["prompt_token_ids"]) == len(prompt) - sum(m.num_tokens - 1 for m in media)


def test_vllm_rule_of_several_spans_matches_ours_over_shapes(qwen):
    """The multi-span rule written against vLLM 0.32 agrees with `mrope_segments` for
    image (t 1) and video spans in any order."""
    from harness.model.positions import mrope_segments

    rng = np.random.default_rng(0)
    for _ in range(50):
        segments, ours, cursor = [], [], int(rng.integers(0, 5))
        for _ in range(int(rng.integers(1, 4))):
            units, rows, cols = int(rng.integers(1, 5)), int(rng.integers(1, 4)), int(rng.integers(1, 4))
            seconds = 0.0 if units == 1 else float(rng.choice([0.5, 1.0, 2.5]))
            ours.append((cursor, (units, rows, cols), seconds, 2.0))
            segments.append((cursor, units, rows, cols, 1.0 if units == 1 else seconds * 2.0))
            cursor += units * rows * cols + int(rng.integers(0, 4))
        length = cursor + int(rng.integers(0, 3))
        assert torch.equal(mrope_segments(length, ours), vllm_mrope_positions(length, segments))


def test_a_saved_and_reloaded_model_keeps_its_encoder_settings(qwen, tmp_path):
    """The disk embedding cache's key: a reloaded tower config records its dtype, a fresh one
    does not; the settings must not differ for that (the weights' dtype is keyed apart)."""
    from harness.model.build import load_model

    qwen.save_pretrained(tmp_path / "m")
    assert load_model(tmp_path / "m").encoder_settings() == qwen.encoder_settings()
