"""Samples written where people look at them: a PNG grid of images (one per prompt, each
labelled row by row in a caption file), and for videos a frame strip PNG (one row per
video) plus an animated GIF of all the videos side by side."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image


def _uint8(x: torch.Tensor) -> np.ndarray:
    """[3, H, W] in [0, 1] -> [H, W, 3] uint8."""
    return (x.detach().float().clamp(0, 1) * 255).round().byte().permute(1, 2, 0).cpu().numpy()


def save_samples(pixels: torch.Tensor, prompts: list[str], stem: str | Path, scale: int = 4) -> list[Path]:
    """pixels [N, 3, H, W] (images: STEM.png, one row of N) or [N, F, 3, H, W] (videos:
    STEM.png, N rows of F frames, and STEM.gif); STEM.txt lists the prompts in order.
    `scale`: nearest-neighbour upscaling, so toy 32-pixel samples are visible."""
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    videos = pixels if pixels.dim() == 5 else pixels[:, None]  # [N, F, 3, H, W]
    n, f, _, h, w = videos.shape
    frames = np.stack([[_uint8(videos[i, t]) for t in range(f)] for i in range(n)])  # [N, F, H, W, 3]
    if pixels.dim() == 4:
        grid = np.concatenate(list(frames[:, 0]), axis=1)  # [H, N*W, 3]
    else:
        grid = np.concatenate([np.concatenate(list(row), axis=1) for row in frames], axis=0)  # [N*H, F*W, 3]
    written = [stem.with_suffix(".png")]
    _big(grid, scale).save(written[0])
    if pixels.dim() == 5:
        side_by_side = [_big(np.concatenate(list(frames[:, t]), axis=1), scale) for t in range(f)]
        written.append(stem.with_suffix(".gif"))
        side_by_side[0].save(written[1], save_all=True, append_images=side_by_side[1:], duration=250, loop=0)
    stem.with_suffix(".txt").write_text("".join(f"{i}: {p}\n" for i, p in enumerate(prompts)))
    return written


def _big(array: np.ndarray, scale: int) -> Image.Image:
    img = Image.fromarray(array)
    return img.resize((img.width * scale, img.height * scale), Image.NEAREST)
