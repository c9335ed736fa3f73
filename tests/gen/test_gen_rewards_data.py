"""Generation rewards and prompt files: the programmatic rewards score pictures drawn
independently (PIL / numpy) high when they show what the prompt asks and low otherwise;
BRISQUE prefers a clean picture to its noisy copy; plug-ins in our and in Long-RL's
signature; the anchors' prompt files read as published."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from harness.algos.gen_rewards import (
    PALETTE,
    UnscorablePrompt,
    image_request,
    motion_match,
    shape_match,
)
from harness.gen.data import read_prompts, synthesize_gen
from harness.gen.rewards import load_gen_reward


def _draw(shape: str, colour: str, box: tuple[int, int, int, int], size: int = 32) -> torch.Tensor:
    img = Image.new("RGB", (size, size), (40, 40, 40))
    d = ImageDraw.Draw(img)
    rgb = tuple(int(255 * v) for v in PALETTE[colour])
    x0, y0, x1, y1 = box
    if shape == "square":
        d.rectangle(box, fill=rgb)
    elif shape == "circle":
        d.ellipse(box, fill=rgb)
    else:
        d.polygon([((x0 + x1) / 2, y0), (x1, y1), (x0, y1)], fill=rgb)
    return torch.from_numpy(np.array(img)).permute(2, 0, 1).float() / 255  # [3, H, W]


TOP_LEFT, BOTTOM_RIGHT = (2, 2, 13, 13), (18, 18, 29, 29)  # the quadrants less 15% margins


@pytest.mark.parametrize("shape", ["square", "circle", "triangle"])
def test_shape_match_wants_colour_shape_and_place(shape):
    prompt = f"a photo of a red {shape} in the top left"
    right = shape_match(_draw(shape, "red", TOP_LEFT)[None], [prompt])
    wrong_place = shape_match(_draw(shape, "red", BOTTOM_RIGHT)[None], [prompt])
    wrong_colour = shape_match(_draw(shape, "blue", TOP_LEFT)[None], [prompt])
    noise = shape_match(torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(0)), [prompt])
    assert right > 0.6 and max(wrong_place, wrong_colour, noise) < 0.2
    others = [s for s in ("square", "circle", "triangle") if s != shape]
    for other in others:  # the requested shape beats the others drawn in the same place
        assert right > shape_match(_draw(other, "red", TOP_LEFT)[None], [prompt])


def _moving(colour: str, dx: int, frames: int = 5, size: int = 16) -> torch.Tensor:
    video = np.full((frames, size, size, 3), 40, dtype=np.uint8)
    rgb = (np.array(PALETTE[colour]) * 255).astype(np.uint8)
    for f in range(frames):
        x = 6 + dx * f
        video[f, 6:10, x:x + 4] = rgb
    return torch.from_numpy(video).permute(0, 3, 1, 2).float()[None] / 255  # [1, F, 3, H, W]


def test_motion_match_wants_colour_and_direction():
    left, right = _moving("green", -1), _moving("green", 1)
    ask = ["a green square moving left"]
    assert motion_match(left, ask) > 0.5 > motion_match(right, ask) + 0.3
    assert motion_match(_moving("blue", -1), ask) < 0.1
    with pytest.raises(UnscorablePrompt, match="direction"):
        motion_match(left, ["a green square"])
    with pytest.raises(UnscorablePrompt, match="colour"):
        image_request("a photo of a bus below a cat")


def test_brisque_prefers_a_sharp_picture_to_its_blurred_copy_and_scores_videos_by_frames():
    """BRISQUE's SVR is fit on natural pictures with distortions; of those, blur is the one
    a flat toy picture still shows (its noise verdicts on synthetic pictures are not
    meaningful: measured, a noisy copy can score better)."""
    from PIL import ImageFilter

    img = Image.new("RGB", (64, 64), (90, 120, 160))
    d = ImageDraw.Draw(img)
    d.ellipse((10, 10, 40, 40), fill=(200, 60, 40))
    d.rectangle((30, 35, 60, 60), fill=(40, 160, 60))
    sharp, blurred = (torch.from_numpy(np.array(img.filter(ImageFilter.GaussianBlur(r)))).permute(2, 0, 1) / 255
                      for r in (1, 4))
    reward = load_gen_reward("brisque")
    scores = reward(torch.stack([sharp, blurred]), ["", ""], [{}, {}])
    assert "numba" not in sys.modules  # the package (and numba, which breaks vLLM) stays in its worker
    assert 0 <= scores[1] < scores[0] <= 1
    video = torch.stack([sharp] * 16)[None]  # [1, 16, 3, H, W]: 2 frames scored
    torch.testing.assert_close(reward(video, [""], [{}]), scores[:1])


def ours(pixels, prompts, metadata):
    return [float(p.mean()) for p in pixels]


def long_rl_style(reward_inputs, format_weight=0.0):
    return [{"overall": float(r["images"].mean()), "format": 0.0, "accuracy": 0.0} for r in reward_inputs]


def test_plug_ins_in_both_signatures():
    px = torch.rand(3, 3, 8, 8)
    a = load_gen_reward(f"{__name__}:ours")(px, ["x"] * 3, [{}] * 3)
    b = load_gen_reward(f"{__name__}:long_rl_style")(px, ["x"] * 3, [{}] * 3)
    torch.testing.assert_close(a, b)
    with pytest.raises(ValueError, match="cannot be loaded"):
        load_gen_reward("no.such.module:fn")
    with pytest.raises(ValueError, match="unknown reward"):
        load_gen_reward("pickscore")
    with pytest.raises(ValueError, match="scores images"):
        load_gen_reward("shape_match")(torch.rand(1, 2, 3, 8, 8), ["a red square"], [{}])


# Verbatim lines of Flow-GRPO's dataset/geneval/test_metadata.jsonl (yifan123/flow_grpo; the
# same file is Long-RL's examples/diffusion_data/geneval/test_metadata.jsonl).
GENEVAL = [
    '{"tag": "counting", "include": [{"class": "wine glass", "count": 2}], "exclude": [{"class": "wine glass", '
    '"count": 3}], "prompt": "a photo of two wine glasses"}',
    '{"tag": "color_attr", "include": [{"class": "handbag", "count": 1, "color": "pink"}, {"class": "scissors", '
    '"count": 1, "color": "black"}], "prompt": "a photo of a pink handbag and a black scissors"}',
    '{"tag": "position", "include": [{"class": "laptop", "count": 1}, {"class": "cow", "count": 1, "position": '
    '["right of", 0]}], "prompt": "a photo of a cow right of a laptop"}',
]


def test_the_anchors_prompt_files_read_as_published(tmp_path):
    (tmp_path / "test_metadata.jsonl").write_text("\n".join(GENEVAL))  # the published file has no final newline
    got = read_prompts(tmp_path / "test_metadata.jsonl")
    assert [p.prompt for p in got.prompts] == ["a photo of two wine glasses",
                                               "a photo of a pink handbag and a black scissors",
                                               "a photo of a cow right of a laptop"]
    assert got.prompts[2].metadata["include"][1]["position"] == ["right of", 0] and got.malformed == 0
    # Long-RL's prompts-only files and its video data.jsonl
    (tmp_path / "p.jsonl").write_text('{"prompt": "a photo of a yellow bus and an orange handbag"}\n'
                                      '{"prompt": ""}\nnot json\n')
    got = read_prompts(tmp_path / "p.jsonl")
    assert [p.prompt for p in got.prompts] == ["a photo of a yellow bus and an orange handbag"] and got.malformed == 2
    (tmp_path / "data.jsonl").write_text('{"text": "The sun rises over the quiet mountain peaks."}\n')
    assert read_prompts(tmp_path / "data.jsonl").prompts[0].prompt == "The sun rises over the quiet mountain peaks."
    (tmp_path / "test.txt").write_text("A neon sign reading \"OPEN 24 HOURS\" above a diner.\n\n")
    assert len(read_prompts(tmp_path / "test.txt").prompts) == 1
    (tmp_path / "empty.jsonl").write_text("{}\n")
    with pytest.raises(ValueError, match="holds no prompts"):
        read_prompts(tmp_path / "empty.jsonl")


@pytest.mark.parametrize("modality, reward", [("gen-image", "shape_match"), ("gen-video", "motion_match")])
def test_synthetic_prompt_sets_hold_out_unseen_combinations(tmp_path, modality, reward):
    counts = synthesize_gen(tmp_path, modality, 50, seed=3)
    assert counts == {"train": 40, "test": 10}
    train, test = (read_prompts(tmp_path / f"{s}.jsonl").prompts for s in ("train", "test"))
    assert not {p.prompt for p in train} & {p.prompt for p in test}
    check = load_gen_reward(reward).check
    for p in train + test:
        check(p.prompt)
    if modality == "gen-image":
        assert json.loads((tmp_path / "train.jsonl").read_text().splitlines()[0])["tag"] == "color_attr"


def test_clip_score_is_the_models_own_logit_for_each_pair(tmp_path):
    """A CLIP-style reward model from a local folder (random toy CLIP here; PickScore is
    the same class): each sample's score is the model's logits_per_image for its own
    prompt, divided by `scale`; a video's is its frames' mean."""
    from transformers import CLIPConfig, CLIPModel, CLIPProcessor, CLIPTextConfig, CLIPVisionConfig
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

    from harness.gen.tokenizer import clip_tokenizer

    tok = clip_tokenizer(16)
    text = CLIPTextConfig(vocab_size=len(tok), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                          num_attention_heads=2, max_position_embeddings=16, bos_token_id=0, eos_token_id=1,
                          pad_token_id=1)
    vision = CLIPVisionConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
                              image_size=32, patch_size=8)
    torch.manual_seed(0)
    model = CLIPModel(CLIPConfig(text_config=text.to_dict(), vision_config=vision.to_dict(), projection_dim=8))
    proc = CLIPProcessor(image_processor=CLIPImageProcessorPil(size={"shortest_edge": 32},
                                                               crop_size={"height": 32, "width": 32}), tokenizer=tok)
    model.save_pretrained(tmp_path / "clip")
    proc.save_pretrained(tmp_path / "clip")
    reward = load_gen_reward("clip_score", str(tmp_path / "clip"), scale=26.0)
    pixels = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    prompts = ["a red square", "a blue circle"]
    images = [(p * 255).round().byte().permute(1, 2, 0).numpy() for p in pixels]
    with torch.no_grad():
        ref = model(**proc(text=prompts, images=images, return_tensors="pt", padding=True)).logits_per_image.diag()
    torch.testing.assert_close(reward(pixels, prompts, [{}, {}]), ref / 26.0, rtol=1e-4, atol=1e-5)
    video = torch.stack([pixels[0], pixels[0]])[None]  # [1, 2, 3, H, W]
    torch.testing.assert_close(reward(video, prompts[:1], [{}]), ref[:1] / 26.0, rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="reward.model_path"):
        load_gen_reward("clip_score")
