"""A checkpoint in the released LongVILA-R1-7B layout loads, uses every tensor of its files,
and prompts exactly as the released code does (tests/model/released_vila.py builds it)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from harness.model.build import load_model
from harness.model.vila_config import parse_video_encoder
from harness.model.vila_projector import merge_blocks
from tests.model.released_vila import write_released_vila


@pytest.fixture(scope="module")
def released(tmp_path_factory):
    return write_released_vila(tmp_path_factory.mktemp("longvila-r1"))


def _files_state(folder):
    state = {}
    for f in sorted(folder.glob("*.safetensors")):
        state.update(load_file(f))
    return state


def test_every_tensor_of_the_files_is_in_the_model(released):
    model = load_model(released)
    for part, module in (("llm", model.llm), ("vision_tower", model.vision_tower), ("mm_projector", model.mm_projector)):
        files = _files_state(released / part)
        ours = module.state_dict()
        assert set(files) == set(ours), part
        for k, v in files.items():
            assert torch.equal(ours[k], v.to(ours[k].dtype)), f"{part}/{k}"


def test_two_frame_video_prompt_layout(released):
    """Golden layout: the tokenizer's template over '<vila/video>' + question, eos/pad ids
    dropped (modeling_vila.py `_embed`), then 2 x (4 tokens + the '\\n' end token)."""
    model = load_model(released)
    tok = model.tokenizer
    ids = model.chat_prompt_ids("Why?")
    text = ("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
            "<|im_start|>user\n<vila/video>Why?<|im_end|>\n<|im_start|>assistant\n")
    im_end = tok.convert_tokens_to_ids("<|im_end|>")
    expected = [i for i in tok(text)["input_ids"] if i != im_end]
    assert ids.tolist() == expected
    assert model.video_token_id == tok.convert_tokens_to_ids("<vila/video>") == 151650 - 151643 + 256

    frames = np.random.default_rng(0).integers(0, 255, (2, 40, 70, 3), dtype=np.uint8)
    video = model.encode_frames(frames, np.array([0.0, 1.0]))
    assert video.embeds.shape == (2, 4, 64)  # 56/14 = 4x4 patches -> 2x2 tokens per frame
    prompt = model.build_prompt(ids, video)
    start, end = prompt.spans[0][1:]
    assert start == ids.tolist().index(model.video_token_id)
    assert end - start == 2 * (4 + 1)
    newline = model.embed_tokens(torch.tensor(tok("\n")["input_ids"]))[0]
    rows = prompt.embeds[start:end].reshape(2, 5, -1)
    assert torch.equal(rows[:, :4], video.embeds)
    assert torch.equal(rows[:, 4], newline.expand(2, -1))
    assert torch.equal(prompt.positions, torch.arange(len(prompt)))
    assert model.end_of_turn_id == im_end


def test_merge_token_order_is_the_released_one():
    """flat_square_2x2 on a 4x4 grid of 1-channel patches numbered row-major: token (i, j)
    holds patches (2i, 2j), (2i, 2j+1), (2i+1, 2j), (2i+1, 2j+1), tokens row-major."""
    x = torch.arange(16.0).reshape(1, 4, 4, 1)
    out = merge_blocks(x, 2)[0]
    assert out.tolist() == [[0, 1, 4, 5], [2, 3, 6, 7], [8, 9, 12, 13], [10, 11, 14, 15]]
    odd = merge_blocks(torch.arange(9.0).reshape(1, 3, 3, 1), 2)[0]  # zero-padded to 4x4
    assert odd.tolist() == [[0, 1, 3, 4], [2, 0, 5, 0], [6, 7, 0, 0], [8, 0, 0, 0]]


@pytest.mark.parametrize("ptype, tokens", [("mlp_downsample", 4), ("mlp_downsample_3x3_fix", 4),
                                           ("linear", 16), ("mlp2x_gelu", 16)])
def test_each_projector_type_loads_and_saves_its_released_keys(tmp_path, ptype, tokens):
    root = write_released_vila(tmp_path / "ck", projector_type=ptype)
    model = load_model(root)
    files = load_file(root / "mm_projector" / "model.safetensors")
    assert set(model.mm_projector.state_dict()) == set(files)
    frames = np.zeros((2, 56, 56, 3), dtype=np.uint8)
    assert model.encode_frames(frames, np.arange(2.0)).embeds.shape == (2, tokens, 64)
    model.save_pretrained(tmp_path / "ours")
    assert set(load_file(tmp_path / "ours" / "mm_projector" / "model.safetensors")) == set(files)


def test_3x3_merge_token_order():
    """flat_square_3x3 on a 4x4 grid: padded to 6x6, tokens row-major, each holding its
    3x3 block row by row."""
    out = merge_blocks(torch.arange(1.0, 17.0).reshape(1, 4, 4, 1), 3)[0]
    assert out.tolist() == [[1, 2, 3, 5, 6, 7, 9, 10, 11], [4, 0, 0, 8, 0, 0, 12, 0, 0],
                            [13, 14, 15, 0, 0, 0, 0, 0, 0], [16, 0, 0, 0, 0, 0, 0, 0, 0]]


def test_tokens_per_frame_at_the_released_resolution():
    """LongVILA-R1-7B: SigLIP 448/14 = 32x32 patches -> 16x16 = 256 tokens + '\\n' = 257
    rows per frame, the `tokens_per_frame=257` of Long-RL's longvila_7b_video_grpo.sh."""
    from harness.model.build import init_model

    model = init_model("vila", "7b")
    assert model.token_grid(None) == (16, 16)
    assert model.spec.video_encoder.end_tokens == "\n"


def test_our_save_is_the_released_layout(released, tmp_path):
    model = load_model(released)
    model.save_pretrained(tmp_path / "ours")
    top = json.loads((tmp_path / "ours" / "config.json").read_text())
    assert top["model_type"] == "vila" and top["mm_vision_select_feature"] == "cls_patch"
    # the loaded config's keys are kept (the authors' loader needs auto_map)
    assert top["auto_map"]["AutoModel"] == "modeling_vila.VILAForCausalLM" and top["num_video_frames"] == 256
    assert json.loads(top["video_encoder"])["_target_"].endswith("BasicVideoEncoder")
    proj = json.loads((tmp_path / "ours" / "mm_projector" / "config.json").read_text())
    assert proj == {"architectures": ["MultimodalProjector"], "model_type": "v2l_projector",
                    "mm_projector_type": "mlp_downsample_2x2_fix"}
    again = load_model(tmp_path / "ours")
    frames = np.random.default_rng(1).integers(0, 255, (2, 30, 30, 3), dtype=np.uint8)
    ids = model.chat_prompt_ids("q")
    a = model.build_prompt(ids, model.encode_frames(frames, np.arange(2.0)))
    b = again.build_prompt(again.chat_prompt_ids("q"), again.encode_frames(frames, np.arange(2.0)))
    assert torch.equal(a.embeds, b.embeds)


def test_a_tensor_missing_from_the_files_is_an_error(tmp_path):
    root = write_released_vila(tmp_path / "ck")
    shard = next((root / "llm").glob("model-00001-*.safetensors"))
    state = load_file(shard)
    dropped = sorted(state)[0]
    del state[dropped]
    save_file(state, shard, metadata={"format": "pt"})
    with pytest.raises(ValueError, match="missing from the files"):
        load_model(root)


def test_an_extra_tensor_in_the_projector_is_an_error(tmp_path):
    root = write_released_vila(tmp_path / "ck")
    f = root / "mm_projector" / "model.safetensors"
    state = load_file(f)
    state["layers.9.weight"] = torch.zeros(2)
    save_file(state, f)
    with pytest.raises(ValueError, match="mm_projector"):
        load_model(root)


@pytest.mark.parametrize("overrides, match", [
    ({"s2": True}, "s2"),
    ({"num_time_tokens": 100}, "time tokens"),
    ({"image_aspect_ratio": "dynamic", "video_max_tiles": 4}, "tiled video frames"),
    ({"mm_vision_select_feature": "patch"}, "not a square grid"),
    ({"video_encoder": '{"_target_": "llava.model.encoders.FancyEncoder"}'}, "FancyEncoder"),
])
def test_unimplemented_parts_are_named(tmp_path, overrides, match):
    root = write_released_vila(tmp_path / "ck", top_overrides=overrides)
    with pytest.raises(ValueError, match=match):
        load_model(root)


def test_unimplemented_projector_is_named(tmp_path):
    root = write_released_vila(tmp_path / "ck", projector_type="mlp_downsample_3x3_s2")
    with pytest.raises(ValueError, match="mlp_downsample_3x3_s2"):
        load_model(root)


def test_tsp_encoder_pools_frames(tmp_path):
    """TSPVideoEncoder pool [2, 1, 1]: the mean of each pair of frames' tokens, one end
    token per pair (NVlabs/VILA llava/model/encoders/video/tsp.py)."""
    enc = '{"_target_": "llava.model.encoders.TSPVideoEncoder", "pool_sizes": [[2, 1, 1]]}'
    assert parse_video_encoder(enc, "x").pool == (2, 1, 1)
    root = write_released_vila(tmp_path / "ck", top_overrides={"video_encoder": enc})
    model = load_model(root)
    frames = np.random.default_rng(2).integers(0, 255, (4, 28, 28, 3), dtype=np.uint8)
    video = model.encode_frames(frames, np.arange(4.0))
    assert video.embeds.shape == (2, 4, 64)
    plain = load_model(write_released_vila(tmp_path / "plain"))
    per_frame = plain.encode_frames(frames, np.arange(4.0)).embeds  # same weights (seed 0)
    torch.testing.assert_close(video.embeds, per_frame.reshape(2, 2, 4, -1).mean(1))
    with pytest.raises(ValueError, match="multiple of 2"):
        model.preprocess(frames[:3], np.arange(3.0))
    # the recipes and harness eval say so before decoding any video
    from harness.config import DataConfig
    from harness.trainer.common import check_frame_counts

    assert model.frames_per_unit == 2
    check_frame_counts(model, DataConfig(num_frames=4))
    for bad in (DataConfig(num_frames=5), DataConfig(num_frames=4, min_frames=2), DataConfig(num_frames=4, fps=1.0)):
        with pytest.raises(ValueError, match="pools 2 frames"):
            check_frame_counts(model, bad)


def test_first_harness_layout_reads_with_its_own_prompt(tmp_path):
    """Checkpoints this harness wrote before it used the released layout (commit c78cc17's
    `VilaModel.save_pretrained`: top config `model_type: llava_llama`, `harness_family`,
    `mm_vision_select_feature: "patch"` while keeping every token; Qwen's `<|video_pad|>`
    placeholder; no end token per frame) load and prompt as they were trained."""
    from harness.model.build import init_model
    from harness.model.interface import VideoLM

    init_model("vila", "tiny", seed=0).save_pretrained(tmp_path / "old")
    top = {"model_type": "llava_llama", "harness_family": "vila", "mm_projector_type": "mlp_downsample",
           "mm_vision_select_layer": -2, "mm_vision_select_feature": "patch", "mm_hidden_size": 32, "hidden_size": 64}
    (tmp_path / "old" / "config.json").write_text(json.dumps(top))
    (tmp_path / "old" / "mm_projector" / "config.json").write_text(
        json.dumps({"mm_projector_type": "mlp_downsample", "mm_hidden_size": 32, "hidden_size": 64}))
    model = load_model(tmp_path / "old")
    assert model.spec.prompt_format == "harness-v0" and model.spec.select_feature == "cls_patch"
    ids = model.chat_prompt_ids("q")
    assert torch.equal(ids, VideoLM.chat_prompt_ids(model, "q"))
    assert model.video_token_id == model.tokenizer.convert_tokens_to_ids("<|video_pad|>")
    frames = np.zeros((2, 32, 32, 3), dtype=np.uint8)
    video = model.encode_frames(frames, np.arange(2.0))
    start, end = model.build_prompt(ids, video).spans[0][1:]
    assert end - start == video.num_tokens  # no end tokens
    model.save_pretrained(tmp_path / "again")  # the released layout, its prompt format recorded
    again = load_model(tmp_path / "again")
    assert again.spec.prompt_format == "harness-v0" and torch.equal(again.chat_prompt_ids("q"), ids)


def test_image_prompt_layout_is_the_released_image_encoders(released, tmp_path):
    """Golden layout for images (modeling_vila.py `encoders["image"]` = BasicImageEncoder with
    its defaults; media.py `extract_media`): the user text is the content's parts in order,
    `<image>` per image; each image's rows are its tokens then the '\\n' embedding once. An
    image goes through the tower and projector as a video frame does (`encode_images` serves
    both), but is never time-pooled, even under a TSP video encoder."""
    model = load_model(released)
    tok = model.tokenizer
    content = [{"type": "image"}, {"type": "text", "text": "left,"}, {"type": "image"},
               {"type": "text", "text": " right: same?"}]
    ids = model.chat_prompt_ids(content, media=())
    text = ("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
            "<|im_start|>user\n<image>left,<image> right: same?<|im_end|>\n<|im_start|>assistant\n")
    im_end = tok.convert_tokens_to_ids("<|im_end|>")
    assert ids.tolist() == [i for i in tok(text)["input_ids"] if i != im_end]
    assert model.chat_prompt_ids("Count.", media=("image",)).tolist() == [
        i for i in tok(text.replace("<image>left,<image> right: same?", "<image>Count."))["input_ids"] if i != im_end]

    rng = np.random.default_rng(4)
    images = [rng.integers(0, 255, (30, 50, 3), dtype=np.uint8), rng.integers(0, 255, (28, 28, 3), dtype=np.uint8)]
    media = [model.encode_image(im) for im in images]
    assert [(m.kind, tuple(m.embeds.shape)) for m in media] == [("image", (1, 4, 64))] * 2
    for im, m in zip(images, media, strict=True):  # one frame of a video: the same tokens
        torch.testing.assert_close(m.embeds, model.encode_frames(im[None], np.zeros(1)).embeds)
    prompt = model.build_prompt(ids, media)
    newline = model.embed_tokens(torch.tensor(tok("\n")["input_ids"]))[0]
    assert [kind for kind, _, _ in prompt.spans] == ["image", "image"]
    for (_, start, end), m in zip(prompt.spans, media, strict=True):
        assert end - start == 4 + 1
        assert torch.equal(prompt.embeds[start:start + 4], m.embeds[0])
        assert torch.equal(prompt.embeds[end - 1], newline)
    assert torch.equal(prompt.positions, torch.arange(len(prompt)))

    enc = '{"_target_": "llava.model.encoders.TSPVideoEncoder", "pool_sizes": [[2, 1, 1]]}'
    tsp = load_model(write_released_vila(tmp_path / "tsp", top_overrides={"video_encoder": enc}))
    torch.testing.assert_close(tsp.encode_image(images[0]).embeds, media[0].embeds)  # same weights, unpooled


def test_image_prompts_refused_where_the_released_code_has_none(released, tmp_path):
    model = load_model(released)
    with pytest.raises(Exception, match="one video alone or images only"):
        model.chat_prompt_ids("q", media=("image", "video"))
    with pytest.raises(Exception, match="takes no audio"):
        model.chat_prompt_ids("q", media=("audio",))
    from harness.model.build import init_model

    init_model("vila", "tiny", seed=0).save_pretrained(tmp_path / "old")
    top = {"model_type": "llava_llama", "harness_family": "vila", "mm_projector_type": "mlp_downsample",
           "mm_vision_select_layer": -2, "mm_vision_select_feature": "patch", "mm_hidden_size": 32, "hidden_size": 64}
    (tmp_path / "old" / "config.json").write_text(json.dumps(top))
    old = load_model(tmp_path / "old")  # the harness's first layout: trained on videos only
    with pytest.raises(Exception, match="takes no image input"):
        old.chat_prompt_ids("q", media=("image",))
    with pytest.raises(Exception, match="takes no image input"):
        old.encode_medium("image", np.zeros((28, 28, 3), dtype=np.uint8))


def test_s2_tiling_takes_videos_and_refuses_images_by_name(tmp_path):
    """NVILA's `dynamic_s2` tiles a prompt's single image at several scales for the S2 tower
    (mm_utils.py `process_image`): not implemented. Frames still resize, so videos run,
    images are refused with the reason, and a save keeps the config's own aspect."""
    root = write_released_vila(tmp_path / "ck", top_overrides={"image_aspect_ratio": "dynamic_s2"})
    model = load_model(root)
    assert model.media_kinds == ("video",) and model.spec.aspect == "resize"
    frames = np.random.default_rng(0).integers(0, 255, (2, 28, 28, 3), dtype=np.uint8)
    model.build_prompt(model.chat_prompt_ids("Why?"), model.encode_frames(frames, np.arange(2.0)))
    with pytest.raises(Exception, match="dynamic_s2.*S2 vision tower"):
        model.chat_prompt_ids("Count.", media=("image",))
    model.save_pretrained(tmp_path / "again")
    assert json.loads((tmp_path / "again" / "config.json").read_text())["image_aspect_ratio"] == "dynamic_s2"


def test_dynamic_tiling_prompt_is_the_released_processors(released, tmp_path):
    """`image_aspect_ratio: "dynamic"` (auto_processor.py `__single_call__`): a prompt's only
    image becomes its tiles then a thumbnail, and the user text's `<image>` becomes
    `<image>\n` once per tile before tokenising. A 112 x 56 image at the tower's 56 is a
    (2, 1) grid: tile 0 is its left half, tile 1 its right half, tile 2 the whole image
    resized, each as the `resize` model (same weights) encodes that picture alone. Prompts
    with several images are not tiled: they equal the `resize` model's."""
    model = load_model(write_released_vila(tmp_path / "dyn", top_overrides={"image_aspect_ratio": "dynamic"}))
    plain = load_model(released)
    tok = model.tokenizer
    assert model.media_kinds == ("image", "video") and model.spec.tiles == (1, 12)
    image = np.random.default_rng(5).integers(0, 255, (56, 112, 3), dtype=np.uint8)
    ids = model.chat_prompt_ids("Count.", media=("image",), image_sizes=[(56, 112)])
    text = ("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
            "<|im_start|>user\n<image>\n<image>\n<image>\nCount.<|im_end|>\n<|im_start|>assistant\n")
    im_end = tok.convert_tokens_to_ids("<|im_end|>")
    assert ids.tolist() == [i for i in tok(text)["input_ids"] if i != im_end]

    medium = model.encode_image(image)
    assert medium.embeds.shape == (3, 4, 64)
    prompt = model.build_prompt(ids, medium)
    newline = model.embed_tokens(torch.tensor(tok("\n")["input_ids"]))[0]
    pictures = [image[:, :56], image[:, 56:], image]
    assert [kind for kind, _, _ in prompt.spans] == ["image"] * 3
    for (_, start, end), picture in zip(prompt.spans, pictures, strict=True):
        assert end - start == 4 + 1
        # one batch of three tower inputs against one at a time: float32 reordering only
        torch.testing.assert_close(prompt.embeds[start:start + 4], plain.encode_image(picture).embeds[0],
                                   rtol=1e-4, atol=1e-4)
        assert torch.equal(prompt.embeds[end - 1], newline)  # the image encoder's end text
        assert prompt.input_ids[end].item() == tok("\n")["input_ids"][0]  # the rewritten text's "\n"

    content = [{"type": "image"}, {"type": "text", "text": "and"}, {"type": "image"}]
    two = [image, image[:, :56]]
    tiled = model.build_prompt(model.chat_prompt_ids(content, media=(), image_sizes=[i.shape[:2] for i in two]),
                               [model.encode_image(i) for i in two])
    untiled = plain.build_prompt(plain.chat_prompt_ids(content, media=()), [plain.encode_image(i) for i in two])
    assert torch.equal(tiled.input_ids, untiled.input_ids)
    torch.testing.assert_close(tiled.embeds, untiled.embeds, rtol=1e-4, atol=1e-4)  # batched tiles, as above

    # the image last: the rewritten text is stripped after the rewrite, as released
    last = model.chat_prompt_ids([{"type": "text", "text": "Count:"}, {"type": "image"}], media=(),
                                 image_sizes=[(56, 112)])
    assert last.tolist() == [i for i in tok(text.replace("<image>\n<image>\n<image>\nCount.",
                                                         "Count:<image>\n<image>\n<image>"))["input_ids"]
                             if i != im_end]
    with pytest.raises(ValueError, match="image_sizes"):
        model.chat_prompt_ids("Count.", media=("image",))
    model.save_pretrained(tmp_path / "again")
    saved = json.loads((tmp_path / "again" / "config.json").read_text())
    assert (saved["image_aspect_ratio"], saved["min_tiles"], saved["max_tiles"]) == ("dynamic", 1, 12)


def test_tile_limits_are_read_and_checked(tmp_path):
    root = write_released_vila(tmp_path / "a", top_overrides={"image_aspect_ratio": "dynamic", "max_tiles": 2})
    model = load_model(root)
    assert model.spec.tiles == (1, 2)
    square = np.zeros((120, 120, 3), dtype=np.uint8)  # (2, 2) would suit it; max_tiles 2 allows (1, 1)
    assert model.encode_image(square).embeds.shape[0] == 1
    bad = write_released_vila(tmp_path / "b", top_overrides={"image_aspect_ratio": "dynamic", "min_tiles": 3,
                                                             "max_tiles": 2})
    with pytest.raises(ValueError, match="min_tiles"):
        load_model(bad)
