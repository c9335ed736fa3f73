"""Named sizes of the `qwen2_5_omni` family: transformers' Qwen2.5-Omni *thinker* (audio
tower + vision tower + Qwen2 LLM with time-aligned M-RoPE), the part that reads media and
writes text. The talker and token2wav (speech output) are not built.

`tiny` runs in seconds on CPU; `toy` is wider with a 4-layer LLM and head size 32 (vLLM's
CPU attention takes 32, not tiny's 16); `3b` / `7b` mirror the thinker configs of the
released Qwen2.5-Omni-3B / -7B (their config.json `thinker_config`; the values that
transformers 5.19's config classes default to are the 7B's, except the vision width,
whose class default 3584 is the *output* width; the released tower is 1280 wide). Build
those two on the meta device: they are for parameter and FLOP accounting, real
checkpoints bring their own config.

Every size keeps the released structure where it decides token counts and positions:
patch 14, 2x2 spatial merge, 2-frame temporal patches, 128 mel bins, the audio tower's
100-frame window (`n_window`, 2-s blocks of 200 mel frames), 25 position ids per second,
2-s chunks, M-RoPE sections summing to head_dim / 2.
"""

from __future__ import annotations

from dataclasses import dataclass

from transformers import Qwen2_5OmniThinkerConfig

OMNI_SIZES = ("tiny", "toy", "3b", "7b")
REQUIRED_TOKEN_IDS = (
    "image_token_id", "video_token_id", "audio_token_id",
    "vision_start_token_id", "vision_end_token_id",
    "audio_start_token_id", "audio_end_token_id",
    "bos_token_id", "eos_token_id", "pad_token_id",
)
# The released tokenizer's ids (Qwen2.5-Omni-7B / -3B config.json `thinker_config`), for
# callers that build the 3b / 7b sizes without a tokenizer at hand.
RELEASED_TOKEN_IDS = {
    "image_token_id": 151655,  # <|IMAGE|>
    "video_token_id": 151656,  # <|VIDEO|>
    "audio_token_id": 151646,  # <|AUDIO|>
    "vision_start_token_id": 151652,  # <|vision_bos|>
    "vision_end_token_id": 151653,  # <|vision_eos|>
    "audio_start_token_id": 151647,  # <|audio_bos|>
    "audio_end_token_id": 151648,  # <|audio_eos|>
    "bos_token_id": 151644,  # <|im_start|>
    "eos_token_id": 151645,  # <|im_end|>
    "pad_token_id": 151643,  # <|endoftext|>
}
POSITION_ID_PER_SECONDS = 25  # one audio token = 40 ms = one position id
SECONDS_PER_CHUNK = 2
# Frame area bounds (pixels, min and max) for images and video frames: one 2x2-token grid
# (56 x 56 pixels at patch 14) for the toy sizes; for 3b / 7b the video bounds of Qwen's
# own pipeline (qwen-omni-utils v2_5 vision_process.py, the same as qwen-vl-utils':
# 128 .. 768 tokens of 28 x 28 pixels per frame).
OMNI_PIXELS = {
    "tiny": (56 * 56, 56 * 56),
    "toy": (56 * 56, 56 * 56),
    "3b": (128 * 28 * 28, 768 * 28 * 28),
    "7b": (128 * 28 * 28, 768 * 28 * 28),
}


@dataclass(frozen=True)
class _LLM:
    hidden: int
    layers: int
    heads: int
    kv_heads: int
    intermediate: int
    vocab: int | None  # None: the caller's tokenizer length
    tie: bool


_LLMS = {
    "tiny": _LLM(64, 2, 4, 2, 128, None, False),
    "toy": _LLM(128, 4, 4, 2, 384, None, False),
    # Qwen2.5-Omni-3B thinker: Qwen2.5-3B's shape, 151936 embedding rows (tie_word_embeddings
    # not checked against the released file: load real checkpoints with their own config).
    "3b": _LLM(2048, 36, 16, 2, 11008, 151936, False),
    # Qwen2.5-Omni-7B thinker: Qwen2.5-7B's shape, 152064 rows, untied lm_head.
    "7b": _LLM(3584, 28, 28, 4, 18944, 152064, False),
}
_VISION = {
    "tiny": dict(depth=2, hidden_size=32, intermediate_size=64, num_heads=2, fullatt_block_indexes=[1]),
    "toy": dict(depth=2, hidden_size=64, intermediate_size=128, num_heads=2, fullatt_block_indexes=[1]),
    # Qwen2.5-VL's tower, as in both released thinkers.
    "3b": dict(depth=32, hidden_size=1280, intermediate_size=3420, num_heads=16, fullatt_block_indexes=[7, 15, 23, 31]),
    "7b": dict(depth=32, hidden_size=1280, intermediate_size=3420, num_heads=16, fullatt_block_indexes=[7, 15, 23, 31]),
}
_AUDIO = {
    "tiny": dict(d_model=32, encoder_layers=2, encoder_attention_heads=2, encoder_ffn_dim=64),
    "toy": dict(d_model=64, encoder_layers=2, encoder_attention_heads=2, encoder_ffn_dim=128),
    # Whisper-large-v3's encoder width, as in both released thinkers.
    "3b": dict(d_model=1280, encoder_layers=32, encoder_attention_heads=20, encoder_ffn_dim=5120),
    "7b": dict(d_model=1280, encoder_layers=32, encoder_attention_heads=20, encoder_ffn_dim=5120),
}


def mrope_sections(head_dim: int) -> list[int]:
    """(time, rows, cols) rotary frequency counts, summing to head_dim / 2: Qwen's [16, 24, 24]
    at head_dim 128, the same 1 : 1.5 : 1.5 split (time takes the rest) below."""
    half = head_dim // 2
    return [half - 2 * (3 * half // 8), 3 * half // 8, 3 * half // 8]


def omni_thinker_config(size: str, vocab_size: int, token_ids: dict[str, int]) -> Qwen2_5OmniThinkerConfig:
    """The thinker config of a named size. `vocab_size`: the tokenizer's length (toy sizes use
    it as is; 3b / 7b keep the released embedding rows when it fits in them). `token_ids`:
    the ids of REQUIRED_TOKEN_IDS in that tokenizer (RELEASED_TOKEN_IDS for the released one)."""
    if size not in OMNI_SIZES:
        raise ValueError(f"unknown qwen2_5_omni size {size!r}; choose one of {OMNI_SIZES}")
    missing = [k for k in REQUIRED_TOKEN_IDS if k not in token_ids]
    if missing:
        raise ValueError(f"token_ids lacks {missing}")
    s = _LLMS[size]
    vocab = vocab_size if s.vocab is None else max(s.vocab, vocab_size)
    bad = {k: v for k, v in token_ids.items() if not 0 <= v < vocab}
    if bad:
        raise ValueError(f"token ids outside the vocabulary of {vocab}: {bad}")
    head_dim = s.hidden // s.heads
    text = dict(
        vocab_size=vocab,
        hidden_size=s.hidden,
        intermediate_size=s.intermediate,
        num_hidden_layers=s.layers,
        num_attention_heads=s.heads,
        num_key_value_heads=s.kv_heads,
        max_position_embeddings=32768,
        rms_norm_eps=1e-6,
        rope_parameters={"rope_type": "default", "rope_theta": 1_000_000.0,
                         "mrope_section": mrope_sections(head_dim)},
        tie_word_embeddings=s.tie,
        bos_token_id=token_ids["bos_token_id"],
        eos_token_id=token_ids["eos_token_id"],
        pad_token_id=token_ids["pad_token_id"],
    )
    vision = dict(
        _VISION[size],
        patch_size=14,
        spatial_merge_size=2,
        temporal_patch_size=2,
        window_size=112,
        in_channels=3,
        out_hidden_size=s.hidden,
        # vLLM reads the time scale from here (25 when absent), transformers from the
        # thinker's position_id_per_seconds: written in both places so they cannot differ
        tokens_per_second=POSITION_ID_PER_SECONDS,
    )
    audio = dict(
        _AUDIO[size],
        num_mel_bins=128,
        max_source_positions=1500,
        n_window=100,
        output_dim=s.hidden,
    )
    return Qwen2_5OmniThinkerConfig(
        text_config=text,
        vision_config=vision,
        audio_config=audio,
        image_token_index=token_ids["image_token_id"],
        video_token_index=token_ids["video_token_id"],
        audio_token_index=token_ids["audio_token_id"],
        audio_start_token_id=token_ids["audio_start_token_id"],
        audio_end_token_id=token_ids["audio_end_token_id"],
        # not fields of the config class, but get_rope_index and vLLM read them (the released
        # config.json carries them too)
        vision_start_token_id=token_ids["vision_start_token_id"],
        vision_end_token_id=token_ids["vision_end_token_id"],
        position_id_per_seconds=POSITION_ID_PER_SECONDS,
        seconds_per_chunk=SECONDS_PER_CHUNK,
        tie_word_embeddings=s.tie,
    )
