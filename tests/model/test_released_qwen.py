"""A folder in the released Qwen2.5-VL layout (legacy weight names, image-only
preprocessor bounds) loads with every tensor, and prompts a video with its own template."""

from __future__ import annotations

import numpy as np
import torch
from safetensors.torch import load_file

from harness.model.build import load_model
from harness.model.qwen_vl import VIDEO_MAX_PIXELS, VIDEO_MIN_PIXELS, VIDEO_TOTAL_PIXELS
from tests.model.released_qwen import write_released_qwen


def test_released_qwen_loads_every_tensor(tmp_path):
    root = write_released_qwen(tmp_path / "qwen")
    model = load_model(root)
    files = load_file(root / "model.safetensors")
    ours = model.model.state_dict()
    renamed = {k.replace("model.", "model.language_model.", 1) if k.startswith("model.")
               else k.replace("visual.", "model.visual.", 1) if k.startswith("visual.") else k: v
               for k, v in files.items()}
    assert set(renamed) == set(ours)
    for k, v in renamed.items():
        assert torch.equal(ours[k], v), k
    assert model.video_pixels == (VIDEO_MIN_PIXELS, VIDEO_MAX_PIXELS, VIDEO_TOTAL_PIXELS)
    # what we save carries the released names again (other loaders, vLLM included, read it)
    model.save_pretrained(tmp_path / "ours")
    saved = {}
    for f in (tmp_path / "ours").glob("*.safetensors"):
        saved.update(load_file(f))
    assert set(saved) == set(files)


def test_released_qwen_video_prompt(tmp_path):
    model = load_model(write_released_qwen(tmp_path / "qwen"))
    tok = model.tokenizer
    ids = model.chat_prompt_ids("Why?")
    text = ("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n"
            "<|vision_start|><|video_pad|><|vision_end|>Why?<|im_end|>\n<|im_start|>assistant\n")
    assert ids.tolist() == tok(text)["input_ids"]
    frames = np.random.default_rng(0).integers(0, 255, (4, 252, 448, 3), dtype=np.uint8)
    video = model.encode_frames(frames, np.arange(4.0) / 2)
    # 4 frames of 252x448: the budget allows VIDEO_MAX_PIXELS, above this area, so the size
    # only rounds to multiples of 28: 252x448 -> 9x16 merged tokens per 2-frame unit
    assert video.embeds.shape[:2] == (2, 9 * 16) and video.grid_hw == (9, 16)
    prompt = model.build_prompt(ids, video)
    assert prompt.positions.shape == (3, len(prompt)) and model.end_of_turn_id == tok.convert_tokens_to_ids("<|im_end|>")
