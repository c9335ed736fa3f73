"""Named model sizes for both families: `tiny` (seconds on CPU), `toy` (tiny's frame size
and token count with a wider tower and a 4-layer LLM: the from-scratch toy SFT/RL recipes,
still ~0.2 s per step on 2 CPU cores), `small` (tens of millions of parameters), `7b` (the real architectures, built on the meta device for FLOP and memory
accounting only), `perf` (the perf suites' model: LongVILA-7B's vision : LLM FLOP ratio per
frame, ~0.30, and its 4:1 patch-to-token merge, with 16 tokens per frame instead of 256;
`vila` only; perf/flops.py computes the ratios).

The `7b` entries are the published configs of LongVILA-R1-7B's parts (SigLIP-so400m-448 +
Qwen2.5-7B) and of Qwen2.5-VL-7B. Toy sizes keep the same structure (2×2 token merge,
GQA, M-RoPE sections summing to head_dim/2) so every code path is exercised.
"""

from __future__ import annotations

from dataclasses import dataclass

from transformers import Qwen2_5_VLConfig, Qwen2Config, Qwen3Config, SiglipVisionConfig

from harness.model.omni_config import OMNI_SIZES  # the toy sizes and the released 3B / 7B thinkers

SIZES = ("tiny", "toy", "small", "7b", "perf")
TEXT_FAMILIES = ("qwen2", "qwen3")  # text-only causal LMs (Qwen2.5, Qwen3)
FAMILIES = ("vila", "qwen2_5_vl", *TEXT_FAMILIES, "qwen2_5_omni")


@dataclass(frozen=True)
class LLMShape:
    hidden: int
    layers: int
    heads: int
    kv_heads: int
    intermediate: int
    max_positions: int
    rope_theta: float


_LLM = {
    "tiny": LLMShape(64, 2, 4, 2, 128, 8192, 10000.0),
    "toy": LLMShape(128, 4, 4, 2, 384, 8192, 10000.0),
    "small": LLMShape(512, 8, 8, 2, 1536, 32768, 10000.0),
    # Qwen2.5-7B (the LLM of LongVILA-R1-7B and of Qwen2.5-VL-7B).
    "7b": LLMShape(3584, 28, 28, 4, 18944, 32768, 1_000_000.0),
    # toy's LLM with room for long videos (head size 32: runs on vLLM CPU too).
    "perf": LLMShape(128, 4, 4, 2, 384, 32768, 10000.0),
}
_REAL_VOCAB = 152064  # Qwen2.5's embedding rows (tokenizer length is smaller; padded)


def check_family_size(family: str, size: str) -> None:
    if family not in FAMILIES:
        raise ValueError(f"unknown model family {family!r}; choose one of {FAMILIES}")
    if family == "qwen2_5_omni":
        if size not in OMNI_SIZES:
            raise ValueError(f"unknown qwen2_5_omni size {size!r}; choose one of {OMNI_SIZES}")
        return
    if size not in SIZES:
        raise ValueError(f"unknown model size {size!r}; choose one of {SIZES}")


def _vocab(size: str, tokenizer_len: int) -> int:
    # Toy models: exactly the tokenizer's length. 7b: the real checkpoint's embedding rows.
    return _REAL_VOCAB if size == "7b" else tokenizer_len


# --- vila (LongVILA: SigLIP tower + 2x2-downsample MLP projector + Qwen2 LLM) -------------

_SIGLIP = {
    # image_size/patch_size: 32/8 -> 4x4 patches -> 2x2 tokens per frame after the merge.
    "tiny": dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                 num_attention_heads=2, image_size=32, patch_size=8),
    "toy": dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                num_attention_heads=2, image_size=32, patch_size=8),
    # 64/8 -> 8x8 patches -> 16 tokens per frame.
    "small": dict(hidden_size=256, intermediate_size=1024, num_hidden_layers=6,
                  num_attention_heads=4, image_size=64, patch_size=8),
    # SigLIP-so400m-patch14-448: 32x32 patches -> 256 tokens per frame.
    "7b": dict(hidden_size=1152, intermediate_size=4304, num_hidden_layers=27,
               num_attention_heads=16, image_size=448, patch_size=14),
    # 64/8 -> 8x8 patches -> 16 tokens per frame (7b: 1024 -> 256, the same 4:1 merge). Width
    # and depth chosen so tower + projector FLOPs per frame are 0.30x the LLM's over the
    # frame's tokens, as for 7b (0.296; 0.282 vs 0.295 counting the end-token row per frame:
    # `python -m perf.flops`).
    "perf": dict(hidden_size=32, intermediate_size=104, num_hidden_layers=3,
                 num_attention_heads=2, image_size=64, patch_size=8),
}


def vila_configs(size: str, tokenizer_len: int) -> tuple[SiglipVisionConfig, Qwen2Config]:
    check_family_size("vila", size)
    s = _LLM[size]
    vision = SiglipVisionConfig(**_SIGLIP[size])
    llm = Qwen2Config(
        vocab_size=_vocab(size, tokenizer_len),
        hidden_size=s.hidden,
        intermediate_size=s.intermediate,
        num_hidden_layers=s.layers,
        num_attention_heads=s.heads,
        num_key_value_heads=s.kv_heads,
        max_position_embeddings=s.max_positions,
        rope_parameters={"rope_type": "default", "rope_theta": s.rope_theta},
        tie_word_embeddings=False,
    )
    return vision, llm


# --- qwen2_5_vl ----------------------------------------------------------------------------

_QWEN_VISION = {
    "tiny": dict(depth=2, hidden_size=32, intermediate_size=64, num_heads=2, patch_size=8,
                 window_size=32, fullatt_block_indexes=[1]),
    "toy": dict(depth=2, hidden_size=64, intermediate_size=128, num_heads=2, patch_size=8,
                window_size=32, fullatt_block_indexes=[1]),
    "small": dict(depth=6, hidden_size=256, intermediate_size=1024, num_heads=4, patch_size=8,
                  window_size=32, fullatt_block_indexes=[2, 5]),
    "7b": dict(depth=32, hidden_size=1280, intermediate_size=3420, num_heads=16, patch_size=14,
               window_size=112, fullatt_block_indexes=[7, 15, 23, 31]),
}
# Frame area bounds for smart_resize (pixels per frame): 32x32 / 64x64 toy frames; the
# 7b bounds are Qwen2.5-VL's video defaults (128*28*28 .. 768*28*28).
QWEN_PIXELS = {
    "tiny": (32 * 32, 32 * 32),
    "toy": (32 * 32, 32 * 32),
    "small": (64 * 64, 64 * 64),
    "7b": (128 * 28 * 28, 768 * 28 * 28),
}


def qwen_vl_config(size: str, tokenizer_len: int, token_ids: dict[str, int]) -> Qwen2_5_VLConfig:
    """`token_ids`: ids of `image_token_id`, `video_token_id`, `vision_start_token_id`,
    `vision_end_token_id`, `bos_token_id`, `eos_token_id`, `pad_token_id` in the tokenizer."""
    check_family_size("qwen2_5_vl", size)
    if size == "perf":
        raise ValueError("model size 'perf' is defined for the vila family only (LongVILA-7B's ratios)")
    s = _LLM[size]
    head_dim = s.hidden // s.heads
    # M-RoPE splits head_dim/2 rotary frequencies into (time, height, width) sections.
    half = head_dim // 2
    mrope = [16, 24, 24] if size == "7b" else [half - 2 * (3 * half // 8), 3 * half // 8, 3 * half // 8]
    text = dict(
        vocab_size=_vocab(size, tokenizer_len),
        hidden_size=s.hidden,
        intermediate_size=s.intermediate,
        num_hidden_layers=s.layers,
        num_attention_heads=s.heads,
        num_key_value_heads=s.kv_heads,
        max_position_embeddings=s.max_positions,
        rope_parameters={"rope_type": "default", "rope_theta": s.rope_theta, "mrope_section": mrope},
        bos_token_id=token_ids["bos_token_id"],
        eos_token_id=token_ids["eos_token_id"],
        pad_token_id=token_ids["pad_token_id"],
    )
    vision = dict(_QWEN_VISION[size], out_hidden_size=s.hidden, spatial_merge_size=2,
                  temporal_patch_size=2, tokens_per_second=2)
    return Qwen2_5_VLConfig(
        text_config=text,
        vision_config=vision,
        image_token_id=token_ids["image_token_id"],
        video_token_id=token_ids["video_token_id"],
        vision_start_token_id=token_ids["vision_start_token_id"],
        vision_end_token_id=token_ids["vision_end_token_id"],
        tie_word_embeddings=False,
    )


# --- qwen2 / qwen3 (text only) ---------------------------------------------------------------

# Qwen3-8B's published shape (hf Qwen/Qwen3-8B config.json): the `7b` entry of `qwen3`;
# `qwen2`'s `7b` is Qwen2.5-7B (the LLM above).
_QWEN3_8B = dict(hidden_size=4096, intermediate_size=12288, num_hidden_layers=36, num_attention_heads=32,
                 num_key_value_heads=8, head_dim=128, max_position_embeddings=40960,
                 rope_parameters={"rope_type": "default", "rope_theta": 1_000_000.0})


def text_llm_config(family: str, size: str, tokenizer_len: int, token_ids: dict[str, int]) -> Qwen2Config | Qwen3Config:
    """A text-only Qwen2 / Qwen3 causal LM's config at a named size. `token_ids`: ids of
    `bos_token_id`, `eos_token_id`, `pad_token_id`. Qwen3 differs by its per-head q/k RMS
    norms and explicit head_dim; toy sizes keep both."""
    check_family_size(family, size)
    if family not in TEXT_FAMILIES:
        raise ValueError(f"{family} is not a text-only family ({TEXT_FAMILIES})")
    if size == "perf":
        raise ValueError("model size 'perf' is defined for the vila family only (LongVILA-7B's ratios)")
    s = _LLM[size]
    shape = dict(hidden_size=s.hidden, intermediate_size=s.intermediate, num_hidden_layers=s.layers,
                 num_attention_heads=s.heads, num_key_value_heads=s.kv_heads,
                 max_position_embeddings=s.max_positions,
                 rope_parameters={"rope_type": "default", "rope_theta": s.rope_theta})
    if family == "qwen3":
        shape = _QWEN3_8B if size == "7b" else {**shape, "head_dim": s.hidden // s.heads}
    common = dict(vocab_size=_vocab(size, tokenizer_len), tie_word_embeddings=False, **token_ids)
    return (Qwen3Config if family == "qwen3" else Qwen2Config)(**shape, **common)
