"""The qwen2_5_omni thinker sizes (harness/model/omni_config.py): they build, a tiny thinker
runs transformers' own forward on an image, a video and an audio (with and without the
audio interleaved in the video) with the positions of harness/model/omni_positions.py, and
its audio tower yields the processor's token count and encodes 2-s blocks independently."""

from __future__ import annotations

import functools

import pytest
import torch
from transformers import Qwen2_5OmniThinkerConfig, Qwen2_5OmniThinkerForConditionalGeneration

from harness.model.omni_config import (
    OMNI_SIZES,
    RELEASED_TOKEN_IDS,
    mrope_sections,
    omni_thinker_config,
)
from harness.model.omni_positions import (
    OmniTiming,
    OmniTokenIds,
    audio_token_count,
    expand_placeholders,
    omni_mrope_positions,
)

IDS = dict(image_token_id=10, video_token_id=11, audio_token_id=12, vision_start_token_id=13,
           vision_end_token_id=14, audio_start_token_id=15, audio_end_token_id=16,
           bos_token_id=1, eos_token_id=2, pad_token_id=0)
VOCAB = 100


@functools.cache
def _tiny():
    torch.manual_seed(0)
    return Qwen2_5OmniThinkerForConditionalGeneration(omni_thinker_config("tiny", VOCAB, IDS)).eval()


@pytest.mark.parametrize("size", OMNI_SIZES)
def test_sizes_keep_the_released_structure(size):
    big = size in ("3b", "7b")
    cfg = omni_thinker_config(size, VOCAB, RELEASED_TOKEN_IDS if big else IDS)
    text, vision, audio = cfg.text_config, cfg.vision_config, cfg.audio_config
    head_dim = text.hidden_size // text.num_attention_heads
    assert sum(text.rope_parameters["mrope_section"]) == head_dim // 2
    assert vision.out_hidden_size == audio.output_dim == text.hidden_size
    assert (vision.patch_size, vision.spatial_merge_size, vision.temporal_patch_size) == (14, 2, 2)
    assert (audio.num_mel_bins, audio.n_window) == (128, 100)
    # vLLM reads the time scale from the vision config, transformers from the thinker's
    assert vision.tokens_per_second == cfg.position_id_per_seconds == 25
    assert cfg.seconds_per_chunk == 2
    if size == "7b":
        assert text.rope_parameters["mrope_section"] == [16, 24, 24]
        assert (text.hidden_size, text.num_hidden_layers, text.vocab_size) == (3584, 28, 152064)
    with torch.device("meta" if big else "cpu"):
        model = Qwen2_5OmniThinkerForConditionalGeneration(cfg)
    assert {name for name, _ in model.named_children()} >= {"audio_tower", "visual", "model", "lm_head"}
    if size == "7b":  # Qwen2.5-Omni-7B's thinker: ~8.9B (LLM 7.6B, vision 0.68B, audio 0.64B)
        n = sum(p.numel() for p in model.parameters())
        assert 8.7e9 < n < 9.1e9, n


def test_the_config_survives_a_round_trip():
    """vision_start/end and tokens_per_second are not fields of the config classes; the
    written config.json must still carry them (get_rope_index and vLLM read them)."""
    cfg = omni_thinker_config("tiny", VOCAB, IDS)
    back = Qwen2_5OmniThinkerConfig.from_dict(cfg.to_dict())
    assert back.vision_start_token_id == 13 and back.vision_end_token_id == 14
    assert back.vision_config.tokens_per_second == 25
    assert OmniTokenIds.from_config(back) == OmniTokenIds(10, 11, 12, 13, 14, 15, 16)


def test_bad_arguments_are_errors():
    with pytest.raises(ValueError, match="unknown qwen2_5_omni size"):
        omni_thinker_config("small", VOCAB, IDS)
    with pytest.raises(ValueError, match="lacks"):
        omni_thinker_config("tiny", VOCAB, {k: v for k, v in IDS.items() if k != "audio_token_id"})
    with pytest.raises(ValueError, match="outside the vocabulary"):
        omni_thinker_config("tiny", 12, IDS)
    assert mrope_sections(128) == [16, 24, 24] and mrope_sections(16) == [2, 3, 3]


def _media(use_audio_in_video):
    """A prompt with an image (1x4x6 patches), a video (2x4x4 patches: 4 frames) and an audio
    of 4.3 s (its own, or the video's track), ready for transformers' forward."""
    tok = OmniTokenIds.from_config(_tiny().config)
    image, video = [1, 4, 6], [2, 4, 4]
    frames = [430, 317]  # 10-ms mel frames of each audio, in prompt order
    if use_audio_in_video:  # the second audio is the video's
        compact = [3, 4, 13, 10, 14, 5, 15, 12, 16, 6, 13, 11, 14, 7, 8]
    else:
        compact = [3, 4, 13, 10, 14, 5, 15, 12, 16, 6, 13, 11, 14, 7, 15, 12, 16, 8]
    kw = dict(image_grid_thw=[image], video_grid_thw=[video], video_seconds_per_grid=[1.0],
              audio_tokens=[audio_token_count(f) for f in frames], use_audio_in_video=use_audio_in_video,
              timing=OmniTiming.from_config(_tiny().config), rule="transformers")
    ids = expand_placeholders(torch.tensor(compact), tok, **kw)
    positions = omni_mrope_positions(ids, tok, **kw)  # [3, L]
    g = torch.Generator().manual_seed(0)
    patch = 3 * 2 * 14 * 14  # channels x temporal patch x patch x patch
    mask = torch.zeros(2, 3000, dtype=torch.long)  # the processor pads every audio to 30 s
    for i, f in enumerate(frames):
        mask[i, :f] = 1
    inputs = dict(
        input_ids=ids[None],
        attention_mask=torch.ones(1, len(ids), dtype=torch.long),
        pixel_values=torch.randn(24, patch, generator=g),  # [1*4*6, 1176]
        image_grid_thw=torch.tensor([image]),
        pixel_values_videos=torch.randn(32, patch, generator=g),  # [2*4*4, 1176]
        video_grid_thw=torch.tensor([video]),
        video_second_per_grid=torch.tensor([1.0]),
        input_features=torch.randn(2, 128, 3000, generator=g) * mask[:, None],  # [A, mels, frames]
        feature_attention_mask=mask,
        use_audio_in_video=use_audio_in_video,
    )
    return inputs, positions


@pytest.mark.parametrize("use_audio_in_video", [False, True])
def test_tiny_thinker_runs_forward_on_image_video_audio(use_audio_in_video):
    model = _tiny()
    inputs, positions = _media(use_audio_in_video)
    with torch.no_grad():
        out = model(**inputs)
        ours = model(**inputs, position_ids=positions[:, None])  # [3, 1, L]
    assert out.logits.shape == (1, inputs["input_ids"].shape[1], VOCAB)
    assert torch.isfinite(out.logits).all()
    # transformers computed the positions we give it: the same logits
    torch.testing.assert_close(ours.logits, out.logits, rtol=0, atol=0)


@pytest.mark.parametrize("frames", [3, 4, 5, 99, 100, 101, 199, 200, 201, 399, 401, 1000, 3000, 4321])
def test_audio_tower_yields_the_processors_token_count(frames):
    tower = _tiny().audio_tower
    mask = torch.ones(1, frames, dtype=torch.long)
    processor_count = int((((mask.sum(-1) - 1) // 2 + 1) - 2) // 2 + 1)  # processing_qwen2_5_omni.py
    with torch.no_grad():
        rows = tower(torch.randn(128, frames), feature_lens=torch.tensor([frames])).last_hidden_state
    assert rows.shape == (processor_count, tower.config.output_dim)
    assert audio_token_count(frames) == processor_count


def test_audio_tower_encodes_several_audios_in_one_call():
    tower = _tiny().audio_tower
    lens = [250, 37, 401]
    feats = [torch.randn(128, n) for n in lens]
    with torch.no_grad():
        together = tower(torch.cat(feats, dim=1), feature_lens=torch.tensor(lens)).last_hidden_state
        alone = [tower(f, feature_lens=torch.tensor([f.shape[1]])).last_hidden_state for f in feats]
    torch.testing.assert_close(together, torch.cat(alone), rtol=1e-5, atol=1e-6)


def test_audio_blocks_of_200_frames_encode_independently():
    """The tower convolves, embeds positions and attends within blocks of n_window * 2 = 200
    mel frames (2 s, 50 tokens), so a track cut at multiples of 200 frames encodes piece by
    piece to exactly its rows: audio splits across ranks like video frames. Cut elsewhere,
    it does not."""
    tower = _tiny().audio_tower
    feats = torch.randn(128, 530)

    def encode(*cuts):
        bounds = [0, *cuts, feats.shape[1]]
        with torch.no_grad():
            return torch.cat([tower(feats[:, a:b], feature_lens=torch.tensor([b - a])).last_hidden_state
                              for a, b in zip(bounds[:-1], bounds[1:], strict=True)])

    whole = encode()
    torch.testing.assert_close(encode(200, 400), whole, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(encode(400), whole, rtol=1e-5, atol=1e-6)
    assert not torch.allclose(encode(300)[:75], whole[:75], atol=1e-3)
