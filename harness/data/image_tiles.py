"""NVILA's dynamic resolution for a prompt's single image (a VILA config's
`image_aspect_ratio: "dynamic"`): the image is resized to a grid of tower-sized tiles whose
aspect ratio is closest to its own, cut into those tiles, and, when there is more than one,
followed by the whole image resized to one tile (the thumbnail). The rules are the released
code's (NVlabs/Long-RL `verl/utils/vila_remote_code/mm_utils.py`: `dynamic_preprocess`,
`find_closest_aspect_ratio`, taken from InternVL), including its tie-breaks:

- candidate grids (cols, rows) have min_tiles <= cols * rows <= max_tiles, visited in
  order of tile count;
- the grid whose cols / rows is nearest width / height wins; on an exact tie a later
  (larger) grid replaces it when the image's area exceeds half that grid's pixel area.
"""

from __future__ import annotations

import numpy as np
import torch

from harness.data.video import normalize_pixels, resize_uint8


def tile_grid(width: int, height: int, image_size: int, min_tiles: int, max_tiles: int) -> tuple[int, int]:
    """(cols, rows) of the tile grid for a width x height image."""
    aspect = width / height
    # A set sorted by tile count, as released: grids with the same count keep the set's
    # (deterministic, for int tuples) order, which only an exact tie could expose.
    grids = sorted({(i, j) for n in range(min_tiles, max_tiles + 1) for i in range(1, n + 1)
                    for j in range(1, n + 1) if min_tiles <= i * j <= max_tiles}, key=lambda g: g[0] * g[1])
    best, best_diff = (1, 1), float("inf")
    for cols, rows in grids:
        diff = abs(aspect - cols / rows)
        if diff < best_diff:
            best, best_diff = (cols, rows), diff
        elif diff == best_diff and width * height > 0.5 * image_size * image_size * cols * rows:
            best = (cols, rows)
    return best


def tile_count(width: int, height: int, image_size: int, min_tiles: int, max_tiles: int) -> int:
    """How many tower inputs (and `<image>` tokens) the image becomes: its tiles, plus the
    thumbnail when there is more than one tile."""
    cols, rows = tile_grid(width, height, image_size, min_tiles, max_tiles)
    return cols * rows + (cols * rows != 1)


def dynamic_tiles(image: np.ndarray, image_size: int, mean: tuple[float, ...], std: tuple[float, ...],
                  min_tiles: int, max_tiles: int) -> torch.Tensor:
    """image [H, W, 3] uint8 -> the tower's inputs [N, 3, S, S], tiles row by row then the
    thumbnail, normalised as SigLIP's processor does (each tile is already S x S, so the
    processor's own resize leaves it as it is)."""
    h, w = image.shape[:2]
    cols, rows = tile_grid(w, h, image_size, min_tiles, max_tiles)
    s = image_size
    grid = resize_uint8(image[None], rows * s, cols * s)[0]  # [3, rows*S, cols*S]
    tiles = grid.reshape(3, rows, s, cols, s).permute(1, 3, 0, 2, 4).reshape(rows * cols, 3, s, s)
    if rows * cols != 1:
        tiles = torch.cat([tiles, resize_uint8(image[None], s, s)])  # [N, 3, S, S]: + thumbnail
    return normalize_pixels(tiles, tuple(mean), tuple(std))
