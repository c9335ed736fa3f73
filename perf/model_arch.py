"""Architectures for the memory and FLOPs model (`python -m perf.model`, perf/model.py has the
formulas): shapes, parameter counts by part and per-frame costs of the two real targets and
of any model the harness builds locally.

- `longvila-r1-7b`: harness/model/configs.py size `7b` of the `vila` family (SigLIP-so400m
  448 px, patch 14, 27 layers, + 2x2-merge MLP projector + Qwen2.5-7B: hidden 3584, 28
  layers, 28 heads, 4 KV heads, intermediate 18944, 152064 embedding rows, untied): 256
  tokens + 1 end row per frame (perf/flops.py).
- `qwen2_5-vl-3b`: Qwen2.5-VL-3B-Instruct's published config (LLM hidden 2048, 36 layers, 16
  heads, 2 KV heads, intermediate 11008, vocab 151936, tied embeddings; vision depth 32,
  hidden 1280, intermediate 3420, patch 14, 2x2 merge, 2 frames per temporal patch, window
  attention on 8x8 patches except 4 full-attention blocks). Tokens per frame follow Qwen's
  video pipeline (harness smart_resize + qwen-vl-utils' frame budget) for a 1280x720 source
  at `model.video_pixels`, Long-RL's hour-long setting [100352, 100352, 90316800] unless the
  config sets it: 16 x 30 patches per 2-frame unit, 60 tokens per frame.
- `config`: the config's own model: a checkpoint folder that exists here (configs read, no
  weights), else `init_model(family, size)` (the toy sizes; `vila_size` 'perf' gives the perf
  suites' model). A `model.path` that does not exist here (a GPU config) means the family's
  real target above.

Parameter counts come from the modules themselves, built on torch's meta device where large
(exact, no memory): trainable = the LLM (RL freezes tower and projector), frozen = tower +
projector; tied input/output embeddings are counted once.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ARCHS = ("longvila-r1-7b", "qwen2_5-vl-3b")
QWEN_LONG_RL_PIXELS = (100352, 100352, 90316800)  # Long-RL's hour-long setting (harness/config.py)
SOURCE_HW = (720, 1280)  # the source frame size assumed for Qwen's resize (720p)


@dataclass(frozen=True)
class Arch:
    name: str
    family: str
    llm: object  # a Qwen2Config-like shape (hidden_size, num_hidden_layers, ...): both LLMs are Qwen2 decoders
    vision_config: object  # SiglipVisionConfig (vila) or Qwen2.5-VL's vision config
    trainable: int  # LLM parameters
    frozen: int  # vision tower + projector parameters
    rollout_params: int  # what vLLM holds (vila: the LLM; qwen2_5_vl: the whole model)
    largest_unit: int  # parameters of the largest FSDP unit (a decoder layer, embeddings or lm_head)
    largest_tensor: int  # the largest parameter (ZeroRedundancyOptimizer places whole tensors)
    tied: bool
    tokens_per_frame: Callable[[int], float]  # video tokens per frame at a frame count
    end_rows_per_frame: int  # text rows the video encoder adds per frame (vila's "\n")
    patches_per_frame: Callable[[int], float]  # vision-tower tokens per frame
    vision_hidden: int
    vision_intermediate: int
    vision_patch: int  # patch side in pixels (the pixel tensor a rank moves to its device)
    vision_states_kept: int  # tower hidden states alive at once during a tower call
    vision_flops_per_frame: Callable[[int], float]  # tower + projector forward FLOPs
    text_tokens: int = 200  # prompt tokens besides the video: chat template + a multiple-choice question
    frames_per_unit: int = 1  # frames per encoding unit (VideoLM.encode_chunk counts units): vila's time pool, Qwen's 2
    patch_frames: int = 1  # frames one tower patch spans (Qwen's temporal patch: 2)

    def rows_per_frame(self, frames: int) -> float:
        return self.tokens_per_frame(frames) + self.end_rows_per_frame

    def prompt_tokens(self, frames: int) -> int:
        return int(round(frames * self.rows_per_frame(frames))) + self.text_tokens


def _const(value: float) -> Callable[[int], float]:
    return lambda frames: value


def _llm_counts(layers, embed, head, all_params) -> dict[str, int]:
    """Trainable count, largest unit and largest tensor of an LLM given its parts."""
    seen, total = set(), 0
    for p in all_params:
        if id(p) not in seen:
            seen.add(id(p))
            total += p.numel()
    units = [sum(p.numel() for p in m.parameters()) for m in (*layers, embed, head)]
    return {"trainable": total, "largest_unit": max(units),
            "largest_tensor": max(p.numel() for p in all_params), "tied": head.weight is embed.weight}


# --- vila ---------------------------------------------------------------------------------


def vila_arch(name: str, vision, llm, merge: int = 2, frozen: int | None = None, text_tokens: int = 200,
              frames_per_unit: int = 1) -> Arch:
    """`vision`: SiglipVisionConfig, `llm`: Qwen2Config; `frozen`: tower + projector parameters
    when known, else counted with the mlp_downsample projector LayerNorm(k^2 C) ->
    Linear(k^2 C, D) -> GELU -> Linear(D, D) (harness/model/vila_projector.py);
    `frames_per_unit`: the video encoder's time pool (1: the basic encoder, LongVILA-R1's)."""
    import torch
    from transformers import Qwen2ForCausalLM, SiglipVisionModel

    from perf.flops import END_ROWS_PER_FRAME, vila_frame_costs

    with torch.device("meta"):
        lm, tower = Qwen2ForCausalLM(llm), SiglipVisionModel(vision)
    c, d, k2 = vision.hidden_size, llm.hidden_size, merge * merge
    projector = 2 * k2 * c + (k2 * c * d + d) + (d * d + d)
    counts = _llm_counts(lm.model.layers, lm.model.embed_tokens, lm.lm_head, list(lm.parameters()))
    grid = vision.image_size // vision.patch_size
    costs = vila_frame_costs(vision, llm)
    return Arch(
        name=name, family="vila", llm=llm, vision_config=vision, trainable=counts["trainable"],
        frozen=frozen if frozen is not None else sum(p.numel() for p in tower.parameters()) + projector, rollout_params=counts["trainable"],
        largest_unit=counts["largest_unit"], largest_tensor=counts["largest_tensor"], tied=counts["tied"],
        tokens_per_frame=_const(math.ceil(grid / merge) ** 2), end_rows_per_frame=END_ROWS_PER_FRAME,
        patches_per_frame=_const(grid * grid), vision_hidden=c, vision_patch=vision.patch_size, vision_intermediate=vision.intermediate_size,
        # encode_unit_block asks the tower for output_hidden_states (the feature is layer -2):
        # every layer's, of the call's frames, kept until the call returns
        vision_states_kept=vision.num_hidden_layers + 1,
        vision_flops_per_frame=_const(costs["vision_gflop_per_frame"] * 1e9), text_tokens=text_tokens,
        frames_per_unit=frames_per_unit)


def longvila_r1_7b() -> Arch:
    from harness.model.configs import vila_configs

    vision, llm = vila_configs("7b", 0)  # 7b: the real embedding rows, whatever the tokenizer
    return vila_arch("longvila-r1-7b", vision, llm)


# --- qwen2_5_vl ---------------------------------------------------------------------------


def qwen_grid(frames: int, pixels: tuple[int, int, int], patch: int, merge: int,
              source_hw: tuple[int, int] = SOURCE_HW) -> tuple[int, int]:
    """Patches (h, w) of one temporal unit, as the harness's Qwen preprocessing sizes a frame."""
    from harness.data.video import smart_resize
    from harness.model.qwen_vl import video_frame_max_pixels

    lo, hi, total = pixels
    h, w = smart_resize(*source_hw, patch * merge, lo, video_frame_max_pixels(frames, lo, hi, total))
    return h // patch, w // patch


def qwen_vision_flops_per_unit(v, grid: tuple[int, int]) -> float:
    """Forward FLOPs of Qwen2.5-VL's tower on one temporal unit (`v`: its vision config):
    Conv3d patch embedding, per block qkv + proj and the gated MLP, attention over a window
    of (window_size / patch)^2 patches (all the unit's patches in the full-attention blocks),
    and the merger MLP (4C -> 4C -> out) per merged token."""
    n = grid[0] * grid[1]
    c, i = v.hidden_size, v.intermediate_size
    embed = 2 * n * (3 * v.temporal_patch_size * v.patch_size**2) * c
    window = min(n, (v.window_size // v.patch_size) ** 2)
    full = len(v.fullatt_block_indexes)
    linear = n * (2 * 4 * c * c + 2 * 3 * c * i)
    attention = 4 * n * c * (full * n + (v.depth - full) * window)
    c4 = c * v.spatial_merge_size**2
    merger = 2 * (n // v.spatial_merge_size**2) * (c4 * c4 + c4 * v.out_hidden_size)
    return embed + v.depth * linear + attention + merger


def qwen_arch(name: str, config, pixels: tuple[int, int, int], source_hw: tuple[int, int] = SOURCE_HW,
              text_tokens: int = 200) -> Arch:
    """`config`: a Qwen2_5_VLConfig; `pixels`: the video frame-area bounds (min, max, total);
    `source_hw`: the videos' frame size before Qwen's resize."""
    import torch
    from transformers import Qwen2_5_VLForConditionalGeneration

    with torch.device("meta"):
        model = Qwen2_5_VLForConditionalGeneration(config)
    lm, v = model.model.language_model, config.vision_config
    llm_params = [*lm.parameters(), *model.lm_head.parameters()]
    counts = _llm_counts(lm.layers, lm.embed_tokens, model.lm_head, llm_params)
    tps, m = v.temporal_patch_size, v.spatial_merge_size

    def patches(frames: int) -> float:
        gh, gw = qwen_grid(frames, pixels, v.patch_size, m, source_hw)
        return gh * gw / tps

    return Arch(
        name=name, family="qwen2_5_vl", llm=config.text_config, vision_config=v, trainable=counts["trainable"],
        frozen=sum(p.numel() for p in model.model.visual.parameters()),
        rollout_params=sum(p.numel() for p in model.parameters()),
        largest_unit=counts["largest_unit"], largest_tensor=counts["largest_tensor"], tied=counts["tied"],
        tokens_per_frame=lambda f: patches(f) / (m * m), end_rows_per_frame=0, patches_per_frame=patches,
        vision_hidden=v.hidden_size, vision_intermediate=v.intermediate_size, vision_patch=v.patch_size,
        vision_states_kept=1,
        vision_flops_per_frame=lambda f: qwen_vision_flops_per_unit(
            v, qwen_grid(f, pixels, v.patch_size, m, source_hw)) / tps,
        text_tokens=text_tokens, frames_per_unit=tps, patch_frames=tps)


def qwen2_5_vl_3b_config():
    from transformers import Qwen2_5_VLConfig

    text = dict(vocab_size=151936, hidden_size=2048, intermediate_size=11008, num_hidden_layers=36,
                num_attention_heads=16, num_key_value_heads=2, max_position_embeddings=128000,
                tie_word_embeddings=True)
    vision = dict(depth=32, hidden_size=1280, intermediate_size=3420, num_heads=16, patch_size=14,
                  spatial_merge_size=2, temporal_patch_size=2, out_hidden_size=2048, window_size=112,
                  fullatt_block_indexes=[7, 15, 23, 31], tokens_per_second=2)
    return Qwen2_5_VLConfig(text_config=text, vision_config=vision, tie_word_embeddings=True)


def qwen2_5_vl_3b(pixels: tuple[int, int, int] | None = None) -> Arch:
    return qwen_arch("qwen2_5-vl-3b", qwen2_5_vl_3b_config(), pixels or QWEN_LONG_RL_PIXELS)


# --- choosing one -------------------------------------------------------------------------


def named_arch(name: str, pixels: tuple[int, int, int] | None = None) -> Arch:
    if name == "longvila-r1-7b":
        return longvila_r1_7b()
    if name == "qwen2_5-vl-3b":
        return qwen2_5_vl_3b(pixels)
    raise ValueError(f"unknown --arch {name!r}; choose one of {ARCHS + ('config',)}")


def arch_from_config(model_cfg, vila_size: str | None = None) -> tuple[Arch, str]:
    """The arch a config's `model` section describes, and a note saying where it came from.
    `vila_size` ('perf'): a named size the config's own check does not accept."""
    pixels = tuple(model_cfg.video_pixels) if model_cfg.video_pixels else None
    path = Path(model_cfg.path) if model_cfg.path else None
    if path is not None and path.is_dir():
        return _from_folder(path, pixels), f"configs read from {path}"
    if path is not None:
        target = "longvila-r1-7b" if model_cfg.family == "vila" else "qwen2_5-vl-3b"
        return named_arch(target, pixels), f"model.path {path} is not here: built-in {target} table"
    size = vila_size or model_cfg.size
    return toy_arch(model_cfg.family, size, pixels), f"init_model({model_cfg.family!r}, {size!r})"


def toy_arch(family: str, size: str, pixels: tuple[int, int, int] | None = None) -> Arch:
    """A model the harness builds locally (random weights), measured from the module itself."""
    from harness.model.build import init_model

    model = init_model(family, size)
    if family == "vila":
        tower, projector = model.vision_modules()
        frozen = sum(p.numel() for m in (tower, projector) for p in m.parameters())
        return vila_arch(f"{family}/{size}", tower.config, model.llm.config, model.mm_projector.merge, frozen,
                         frames_per_unit=model.frames_per_unit)
    from harness.model.configs import QWEN_PIXELS

    lo, hi = QWEN_PIXELS[size]
    # the synthetic videos' 64 x 64 frames (harness/data/synthetic)
    return qwen_arch(f"{family}/{size}", model.model.config, pixels or (lo, hi, 10**12), source_hw=(64, 64))


def _from_folder(path: Path, pixels: tuple[int, int, int] | None) -> Arch:
    from harness.model.build import detect_family

    family = detect_family(path)
    if family == "vila":
        import json

        from transformers import AutoConfig, SiglipVisionConfig

        from harness.model.vila_projector import merge_size

        projector = json.loads((path / "mm_projector" / "config.json").read_text())["mm_projector_type"]
        return vila_arch(path.name, SiglipVisionConfig.from_pretrained(path / "vision_tower"),
                         AutoConfig.from_pretrained(path / "llm"), merge_size(projector))
    from transformers import Qwen2_5_VLConfig

    from harness.model.qwen_vl import VIDEO_MAX_PIXELS, VIDEO_MIN_PIXELS, VIDEO_TOTAL_PIXELS

    return qwen_arch(path.name, Qwen2_5_VLConfig.from_pretrained(path),
                     pixels or (VIDEO_MIN_PIXELS, VIDEO_MAX_PIXELS, VIDEO_TOTAL_PIXELS))
