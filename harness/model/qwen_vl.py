"""The `qwen2_5_vl` family: transformers' `Qwen2_5_VLForConditionalGeneration`, used
through the harness interface (video encoded into units of two frames, prompts built
from cached embeddings, 3-D M-RoPE positions computed by `positions.mrope_positions`).

A checkpoint is the ordinary HF folder (config.json, weights, tokenizer,
preprocessor_config.json), so a released Qwen2.5-VL checkpoint loads from a local path.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
from torch import nn
from transformers import AutoTokenizer, Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

from harness.data.video import patchify_qwen
from harness.model.interface import MediaEmbeds, PromptEmbeds, VideoLM, VideoPixels, mean_spacing
from harness.model.positions import mrope_segments

log = logging.getLogger(__name__)

# OpenAI CLIP normalisation, which Qwen2-VL's processor uses.
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)

# Video frame bounds of Qwen's own video pipeline (QwenLM/Qwen2.5-VL
# qwen-vl-utils/src/qwen_vl_utils/vision_process.py): per-frame area between VIDEO_MIN_PIXELS
# and VIDEO_MAX_PIXELS, and all frames together within VIDEO_TOTAL_PIXELS. The released
# preprocessor_config.json holds the *image* bounds (3136 .. 12845056), which would give a
# 720p frame several times the tokens Qwen's video pipeline gives it.
VIDEO_MIN_PIXELS = 128 * 28 * 28
VIDEO_MAX_PIXELS = 768 * 28 * 28
VIDEO_TOTAL_PIXELS = int(128000 * 28 * 28 * 0.9)
FRAME_FACTOR = 2
VIDEO_KEYS = ("video_min_pixels", "video_max_pixels", "video_total_pixels")


def video_frame_max_pixels(num_frames: int, min_pixels: int, max_pixels: int, total_pixels: int) -> int:
    """Largest area of one frame of an `num_frames`-frame video, as qwen-vl-utils'
    `fetch_video` computes it: the total budget shared over the frames (two frames per
    temporal patch), capped at `max_pixels`, never below 1.05 x `min_pixels`."""
    if num_frames < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}")
    return int(max(min(max_pixels, total_pixels / num_frames * FRAME_FACTOR), int(min_pixels * 1.05)))


IMAGE_TOKEN = "<|image_pad|>"
# Images per prompt the vLLM engine is built for (vLLM reserves memory per item).
MAX_IMAGES_PER_PROMPT = 8


def tower_settings(config) -> dict:
    """A tower config's settings without its `dtype`, which a loaded config records and a
    freshly built one does not (the weights' dtype is part of the cache key on its own)."""
    return {k: v for k, v in config.to_diff_dict().items() if k not in ("dtype", "torch_dtype")}


class QwenVision:
    """Qwen2.5-VL's vision path, shared by `qwen2_5_vl` and `qwen2_5_omni` (whose thinker
    holds the same tower): frames and images patchified as Qwen2-VL's processors do, units
    of `temporal_patch_size` frames through the tower, its patch merger as the projector.
    The class using it holds `model` (its config has `vision_config`), `preprocess_cfg`, and
    names the tower first in `vision_modules()`."""

    @property
    def _vision(self):
        return self.model.config.vision_config

    @property
    def video_pixels(self) -> tuple[int, int, int]:
        """(min, max, total) frame-area bounds for video: the checkpoint's `video_*_pixels`
        keys when its preprocessor config has them, else qwen-vl-utils' (and
        qwen-omni-utils') defaults: released preprocessor configs hold the image bounds only."""
        p = self.preprocess_cfg
        return (int(p.get("video_min_pixels", VIDEO_MIN_PIXELS)), int(p.get("video_max_pixels", VIDEO_MAX_PIXELS)),
                int(p.get("video_total_pixels", VIDEO_TOTAL_PIXELS)))

    def _patchify(self, frames: np.ndarray, min_pixels: int, max_pixels: int) -> tuple[torch.Tensor, tuple]:
        v, p = self._vision, self.preprocess_cfg
        return patchify_qwen(frames, patch_size=v.patch_size, temporal_patch_size=v.temporal_patch_size,
                             merge_size=v.spatial_merge_size, min_pixels=min_pixels, max_pixels=max_pixels,
                             mean=tuple(p.get("image_mean", CLIP_MEAN)), std=tuple(p.get("image_std", CLIP_STD)))

    def preprocess(self, frames: np.ndarray, timestamps: np.ndarray,
                   frame_seconds: float | None = None) -> VideoPixels:
        lo, hi, total = self.video_pixels
        pixels, (t, h, w) = self._patchify(frames, lo, video_frame_max_pixels(len(frames), lo, hi, total))
        units = pixels.reshape(t, h * w, -1)  # [U, h*w, K]: patches are grouped by unit first
        spacing = mean_spacing(timestamps) if frame_seconds is None else frame_seconds
        # the processors' second_per_grid: temporal_patch_size / fps
        return VideoPixels(units, len(frames), spacing * self._vision.temporal_patch_size, (h, w))

    def encode_image(self, image: np.ndarray) -> MediaEmbeds:
        """An image as Qwen2-VL's image processor sees it: resized within the checkpoint's
        image bounds (`min_pixels` / `max_pixels`) and repeated over one temporal patch, so
        it is one unit of the video path."""
        p = self.preprocess_cfg
        pixels, (t, h, w) = self._patchify(image[None], int(p.get("min_pixels", VIDEO_MIN_PIXELS)),
                                           int(p.get("max_pixels", VIDEO_MAX_PIXELS)))  # [h*w, K], t == 1
        unit = VideoPixels(pixels.reshape(t, h * w, -1), 1, 0.0, (h, w))
        return MediaEmbeds(self.encode_units(unit), self.token_grid(unit), 0.0, kind="image")

    def token_grid(self, pixels: VideoPixels) -> tuple[int, int]:
        h, w = pixels.grid_hw
        m = self._vision.spatial_merge_size
        return h // m, w // m

    def encode_unit_block(self, pixels: VideoPixels) -> torch.Tensor:
        u = pixels.units.shape[0]
        h, w = pixels.grid_hw
        visual = self.vision_modules()[0]
        flat = pixels.units.reshape(u * h * w, -1).to(self.device, visual.dtype)  # [U*h*w, K]
        # The vision attention never crosses a temporal unit (cu_seqlens split per unit), so
        # units encode independently: a rank can encode any slice of them.
        grid = torch.tensor([[u, h, w]], device=self.device)
        out = visual(flat, grid_thw=grid).pooler_output  # [U*h*w/m^2, D]
        return out.reshape(u, -1, out.shape[-1])  # [U, T, D]


class QwenVLModel(QwenVision, VideoLM):
    family = "qwen2_5_vl"
    media_kinds = ("image", "video")

    def __init__(self, model: Qwen2_5_VLForConditionalGeneration, tokenizer, preprocess_cfg: dict):
        super().__init__()
        self.model = model
        self.tokenizer = tokenizer
        self.preprocess_cfg = preprocess_cfg

    @property
    def language_model(self) -> nn.Module:
        return self.model.model.language_model

    @property
    def lm_head(self) -> nn.Module:
        return self.model.lm_head

    def vision_modules(self) -> tuple[nn.Module, nn.Module]:
        # Qwen2.5-VL's patch merger (2x2 merge + MLP) plays the projector's role.
        return self.model.model.visual, self.model.model.visual.merger

    def encoder_settings(self) -> dict:
        return {"family": self.family, "preprocess": self.preprocess_cfg, "video_pixels": list(self.video_pixels),
                "tower": tower_settings(self._vision)}

    def placeholder_id(self, kind: str) -> int:
        if kind == "image":
            return self.tokenizer.convert_tokens_to_ids(IMAGE_TOKEN)
        return super().placeholder_id(kind)

    def prompt_positions(self, input_ids: torch.Tensor, media: list[MediaEmbeds],
                         spans: tuple[tuple[str, int, int], ...]) -> torch.Tensor:
        tps = self._vision.tokens_per_second
        segments = [(start, (m.embeds.shape[0], *m.grid_hw), m.seconds_per_unit, tps)
                    for m, (_, start, _) in zip(media, spans, strict=True)]
        return mrope_segments(input_ids.shape[0], segments)  # [3, L]

    # --- vLLM: its own Qwen2.5-VL, fed the token ids and the cached video rows ----------
    rollout_inputs = "media_embeds"
    rollout_module = "vllm.model_executor.models.qwen2_5_vl"

    @property
    def rollout_llm(self) -> nn.Module:
        return self.model

    def rollout_weights(self, state: Mapping[str, torch.Tensor]) -> list[tuple[str, torch.Tensor]]:
        # everything but the vision tower (its merger included): frozen in RL, and vLLM never encodes
        inner = ((k.removeprefix("model."), v) for k, v in state.items() if k.startswith("model."))
        return [(k, v) for k, v in inner if not k.startswith("model.visual.")]

    @property
    def rollout_media_limits(self) -> dict[str, int]:
        return {"video": 1, "image": MAX_IMAGES_PER_PROMPT}

    def rollout_request(self, prompt: PromptEmbeds) -> dict:
        """The prompt's ids with each medium's rows folded back into one placeholder, and the
        rows as `image_embeds` / `video_embeds` with the grids vLLM needs for its M-RoPE
        positions; those must be the trainer's (checked against vLLM 0.32's rule,
        `vllm_mrope_positions`)."""
        pos = prompt.positions.cpu()  # [3, L]
        vision = self.model.config.vision_config  # what vLLM reads from the written config
        merge = vision.spatial_merge_size
        segments, parts, cursor = [], [], 0
        data: dict[str, dict[str, list]] = {}
        for kind, start, end in prompt.spans:
            rows = int(pos[1, start:end].max() - pos[1, start]) + 1
            cols = int(pos[2, start:end].max() - pos[2, start]) + 1
            units = (end - start) // (rows * cols)
            entry = data.setdefault(kind, {"embeds": [], "grid": [], "seconds": []})
            entry["embeds"].append(prompt.embeds[start:end].detach())  # [U*h*w, D]
            entry["grid"].append([units, rows * merge, cols * merge])
            t_factor = 1.0
            if kind == "video":
                # vLLM's time index of unit u is int(u * second_per_grid_ts * tokens_per_second);
                # this value reproduces the last unit's, the check below covers the rest.
                last_t = int(pos[0, end - 1] - pos[0, start])
                seconds = (last_t + 0.5) / (max(units - 1, 1) * vision.tokens_per_second)
                entry["seconds"].append(seconds)
                t_factor = seconds * vision.tokens_per_second
            segments.append((start, units, rows, cols, t_factor))
            parts += [prompt.input_ids[cursor : start + 1]]  # the text before + one placeholder
            cursor = end
        parts.append(prompt.input_ids[cursor:])
        if not torch.equal(pos, vllm_mrope_positions(pos.shape[1], segments)):
            raise ValueError("vLLM would compute different M-RoPE positions for this prompt than the trainer uses")
        mm = {}
        if "image" in data:
            mm["image"] = {"image_embeds": torch.cat(data["image"]["embeds"]),
                           "image_grid_thw": torch.tensor(data["image"]["grid"])}
        if "video" in data:
            mm["video"] = {"video_embeds": torch.cat(data["video"]["embeds"]),
                           "video_grid_thw": torch.tensor(data["video"]["grid"]),
                           "second_per_grid_ts": torch.tensor(data["video"]["seconds"])}
        return {"prompt_token_ids": torch.cat(parts).tolist(), "multi_modal_data": mm}

    def write_rollout_files(self, folder: str | Path) -> None:
        super().write_rollout_files(folder)
        # vLLM's processor reads the preprocessing settings
        (Path(folder) / "preprocessor_config.json").write_text(json.dumps(self.preprocess_cfg, indent=2))

    def save_pretrained(self, out: str | Path) -> None:
        out = Path(out)
        self.model.save_pretrained(out)
        self.tokenizer.save_pretrained(out)
        (out / "preprocessor_config.json").write_text(json.dumps(self.preprocess_cfg, indent=2) + "\n")

    @classmethod
    def from_pretrained(cls, path: str | Path, dtype: torch.dtype = torch.float32) -> QwenVLModel:
        path = Path(path)
        pre = path / "preprocessor_config.json"
        if not pre.exists():
            raise FileNotFoundError(f"{path} is not a Qwen2.5-VL checkpoint: missing {pre.name}")
        model = Qwen2_5_VLForConditionalGeneration.from_pretrained(path, dtype=dtype)
        tokenizer = AutoTokenizer.from_pretrained(path)
        cfg = json.loads(pre.read_text())
        if not any(k in cfg for k in VIDEO_KEYS) and int(cfg.get("max_pixels", VIDEO_MAX_PIXELS)) < VIDEO_MIN_PIXELS:
            # A folder this harness wrote before it had video bounds: its image bounds are
            # below Qwen's video minimum, so they were sized for its small frames and its
            # video was sized with them. Keep that, rather than Qwen's video defaults.
            log.warning("%s: no video_*_pixels and image bounds below Qwen's video minimum: sizing video "
                        "frames with the image bounds %s..%s (under qwen-vl-utils' 1.05 x minimum floor)",
                        pre, cfg.get("min_pixels"), cfg.get("max_pixels"))
            cfg.update(video_min_pixels=cfg["min_pixels"], video_max_pixels=cfg["max_pixels"])
        return cls(model, tokenizer, cfg)

    @classmethod
    def from_config(cls, config: Qwen2_5_VLConfig, tokenizer, min_pixels: int, max_pixels: int,
                    total_pixels: int = VIDEO_TOTAL_PIXELS) -> QwenVLModel:
        """`min_pixels` / `max_pixels` bound one frame (image and video alike for these
        named sizes), `total_pixels` all frames of a video together."""
        v = config.vision_config
        preprocess_cfg = {
            "image_processor_type": "Qwen2VLImageProcessor",
            "min_pixels": min_pixels,
            "max_pixels": max_pixels,
            "video_min_pixels": min_pixels,
            "video_max_pixels": max_pixels,
            "video_total_pixels": total_pixels,
            "patch_size": v.patch_size,
            "temporal_patch_size": v.temporal_patch_size,
            "merge_size": v.spatial_merge_size,
            "image_mean": list(CLIP_MEAN),
            "image_std": list(CLIP_STD),
        }
        return cls(Qwen2_5_VLForConditionalGeneration(config), tokenizer, preprocess_cfg)


def vllm_mrope_positions(length: int, segments: list[tuple[int, int, int, int, float]]) -> torch.Tensor:
    """vLLM 0.32's Qwen2.5-VL M-RoPE rule (`get_mrope_input_positions`) for one prompt whose
    media spans are (start, units, rows, cols, t_factor), in order: [3, L] positions."""
    parts, cursor, nxt = [], 0, 0
    for start, units, rows, cols, t_factor in segments:
        parts.append(torch.arange(start - cursor).expand(3, -1) + nxt)
        nxt += start - cursor
        t, h, w = torch.meshgrid(torch.arange(units), torch.arange(rows), torch.arange(cols), indexing="ij")
        t = (t.double() * t_factor).long() if t_factor != 1.0 else t
        span = torch.stack([t, h, w]).reshape(3, -1) + nxt  # [3, U*h*w]
        parts.append(span)
        nxt, cursor = int(span.max()) + 1, start + units * rows * cols
    parts.append(torch.arange(length - cursor).expand(3, -1) + nxt)
    return torch.cat(parts, dim=1)  # [3, L]
