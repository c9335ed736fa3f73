"""Programmatic rewards for generated pixels that need the prompt: the requested colour,
shape and place of an object in an image, and its colour and motion direction in a video.
They read the request from the prompt's words, so they score the toy prompt sets
(`harness data synth --modality gen-image|gen-video`) and any prompt using the same words.

Pixels are in [0, 1]. A pixel's likeness to the requested colour c is
    sim(p) = exp(-|p - c|^2 / (2 * 0.25^2))
Image (`shape_match`): the requested shape drawn as a mask T at the requested place (a
quadrant, or the centre; the centre when the prompt names none); the reward is
    0.5 * (mean_T sim' - mean_{not T} sim') + 0.5 * sum min(sim, T) / sum max(sim, T)
in [-0.5, 1]: a graded contrast (sim' with scale 0.5: a colour part of the way there already
counts, and a picture with the colour in the wrong place scores below one without it, so
a model that paints noise gets a signal from every sample) plus the soft intersection
over union of sim and T, high only when the shape's pixels have the colour and the rest do
not (another shape in the same place covers a different area: a square over a requested
circle has IoU about pi/4).
Video (`motion_match`): each frame's sim-weighted centroid; the reward is
    colour * clamp(0.5 + 2 * d, 0, 1)
with colour the mean over frames of the top sixteenth of sim (an object of that size
fully in colour scores 1), and d the centroid's move from
the first to the last frame along the requested direction, in image sizes (a move of a
quarter of the frame the right way scores fully; none scores half).
"""

from __future__ import annotations

import re

import torch

PALETTE = {"red": (1.0, 0.0, 0.0), "green": (0.0, 0.8, 0.0), "blue": (0.0, 0.0, 1.0), "yellow": (1.0, 1.0, 0.0),
           "white": (1.0, 1.0, 1.0), "magenta": (1.0, 0.0, 1.0), "cyan": (0.0, 1.0, 1.0)}
SHAPES = ("square", "circle", "triangle")
REGIONS = ("top left", "top right", "bottom left", "bottom right", "centre")
DIRECTIONS = {"left": (-1.0, 0.0), "right": (1.0, 0.0), "up": (0.0, -1.0), "down": (0.0, 1.0)}
SIM_SCALE = 0.25
LOOSE_SCALE = 0.5  # the graded term's likeness: partly right colours count


class UnscorablePrompt(ValueError):
    """The prompt does not name what the reward needs (a colour, for video a direction)."""


def _word(prompt: str, words) -> str | None:
    text = " " + re.sub(r"[^a-z ]", " ", prompt.lower()) + " "
    text = text.replace(" center ", " centre ").replace(" middle ", " centre ")
    hits = [(text.find(f" {w} "), w) for w in words if f" {w} " in text]
    return min(hits)[1] if hits else None


def image_request(prompt: str) -> tuple[str, str, str]:
    """(colour, shape, region) asked for; shape defaults to square, region to the centre."""
    colour = _word(prompt, PALETTE)
    if colour is None:
        raise UnscorablePrompt(f"prompt {prompt!r} names no colour of {', '.join(PALETTE)}")
    return colour, _word(prompt, SHAPES) or "square", _word(prompt, REGIONS) or "centre"


def video_request(prompt: str) -> tuple[str, str]:
    """(colour, direction) asked for."""
    colour = _word(prompt, PALETTE)
    direction = _word(prompt, DIRECTIONS)
    if colour is None or direction is None:
        raise UnscorablePrompt(f"prompt {prompt!r} must name a colour ({', '.join(PALETTE)}) and a direction "
                               f"({', '.join(DIRECTIONS)})")
    return colour, direction


def colour_similarity(pixels: torch.Tensor, colour: str, scale: float = SIM_SCALE) -> torch.Tensor:
    """pixels [..., 3, H, W] -> sim [..., H, W]."""
    c = torch.tensor(PALETTE[colour], dtype=pixels.dtype, device=pixels.device).view(3, 1, 1)
    return torch.exp(-((pixels - c) ** 2).sum(dim=-3) / (2 * scale**2))


def shape_mask(shape: str, region: str, h: int, w: int) -> torch.Tensor:
    """The bool mask [H, W] of `shape` inside `region`'s box (15% margins)."""
    top, left = (0.0 if "top" in region else 0.5), (0.0 if "left" in region else 0.5)
    if region == "centre":
        top = left = 0.25
    size = 0.5
    ys = (torch.arange(h, dtype=torch.float32) + 0.5) / h  # pixel centres in [0, 1]
    xs = (torch.arange(w, dtype=torch.float32) + 0.5) / w
    y = ((ys - top) / size)[:, None].expand(h, w)  # box coordinates in [0, 1]
    x = ((xs - left) / size)[None, :].expand(h, w)
    m = 0.15
    inside = (x >= m) & (x <= 1 - m) & (y >= m) & (y <= 1 - m)
    if shape == "square":
        return inside
    if shape == "circle":
        return (x - 0.5) ** 2 + (y - 0.5) ** 2 <= (0.5 - m) ** 2
    # triangle pointing up: apex at the top centre, base along the bottom margin
    span = (y - m) / (1 - 2 * m)  # 0 at the apex, 1 at the base
    return inside & ((x - 0.5).abs() <= 0.5 * span * (1 - 2 * m))


def shape_match(images: torch.Tensor, prompts: list[str]) -> torch.Tensor:
    """images [B, 3, H, W] -> rewards [B]."""
    out = []
    for img, prompt in zip(images, prompts, strict=True):
        colour, shape, region = image_request(prompt)
        sim = colour_similarity(img.float(), colour)  # [H, W]
        loose = colour_similarity(img.float(), colour, LOOSE_SCALE)  # [H, W]
        mask = shape_mask(shape, region, *sim.shape).to(sim.device)
        contrast = loose[mask].mean() - loose[~mask].mean()
        iou = torch.minimum(sim, mask.to(sim.dtype)).sum() / torch.maximum(sim, mask.to(sim.dtype)).sum()
        out.append(0.5 * contrast + 0.5 * iou)
    return torch.stack(out)


def motion_match(videos: torch.Tensor, prompts: list[str]) -> torch.Tensor:
    """videos [B, F, 3, H, W] -> rewards [B]."""
    out = []
    for video, prompt in zip(videos, prompts, strict=True):
        colour, direction = video_request(prompt)
        sim = colour_similarity(video.float(), colour)  # [F, H, W]
        f, h, w = sim.shape
        flat = sim.reshape(f, -1)
        present = flat.topk(max(1, flat.shape[1] // 16), dim=1).values.mean()
        weights = flat / flat.sum(dim=1, keepdim=True).clamp_min(1e-8)  # [F, H*W]
        ys = ((torch.arange(h, device=sim.device) + 0.5) / h).repeat_interleave(w)
        xs = ((torch.arange(w, device=sim.device) + 0.5) / w).repeat(h)
        centre = torch.stack([weights @ xs, weights @ ys], dim=1)  # [F, 2]
        move = centre[-1] - centre[0]
        d = float(move[0]) * DIRECTIONS[direction][0] + float(move[1]) * DIRECTIONS[direction][1]
        out.append(present * min(max(0.5 + 2 * d, 0.0), 1.0))
    return torch.stack(out)
