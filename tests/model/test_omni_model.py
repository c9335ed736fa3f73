"""The `qwen2_5_omni` family (harness/model/omni.py) on a tiny thinker (omni_config "tiny",
the local omni tokenizer), pinned to transformers' own Qwen2.5-Omni thinker:

* prompts with text only, an image, a video, an audio, a video with its audio track (and
  mixes) built by `build_prompt` score exactly as transformers' forward scores the same
  media given as pixels and log-mel features: the prompt ids are transformers' processor
  expansion (`Qwen2_5OmniProcessor.replace_multimodal_special_tokens`, on a stand-in that
  holds what it reads: the full processor needs torchvision for its video processor, which
  the CPU environment lacks), image pixels come from transformers' Qwen2-VL image
  processor, audio features from the Whisper extractor called as the processor calls it,
  positions from the thinker's `get_rope_index` (responses continue as `generate` does);
* audio encoded in 2-s units equals the tower on the whole track, also split over 2 ranks;
* save / load round trips, and a folder in the released Qwen2.5-Omni layout loads;
* trainability, the vLLM refusal, the HF engine (this family's rollout engine), positions
  against omni_positions' rules.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from transformers import (
    Qwen2_5OmniConfig,
    Qwen2_5OmniThinkerForConditionalGeneration,
    Qwen2VLImageProcessorPil,
)
from transformers.models.qwen2_5_omni.processing_qwen2_5_omni import Qwen2_5OmniProcessor

from harness.data.audio import AudioClip, log_mel_features, omni_feature_extractor
from harness.data.video import patchify_qwen
from harness.model.batch import pack_groups
from harness.model.batch import response_logprobs as packed_logprobs
from harness.model.interface import MediaEmbeds
from harness.model.omni import VLLM_REFUSAL, OmniInputError, OmniModel
from harness.model.omni_config import OMNI_PIXELS, omni_thinker_config
from harness.model.omni_positions import omni_mrope_positions
from harness.model.omni_tokenizer import VIDEO_WITH_AUDIO, build_omni_tokenizer, omni_token_ids
from harness.rollout.engine import SamplingConfig
from harness.rollout.hf_engine import HFEngine
from tests.parallel.launch import run_distributed

RATE = 16000
SIDE = 56  # frame side: one 2x2-token grid at patch 14, the tiny size's bounds exactly


def build_tiny(seed: int = 0) -> OmniModel:
    tok = build_omni_tokenizer()
    torch.manual_seed(seed)
    config = omni_thinker_config("tiny", len(tok), omni_token_ids(tok))
    model = OmniModel.from_config(config, tok, *OMNI_PIXELS["tiny"])
    model.use_harness_attention()
    return model.eval()


@functools.cache
def _tiny() -> OmniModel:
    return build_tiny()


# --- media -------------------------------------------------------------------------------

def _frames(count: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (count, SIDE, SIDE, 3), dtype=np.uint8)  # [N, H, W, 3]


def _clip(seconds: float, seed: int) -> AudioClip:
    rng = np.random.default_rng(seed)
    n = int(round(seconds * RATE))
    tone = 0.3 * np.sin(2 * np.pi * 440 * np.arange(n) / RATE)
    samples = (tone + 0.1 * rng.standard_normal(n)).astype(np.float32)  # [N]
    return AudioClip(samples, RATE, 0.0, n / RATE)


# (kind, data) in prompt order; "video": (frames, seconds between frames); a "video+audio"
# item is (frames, spacing, audio seconds)
CASES = {
    "text": [],
    "image": [("image", 0)],
    "video": [("video", (8, 0.5))],
    "audio": [("audio", 4.3)],
    "video+audio": [("video+audio", (8, 0.5, 4.3))],
    # audio shorter than the video: text after the span resumes below the video's maximum
    "video+short audio": [("video+audio", (8, 0.5, 2.5))],
    # 3 s per temporal grid: transformers' one-token chunks (omni-notes)
    "slow video+audio": [("video+audio", (6, 1.5, 7.0))],
    "image, audio, video+audio": [("image", 1), ("audio", 2.2), ("video+audio", (4, 0.5, 3.1))],
}


def _inputs(case: str):
    """(our media list [MediaEmbeds], content items, raw media for the reference)."""
    model, raw = _tiny(), []
    with torch.no_grad():
        media, content = [], []
        for k, (kind, data) in enumerate(CASES[case]):
            content.append({"type": kind})
            if kind == "image":
                image = _frames(1, 100 + k)[0]
                media.append(model.encode_image(image))
                raw.append(("image", image))
                continue
            if kind == "audio":
                clip = _clip(data, 200 + k)
                media.append(model.encode_audio(clip))
                raw.append(("audio", clip))
                continue
            frames = _frames(data[0], 300 + k)
            media.append(model.encode_frames(frames, np.arange(data[0]) * data[1]))
            raw.append(("video", (frames, data[1])))
            if kind == "video+audio":
                clip = _clip(data[2], 400 + k)
                media.append(model.encode_audio(clip))
                raw.append(("audio", clip))
    return media, content, raw


def _prompt_ids(case: str, content: list[dict]) -> torch.Tensor:
    """Ours: a lone video+audio through `chat_prompt_ids(media=("video", "audio"))`,
    anything else as a content list through the toy template."""
    model = _tiny()
    if [c["type"] for c in content] == ["video+audio"]:
        return model.chat_prompt_ids("What happens?", media=("video", "audio"))
    return model.chat_prompt_ids([*content, {"type": "text", "text": "What happens?"}], media=())


# --- the transformers reference ---------------------------------------------------------------

def _hf_expand(text: str, grids: dict, use_audio_in_video: bool) -> str:
    """transformers' processor expansion of the rendered prompt text."""
    proc = SimpleNamespace(audio_token="<|AUDIO|>", image_token="<|IMAGE|>", video_token="<|VIDEO|>",
                           vision_bos_token="<|vision_bos|>", vision_eos_token="<|vision_eos|>",
                           audio_bos_token="<|audio_bos|>", audio_eos_token="<|audio_eos|>",
                           image_processor=SimpleNamespace(merge_size=2), video_processor=SimpleNamespace(merge_size=2))
    proc.get_chunked_index = functools.partial(Qwen2_5OmniProcessor.get_chunked_index, proc)
    (out,) = Qwen2_5OmniProcessor.replace_multimodal_special_tokens(
        proc, [text], iter(grids["audio_lengths"]), iter(grids["image_grid_thw"]), iter(grids["video_grid_thw"]),
        video_second_per_grid=iter(grids["video_second_per_grid"]), use_audio_in_video=use_audio_in_video,
        position_id_per_seconds=25, seconds_per_chunk=2.0)
    return out


def _reference(case: str, content: list[dict], raw: list):
    """transformers' thinker inputs for the same prompt and media: (kwargs, input_ids [L])."""
    model = _tiny()
    tok = model.tokenizer
    paired = any(c["type"] == "video+audio" for c in content)
    released = [{"type": "video" if c["type"] == "video+audio" else c["type"]} for c in content]
    text = tok.apply_chat_template(
        [{"role": "user", "content": [*released, {"type": "text", "text": "What happens?"}]}],
        tokenize=False, add_generation_prompt=True)
    images = [x for kind, x in raw if kind == "image"]
    videos = [x for kind, x in raw if kind == "video"]
    audios = [x.samples for kind, x in raw if kind == "audio"]
    kw: dict = {"use_audio_in_video": paired}
    grids = {"image_grid_thw": [], "video_grid_thw": [], "video_second_per_grid": [], "audio_lengths": []}
    if images:
        lo, hi = OMNI_PIXELS["tiny"]
        out = Qwen2VLImageProcessorPil(size={"shortest_edge": lo, "longest_edge": hi}, patch_size=14,
                                       temporal_patch_size=2, merge_size=2)(images=images, return_tensors="pt")
        kw.update(pixel_values=out["pixel_values"], image_grid_thw=out["image_grid_thw"])
        grids["image_grid_thw"] = out["image_grid_thw"]
    if videos:
        lo, hi = OMNI_PIXELS["tiny"]
        pixels, thw = zip(*(patchify_qwen(f, patch_size=14, temporal_patch_size=2, merge_size=2, min_pixels=lo,
                                          max_pixels=hi) for f, _ in videos), strict=True)
        kw.update(pixel_values_videos=torch.cat(pixels), video_grid_thw=torch.tensor(thw),
                  video_second_per_grid=torch.tensor([2 * spacing for _, spacing in videos]))
        grids.update(video_grid_thw=torch.tensor(thw), video_second_per_grid=[2 * s for _, s in videos])
    if audios:
        # as Qwen2_5OmniProcessor.__call__ calls its feature extractor
        out = omni_feature_extractor()(audios, sampling_rate=RATE, padding="max_length", return_attention_mask=True,
                                       return_tensors="pt")
        mask = out["attention_mask"]  # [n, 30000]
        kw.update(input_features=out["input_features"], feature_attention_mask=mask)
        grids["audio_lengths"] = ((mask.sum(-1) - 1) // 2 + 1 - 2) // 2 + 1
    ids = torch.tensor(tok(_hf_expand(text, grids, paired), add_special_tokens=False)["input_ids"])
    return kw, ids


def _hf_rope(kw: dict, ids: torch.Tensor) -> torch.Tensor:
    """The thinker's own positions [3, L] for the expanded prompt."""
    mask = kw.get("feature_attention_mask")
    positions, _ = _tiny().model.get_rope_index(
        ids[None], kw.get("image_grid_thw"), kw.get("video_grid_thw"), torch.ones(1, len(ids), dtype=torch.long),
        kw["use_audio_in_video"], None if mask is None else mask.sum(-1), kw.get("video_second_per_grid"))
    return positions[:, 0]  # [3, L]


# --- 1. our prompts score as transformers' thinker --------------------------------------------

@pytest.mark.parametrize("case", list(CASES))
def test_prompts_score_as_transformers_thinker(case):
    model = _tiny()
    media, content, raw = _inputs(case)
    ids = _prompt_ids(case, content)
    kw, ref_ids = _reference(case, content, raw)
    response = torch.tensor([40, 41, 42, 43, 44])
    with torch.no_grad():
        prompt = model.build_prompt(ids, media)
        assert torch.equal(prompt.input_ids, ref_ids)  # transformers' expansion, token for token
        ref_positions = _hf_rope(kw, ref_ids)
        assert torch.equal(prompt.positions, ref_positions)
        # the prompt: transformers computes its positions itself
        ref = model.model(input_ids=ref_ids[None], attention_mask=torch.ones(1, len(ref_ids), dtype=torch.long),
                          **kw).logits[0]  # [L, V]
        ours = model.lm_head(model.hidden_states(prompt.embeds[None], prompt.positions[:, None])[0])  # [L, V]
        torch.testing.assert_close(ours, ref, rtol=0, atol=1e-5)
        # a response continues at the prompt's maximum + 1, as transformers' generate does
        full = torch.cat([ref_ids, response])
        tail = torch.arange(len(response)).expand(3, -1) + ref_positions.max() + 1
        logits = model.model(input_ids=full[None], attention_mask=torch.ones(1, len(full), dtype=torch.long),
                             position_ids=torch.cat([ref_positions, tail], 1)[:, None], **kw).logits[0]
        ref_lp = torch.log_softmax(logits[len(ref_ids) - 1 : -1].float(), -1).gather(-1, response[:, None])[:, 0]
        torch.testing.assert_close(model.response_logprobs(prompt, response), ref_lp, rtol=0, atol=1e-5)


@pytest.mark.parametrize("case", ["video+audio", "image, audio, video+audio"])
def test_shared_prefix_packed_rows_equal_one_sequence(case):
    """The harness's packed-row attention (set on the thinker's text model) gives each of
    a prompt's responses the log-probs of scoring it alone."""
    model = _tiny()
    media, content, _ = _inputs(case)
    responses = [torch.tensor([40, 41, 42]), torch.tensor([50, 51, 52, 53])]
    with torch.no_grad():
        prompt = model.build_prompt(_prompt_ids(case, content), media)
        packed = packed_logprobs(model, pack_groups(model, [prompt], [responses]))  # [2, R]
        for k, r in enumerate(responses):
            torch.testing.assert_close(packed[k, : len(r)], model.response_logprobs(prompt, r), rtol=0, atol=1e-5)


def test_spans_name_each_placeholder_group():
    model = _tiny()
    media, content, _ = _inputs("image, audio, video+audio")
    with torch.no_grad():
        prompt = model.build_prompt(_prompt_ids("", content), media)
    kinds = [kind for kind, _, _ in prompt.spans]
    assert kinds == ["image", "audio", "video+audio"]
    _, start, end = prompt.spans[2]
    video, audio = media[2], media[3]
    assert end - start == video.num_tokens + audio.num_tokens
    span_ids = prompt.input_ids[start:end]
    assert int((span_ids == model.tokens.video).sum()) == video.num_tokens
    assert int((span_ids == model.tokens.audio).sum()) == audio.num_tokens
    assert prompt.input_ids[start - 2 : start].tolist() == [model.tokens.vision_bos, model.tokens.audio_bos]
    assert prompt.input_ids[end : end + 2].tolist() == [model.tokens.audio_eos, model.tokens.vision_eos]


def test_media_must_match_the_placeholders():
    model = _tiny()
    media, _, _ = _inputs("video+audio")
    with torch.no_grad():
        with pytest.raises(ValueError, match="take the media"):
            model.build_prompt(model.chat_prompt_ids("q", media=("video",)), media)
        with pytest.raises(ValueError, match="take the media"):
            model.build_prompt(model.chat_prompt_ids("q", media=("video", "audio")), media[:1])
        both = [{"type": "video"}, {"type": "video+audio"}, {"type": "text", "text": "q"}]
        with pytest.raises(ValueError, match="with its audio track and a video without"):
            model.build_prompt(model.chat_prompt_ids(both, media=()), [media[0], *media])


# --- 6. positions: omni_positions' transformers rule (and vLLM's where they agree) -------------

@pytest.mark.parametrize("case", list(CASES))
def test_positions_follow_the_transformers_rule(case):
    model = _tiny()
    media, content, _ = _inputs(case)
    paired = any(kind == "video+audio" for kind, _ in CASES[case])
    with torch.no_grad():
        prompt = model.build_prompt(_prompt_ids(case, content), media)
    grids = dict(image_grid_thw=[model._grid_thw(m) for m in media if m.kind == "image"],
                 video_grid_thw=[model._grid_thw(m) for m in media if m.kind == "video"],
                 video_seconds_per_grid=[m.seconds_per_unit for m in media if m.kind == "video"],
                 audio_tokens=[m.num_tokens for m in media if m.kind == "audio"],
                 use_audio_in_video=paired, timing=model.timing)
    hf = omni_mrope_positions(prompt.input_ids, model.tokens, **grids, rule="transformers")
    assert torch.equal(prompt.positions, hf)
    if not paired:  # the rules agree without a video's own audio
        assert torch.equal(prompt.positions, omni_mrope_positions(prompt.input_ids, model.tokens, **grids,
                                                                  rule="vllm"))


# --- the tokenizer -------------------------------------------------------------------------

def test_template_renders_video_with_audio_as_one_group():
    model = _tiny()
    tok = model.tokenizer
    item = model.chat_prompt_ids([{"type": "video+audio"}, {"type": "text", "text": "q"}], media=())
    assert torch.equal(item, model.chat_prompt_ids("q", media=("video", "audio")))
    text = tok.decode(item)
    assert VIDEO_WITH_AUDIO + "q" in text
    assert "<|audio_bos|><|AUDIO|><|audio_eos|>q" in tok.decode(model.chat_prompt_ids("q", media=("audio",)))
    assert "<|vision_bos|><|VIDEO|><|vision_eos|>q" in tok.decode(model.chat_prompt_ids("q", media=("video",)))
    assert "<|vision_bos|><|IMAGE|><|vision_eos|>q" in tok.decode(model.chat_prompt_ids("q", media=("image",)))
    # the names transformers' Qwen2_5OmniProcessor reads off its tokenizer
    assert (tok.image_token, tok.video_token, tok.audio_token) == ("<|IMAGE|>", "<|VIDEO|>", "<|AUDIO|>")
    assert (tok.audio_bos_token, tok.vision_eos_token) == ("<|audio_bos|>", "<|vision_eos|>")


def test_template_renders_as_the_released_one():
    tok = _tiny().tokenizer
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "audio"}, {"type": "video"},
                                             {"type": "text", "text": "Describe."}]},
                {"role": "assistant", "content": "A cat."}]
    for kw in ({}, {"add_vision_id": True, "add_audio_id": True}):
        ours = tok.apply_chat_template(messages, tokenize=False, **kw)
        released = tok.apply_chat_template(messages, tokenize=False, chat_template=RELEASED_TEMPLATE, **kw)
        assert ours == released


# --- 2. audio in 2-s units ---------------------------------------------------------------------

@pytest.mark.parametrize("seconds", [0.05, 1.99, 2.0, 4.001, 5.37, 12.3])
def test_audio_units_equal_the_tower_on_the_whole_track(seconds):
    """4.001 s: 401 mel frames, whose last frame gives no token (a unit of its own would be empty)."""
    model = _tiny()
    clip = _clip(seconds, 7)
    features = torch.from_numpy(log_mel_features(clip))  # [128, F]
    with torch.no_grad():
        embeds = model.encode_audio(clip)
        whole = model.model.audio_tower(features, feature_lens=torch.tensor([features.shape[1]])).last_hidden_state
    tokens = whole.shape[0]
    assert embeds.kind == "audio" and embeds.grid_hw == (1, tokens) and embeds.embeds.shape == (1, tokens, 64)
    assert embeds.num_tokens == tokens and embeds.seconds_per_unit == pytest.approx(0.04)
    torch.testing.assert_close(embeds.embeds[0], whole, rtol=1e-5, atol=1e-6)


def test_audio_too_long_or_too_short_is_refused():
    model = _tiny()
    long = AudioClip(np.zeros(300 * RATE + 1, np.float32), RATE, 0.0, 300.0)
    with pytest.raises(OmniInputError, match="longer than the 300 s"):
        model.encode_audio(long)
    with pytest.raises(OmniInputError, match="no audio token"):
        model.encode_audio(AudioClip(np.zeros(320, np.float32), RATE, 0.0, 0.02))


def split_audio_worker(rank: int, world: int, seconds: list[float]) -> list[float]:
    """Max |split over the group - one process| of each clip's rows (spawned per rank)."""
    import torch.distributed as dist

    model = build_tiny()
    errors = []
    with torch.no_grad():
        for k, s in enumerate(seconds):
            clip = _clip(s, 11 + k)
            alone, split = model.encode_audio(clip).embeds, model.encode_audio(clip, dist.group.WORLD).embeds
            errors.append(float((split - alone).abs().max()) if split.shape == alone.shape else float("inf"))
    return errors


@pytest.mark.distributed
def test_audio_split_over_two_ranks_equals_one_process():
    """5.37 s: 3 units (2 / 1 per rank); 1.2 s: one unit for two ranks."""
    for errors in run_distributed(split_audio_worker, 2, [5.37, 1.2, 8.0]):
        assert max(errors) < 1e-5, errors  # float rounding of the tower's batched windows


# --- 3. checkpoints ----------------------------------------------------------------------------

def test_save_and_load_round_trip(tmp_path):
    model = _tiny()
    model.save_pretrained(tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["model_type"] == "qwen2_5_omni_thinker"
    back = OmniModel.from_pretrained(tmp_path)
    back.use_harness_attention()
    back.eval()
    ours, theirs = model.state_dict(), back.state_dict()
    assert ours.keys() == theirs.keys()
    assert all(torch.equal(ours[k], theirs[k]) for k in ours)
    assert back.preprocess_cfg == model.preprocess_cfg
    assert back.encoder_settings() == model.encoder_settings()
    media, content, _ = _inputs("image, audio, video+audio")
    ids = _prompt_ids("", content)
    response = torch.tensor([40, 41, 42])
    with torch.no_grad():
        a, b = model.build_prompt(ids, media), back.build_prompt(ids, media)
        assert torch.equal(a.positions, b.positions) and torch.equal(a.embeds, b.embeds)
        torch.testing.assert_close(back.response_logprobs(b, response), model.response_logprobs(a, response),
                                   rtol=0, atol=0)
    assert torch.equal(back.chat_prompt_ids("q", media=("video", "audio")), model.chat_prompt_ids("q", media=("video", "audio")))


# The released chat template's rendering (Qwen2.5-Omni chat_template.json, as transformers'
# tests/models/qwen2_5_omni/test_processor_qwen2_5_omni.py holds it), written here for the
# fixture: items by type, no video+audio item.
RELEASED_TEMPLATE = (
    "{% set audio_count = namespace(value=0) %}{% set image_count = namespace(value=0) %}"
    "{% set video_count = namespace(value=0) %}{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}<|im_start|>system\nYou are a helpful assistant."
    "<|im_end|>\n{% endif %}<|im_start|>{{ message['role'] }}\n{% if message['content'] is string %}"
    "{{ message['content'] }}<|im_end|>\n{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}{% if add_vision_id %}Picture {{ image_count.value }}: "
    "{% endif %}<|vision_bos|><|IMAGE|><|vision_eos|>"
    "{% elif content['type'] == 'audio' or 'audio' in content or 'audio_url' in content %}"
    "{% set audio_count.value = audio_count.value + 1 %}{% if add_audio_id %}Audio {{ audio_count.value }}: "
    "{% endif %}<|audio_bos|><|AUDIO|><|audio_eos|>"
    "{% elif content['type'] == 'video' or 'video' in content %}{% set video_count.value = video_count.value + 1 %}"
    "{% if add_vision_id %}Video {{ video_count.value }}: {% endif %}<|vision_bos|><|VIDEO|><|vision_eos|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def _released_config(ids: dict[str, int], vocab: int) -> dict:
    """config.json in the published Qwen2.5-Omni layout (the fields of HF
    Qwen/Qwen2.5-Omni-3B config.json: `architectures` ["Qwen2_5OmniModel"], `enable_audio_output`,
    `enable_talker`, `thinker_config` with `audio_config` / `vision_config` / `text_config`
    (legacy `rope_scaling` with `mrope_section` and `rope_theta`), the token ids under their
    released keys (`audio_token_index`, `image_token_index`, `video_token_index`,
    `audio_start_token_id`, `vision_start_token_id`, ...), `position_id_per_seconds`,
    `seconds_per_chunk`, then `talker_config` and `token2wav_config`), shrunk to the tiny
    size, ids those of the local tokenizer."""
    thinker = {
        "model_type": "qwen2_5_omni_thinker",
        "audio_config": {
            "model_type": "qwen2_5_omni_audio_encoder", "activation_dropout": 0.0, "activation_function": "gelu",
            "attention_dropout": 0.0, "d_model": 32, "dropout": 0.0, "encoder_attention_heads": 2,
            "encoder_ffn_dim": 64, "encoder_layerdrop": 0.0, "encoder_layers": 2, "init_std": 0.02,
            "max_source_positions": 1500, "n_window": 100, "num_hidden_layers": 2, "num_mel_bins": 128,
            "output_dim": 64, "scale_embedding": False, "torch_dtype": "bfloat16",
        },
        "vision_config": {
            "model_type": "qwen2_5_omni_vision_encoder", "depth": 2, "embed_dim": 32, "fullatt_block_indexes": [1],
            "hidden_act": "silu", "hidden_size": 32, "in_channels": 3, "in_chans": 3, "intermediate_size": 64,
            "num_heads": 2, "out_hidden_size": 64, "patch_size": 14, "spatial_merge_size": 2,
            "spatial_patch_size": 14, "temporal_patch_size": 2, "tokens_per_second": 25, "window_size": 112,
            "torch_dtype": "bfloat16",
        },
        "text_config": {
            "model_type": "qwen2_5_omni_text", "hidden_act": "silu", "hidden_size": 64, "init_std": 0.02,
            "intermediate_size": 128, "max_position_embeddings": 32768, "max_window_layers": 2,
            "num_attention_heads": 4, "num_hidden_layers": 2, "num_key_value_heads": 2, "rms_norm_eps": 1e-06,
            "rope_scaling": {"mrope_section": [2, 3, 3], "rope_type": "default", "type": "default"},
            "rope_theta": 1000000.0, "sliding_window": 32768, "tie_word_embeddings": False,
            "torch_dtype": "bfloat16", "use_cache": True, "use_sliding_window": False, "vocab_size": vocab,
        },
        "audio_token_index": ids["audio_token_id"], "image_token_index": ids["image_token_id"],
        "video_token_index": ids["video_token_id"], "audio_start_token_id": ids["audio_start_token_id"],
        "audio_end_token_id": ids["audio_end_token_id"], "vision_start_token_id": ids["vision_start_token_id"],
        "vision_end_token_id": ids["vision_end_token_id"], "vision_token_id": ids["vision_end_token_id"] + 1,
        "bos_token_id": ids["bos_token_id"], "eos_token_id": ids["eos_token_id"], "pad_token_id": ids["pad_token_id"],
        "ignore_index": -100, "init_std": 0.02, "position_id_per_seconds": 25, "seconds_per_chunk": 2,
        "user_token_id": 872 % vocab, "torch_dtype": "bfloat16",
    }
    talker = {
        "model_type": "qwen2_5_omni_talker", "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1,
        "num_attention_heads": 2, "num_key_value_heads": 2, "head_dim": 16, "vocab_size": 64, "embedding_size": 64,
        "max_position_embeddings": 32768, "rms_norm_eps": 1e-06, "rope_theta": 1000000.0,
        "rope_scaling": {"mrope_section": [2, 3, 3], "rope_type": "default", "type": "default"},
        "audio_token_index": ids["audio_token_id"], "image_token_index": ids["image_token_id"],
        "video_token_index": ids["video_token_id"], "audio_start_token_id": 4, "audio_end_token_id": 5,
        "vision_start_token_id": 6, "vision_end_token_id": 7, "tts_codec_start_token_id": 60,
        "tts_codec_end_token_id": 61, "tts_codec_pad_token_id": 62, "tts_codec_mask_token_id": 63,
        "tts_text_start_token_id": 1, "tts_text_end_token_id": 2, "tts_text_pad_token_id": 3, "position_id_per_seconds": 25,
        "seconds_per_chunk": 2, "torch_dtype": "bfloat16",
    }
    token2wav = {
        "model_type": "qwen2_5_omni_token2wav",
        "dit_config": {"model_type": "qwen2_5_omni_dit", "depth": 1, "dim": 32, "heads": 2, "head_dim": 16,
                       "ff_mult": 2, "mel_dim": 80, "num_embeds": 64, "emb_dim": 16, "repeats": 2},
        "bigvgan_config": {"model_type": "qwen2_5_omni_bigvgan", "mel_dim": 80, "upsample_initial_channel": 32,
                           "upsample_rates": [5, 3, 2, 2, 2, 2], "upsample_kernel_sizes": [11, 7, 4, 4, 4, 4],
                           "resblock_kernel_sizes": [3, 7, 11],
                           "resblock_dilation_sizes": [[1, 3, 5], [1, 3, 5], [1, 3, 5]]},
    }
    return {"architectures": ["Qwen2_5OmniModel"], "enable_audio_output": True, "enable_talker": True,
            "model_type": "qwen2_5_omni", "thinker_config": thinker, "talker_config": talker,
            "token2wav_config": token2wav, "torch_dtype": "bfloat16", "transformers_version": "4.52.0.dev0"}


# The released preprocessor_config.json (Qwen2.5-Omni: Qwen2-VL image processor and Whisper
# feature extractor settings in one file, no video bounds).
RELEASED_PREPROCESSOR = {
    "chunk_length": 300, "dither": 0.0, "feature_extractor_type": "WhisperFeatureExtractor", "feature_size": 128,
    "hop_length": 160, "image_mean": [0.48145466, 0.4578275, 0.40821073],
    "image_processor_type": "Qwen2VLImageProcessor", "image_std": [0.26862954, 0.26130258, 0.27577711],
    "max_pixels": 12845056, "merge_size": 2, "min_pixels": 3136, "n_fft": 400, "n_samples": 4800000,
    "nb_max_frames": 30000, "padding_side": "right", "padding_value": 0.0, "patch_size": 14,
    "processor_class": "Qwen2_5OmniProcessor", "return_attention_mask": True, "sampling_rate": 16000,
    "temporal_patch_size": 2,
}


def write_released_omni(root: Path) -> dict[str, torch.Tensor]:
    """A tiny folder in the released layout, never through our save_pretrained: config.json,
    two safetensors shards + index with `thinker.*`, `talker.*` and `token2wav.*` names,
    tokenizer files with the chat template in chat_template.json, preprocessor_config.json.
    Returns the thinker's tensors (without the prefix)."""
    root.mkdir(parents=True)
    tok = build_omni_tokenizer()
    tok.save_pretrained(root)
    (root / "chat_template.jinja").unlink()
    tok_cfg = json.loads((root / "tokenizer_config.json").read_text())
    tok_cfg.pop("chat_template", None)
    (root / "tokenizer_config.json").write_text(json.dumps(tok_cfg, indent=2))
    (root / "chat_template.json").write_text(json.dumps({"chat_template": RELEASED_TEMPLATE}, indent=2))
    config = _released_config(omni_token_ids(tok), len(tok))
    (root / "config.json").write_text(json.dumps(config, indent=2))
    (root / "preprocessor_config.json").write_text(json.dumps(RELEASED_PREPROCESSOR, indent=2))
    torch.manual_seed(3)
    thinker = Qwen2_5OmniThinkerForConditionalGeneration(Qwen2_5OmniConfig(**config).thinker_config)
    state = {k: v.contiguous() for k, v in thinker.state_dict().items()}
    g = torch.Generator().manual_seed(4)
    tensors = {f"thinker.{k}": v for k, v in state.items()}
    tensors.update({"talker.model.embed_tokens.weight": torch.randn(64, 64, generator=g),
                    "talker.codec_head.weight": torch.randn(64, 32, generator=g),
                    "token2wav.code2wav_dit_model.proj_out.weight": torch.randn(80, 32, generator=g)})
    names = sorted(tensors)
    weight_map = {}
    for index, part in enumerate((names[: len(names) // 2], names[len(names) // 2 :]), 1):
        shard = f"model-{index:05d}-of-00002.safetensors"
        save_file({k: tensors[k] for k in part}, str(root / shard), metadata={"format": "pt"})
        weight_map.update(dict.fromkeys(part, shard))
    (root / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    return state


def test_released_folder_loads_its_thinker(tmp_path):
    state = write_released_omni(tmp_path / "Qwen2.5-Omni-tiny")
    model = OmniModel.from_pretrained(tmp_path / "Qwen2.5-Omni-tiny")
    loaded = model.model.state_dict()
    assert loaded.keys() == state.keys()
    assert all(torch.equal(loaded[k], state[k]) for k in state)
    assert model.language_model.config.rope_parameters["mrope_section"] == [2, 3, 3]
    assert model.tokenizer.chat_template == RELEASED_TEMPLATE  # the processor's template
    assert model.video_pixels == (128 * 28 * 28, 768 * 28 * 28, int(128000 * 28 * 28 * 0.9))
    model.use_harness_attention()
    model.eval()
    with torch.no_grad():
        video = model.encode_frames(_frames(4, 5), np.arange(4) * 0.5)
        audio = model.encode_audio(_clip(2.5, 6))
        ids = model.chat_prompt_ids("q", media=("video", "audio"))  # the released template has no such item
        prompt = model.build_prompt(ids, [video, audio])
        assert prompt.spans[0][0] == "video+audio"
        lp = model.response_logprobs(prompt, torch.tensor([40, 41]))
    assert torch.isfinite(lp).all()


def test_folders_that_are_not_omni_are_refused(tmp_path):
    write_released_omni(tmp_path / "r")
    (tmp_path / "r" / "preprocessor_config.json").unlink()
    with pytest.raises(FileNotFoundError, match="not a Qwen2.5-Omni checkpoint"):
        OmniModel.from_pretrained(tmp_path / "r")
    write_released_omni(tmp_path / "m")
    index = json.loads((tmp_path / "m" / "model.safetensors.index.json").read_text())
    from safetensors.torch import load_file

    shard = tmp_path / "m" / "model-00001-of-00002.safetensors"
    kept = {k: v for k, v in load_file(str(shard)).items() if not k.startswith("thinker.audio_tower.conv1")}
    save_file(kept, str(shard), metadata={"format": "pt"})
    index["weight_map"] = {k: v for k, v in index["weight_map"].items() if not k.startswith("thinker.audio_tower.conv1")}
    (tmp_path / "m" / "model.safetensors.index.json").write_text(json.dumps(index))
    with pytest.raises(ValueError, match="missing"):
        OmniModel.from_pretrained(tmp_path / "m")


# --- 4. trainability, 5. the vLLM refusal ------------------------------------------------------

def test_frozen_towers_and_trainable_llm():
    model = build_tiny()
    model.set_trainable(vision=False, projector=False)
    thinker = model.model
    assert not any(p.requires_grad for p in thinker.audio_tower.parameters())
    assert not any(p.requires_grad for p in thinker.visual.parameters())
    assert all(p.requires_grad for p in thinker.model.parameters())
    assert all(p.requires_grad for p in thinker.lm_head.parameters())
    model.set_trainable(vision=False, projector=True)
    assert all(p.requires_grad for p in thinker.visual.merger.parameters())
    assert not any(p.requires_grad for p in thinker.visual.blocks.parameters())
    assert not any(p.requires_grad for p in thinker.audio_tower.parameters())


def test_activation_checkpointing_covers_the_audio_tower():
    model = build_tiny()
    model.set_activation_checkpointing(True)
    assert model.model.audio_tower.gradient_checkpointing and model.language_model.gradient_checkpointing
    model.train()
    features = torch.from_numpy(log_mel_features(_clip(2.5, 1)))
    rows = model.encode_audio_units(features, 0, 2)  # [2, 50, D]
    rows.square().sum().backward()
    assert model.model.audio_tower.conv1.weight.grad is not None
    model.set_activation_checkpointing(False)
    assert not model.model.audio_tower.gradient_checkpointing


def test_vllm_requests_are_refused_with_the_reason():
    model = _tiny()
    media, content, _ = _inputs("audio")
    with torch.no_grad():
        prompt = model.build_prompt(_prompt_ids("audio", content), media)
    with pytest.raises(ValueError, match="vLLM 0.32 cannot sample qwen2_5_omni") as err:
        model.rollout_request(prompt)
    assert str(err.value) == VLLM_REFUSAL == model.rollout_unavailable_reason
    assert "\n" not in VLLM_REFUSAL


def test_hf_engine_samples_what_the_trainer_scores():
    """The rollout engine of this family: its sampled log-probs are the trainer's for the
    same tokens, on a prompt with a video and its audio track and one with an image."""
    model = _tiny()
    prompts = []
    with torch.no_grad():
        for case in ("video+audio", "image"):
            media, content, _ = _inputs(case)
            prompts.append(model.build_prompt(_prompt_ids(case, content), media))
    outs = HFEngine(model).generate(prompts, SamplingConfig(n=2, max_new_tokens=6, seed=0))
    with torch.no_grad():
        for out in outs:
            scored = model.response_logprobs(prompts[out.prompt_index], out.token_ids)
            torch.testing.assert_close(out.logprobs, scored, rtol=0, atol=1e-4)


def test_audio_media_embeds_flatten_to_their_rows():
    model = _tiny()
    with torch.no_grad():
        audio = model.encode_audio(_clip(2.3, 2))
    assert isinstance(audio, MediaEmbeds) and audio.num_tokens == 57  # 230 frames: 50 + 7 tokens
    assert audio.embeds.reshape(-1, audio.embeds.shape[-1]).shape == (57, 64)
