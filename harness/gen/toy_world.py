"""The toy world of the CPU generation demos, drawn with its captions: one palette shape on
a plain background; pictures put a circle, square or triangle in a region ("a photo of a red
circle in the top left"), videos move a square or a circle one way ("a blue square moving
left"). The captions are worded as the toy prompts are (harness/gen/data.py), so the toy
VAE (toy_vae.py) and the toy transformer's pretraining (toy_pretrain.py) see the world the
rewards score.
"""

from __future__ import annotations

import torch

from harness.algos.gen_rewards import DIRECTIONS, PALETTE, REGIONS, SHAPES, shape_mask

BACKGROUNDS = ((0.15, 0.15, 0.15), (0.5, 0.5, 0.5), (0.0, 0.0, 0.0))
VIDEO_SHAPES = ("square", "circle")


def _pick(k: int, g: torch.Generator) -> int:
    return int(torch.randint(k, (1,), generator=g))


def pictures(n: int, size: int, g: torch.Generator) -> tuple[torch.Tensor, list[str]]:
    """n pictures [n, 3, size, size] in [0, 1] and their captions."""
    out, captions = [], []
    for _ in range(n):
        colour, shape = list(PALETTE)[_pick(len(PALETTE), g)], SHAPES[_pick(len(SHAPES), g)]
        region, background = REGIONS[_pick(len(REGIONS), g)], BACKGROUNDS[_pick(len(BACKGROUNDS), g)]
        img = torch.tensor(background).view(3, 1, 1).expand(3, size, size).clone()
        img[:, shape_mask(shape, region, size, size)] = torch.tensor(PALETTE[colour]).view(3, 1)
        out.append(img)
        captions.append(f"a photo of a {colour} {shape} in the {region}")
    return torch.stack(out), captions


def videos(n: int, frames: int, size: int, g: torch.Generator) -> tuple[torch.Tensor, list[str]]:
    """n videos [n, 3, frames, size, size] in [0, 1] and their captions: a shape 3/8 of the
    frame wide moving one pixel a frame, its whole path inside the frame."""
    side = max(2, size * 3 // 8)
    if side + frames - 1 > size:
        raise ValueError(f"a {size}-pixel frame cannot hold a {side}-pixel shape moving {frames - 1} pixels")
    yy, xx = torch.meshgrid(torch.arange(side), torch.arange(side), indexing="ij")
    r = (side - 1) / 2
    masks = {"square": torch.ones(side, side, dtype=torch.bool),
             "circle": (yy - r) ** 2 + (xx - r) ** 2 <= (r + 0.5) ** 2}
    out, captions = [], []
    for _ in range(n):
        colour, shape = list(PALETTE)[_pick(len(PALETTE), g)], VIDEO_SHAPES[_pick(len(VIDEO_SHAPES), g)]
        direction = list(DIRECTIONS)[_pick(len(DIRECTIONS), g)]
        background = BACKGROUNDS[_pick(len(BACKGROUNDS), g)]
        dx, dy = (int(v) for v in DIRECTIONS[direction])
        travel = frames - 1
        start = []
        for d in (dy, dx):  # a moving axis leaves room for the path, a still one anywhere
            lo, hi = (travel, size - side) if d < 0 else (0, size - side - (travel if d > 0 else 0))
            start.append(lo + _pick(hi - lo + 1, g))
        video = torch.tensor(background).view(3, 1, 1, 1).expand(3, frames, size, size).clone()
        for f in range(frames):
            y, x = start[0] + dy * f, start[1] + dx * f
            patch = video[:, f, y : y + side, x : x + side]
            patch[:, masks[shape]] = torch.tensor(PALETTE[colour]).view(3, 1)
        out.append(video)
        captions.append(f"a {colour} {shape} moving {direction}")
    return torch.stack(out), captions


def batch(kind: str, n: int, g: torch.Generator, size: int = 32, frames: int = 5) -> tuple[torch.Tensor, list[str]]:
    """A batch of the toy world for a model kind, in [0, 1] with captions: pictures
    [n, 3, 32, 32] for sd3, videos [n, 3, frames, 16, 16] for wan (half the picture's side)."""
    return pictures(n, size, g) if kind == "sd3" else videos(n, frames, size // 2, g)
