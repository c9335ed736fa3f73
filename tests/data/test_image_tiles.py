"""NVILA's dynamic tiling (`image_aspect_ratio: "dynamic"`), checked against grids worked out
by hand from the released rules (NVlabs/Long-RL `verl/utils/vila_remote_code/mm_utils.py`
`dynamic_preprocess` / `find_closest_aspect_ratio`, InternVL's), and pixels drawn apart
from the code under test."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.data.image_tiles import dynamic_tiles, tile_count, tile_grid
from harness.data.video import preprocess_siglip

S = 384  # the tower's input side in the hand-worked cases


@pytest.mark.parametrize(("wh", "limits", "grid"), [
    ((800, 400), (1, 12), (2, 1)),    # aspect 2 exactly; (4, 2) ties but 320,000 px < half of 8 tiles
    ((2000, 1000), (1, 12), (4, 2)),  # the same tie, won by (4, 2): 2e6 px > 0.5 * 384^2 * 8
    ((300, 300), (1, 12), (1, 1)),    # square and small: one tile, no thumbnail
    ((1000, 1000), (1, 12), (3, 3)),  # square and large: (2,2) then (3,3) win the ties; (4,4) > 12
    ((1000, 1000), (1, 6), (2, 2)),   # max_tiles caps it
    ((300, 300), (2, 12), (2, 2)),    # min_tiles 2: (1,2), (2,1) are 0.5 off; (2,2) exact; (3,3) too big
    ((384, 1200), (1, 12), (1, 3)),   # tall: cols / rows = 1/3 is nearest 0.32
])
def test_grid_follows_the_released_rules(wh, limits, grid):
    assert tile_grid(*wh, S, *limits) == grid
    cols, rows = grid
    assert tile_count(*wh, S, *limits) == cols * rows + (cols * rows > 1)


def test_tiles_are_the_resized_image_cut_row_by_row_then_the_thumbnail():
    """A 2 x 3 grid of coloured blocks, one block per tile: tile k is block k's colour
    everywhere; the thumbnail is the whole image at one tile's size."""
    s = 16
    colours = np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 0], [0, 255, 255], [255, 0, 255]],
                       dtype=np.uint8)
    image = np.zeros((2 * 40, 3 * 40, 3), dtype=np.uint8)  # aspect 1.5 = 3 cols / 2 rows
    for k, c in enumerate(colours):
        r, q = divmod(k, 3)
        image[r * 40:(r + 1) * 40, q * 40:(q + 1) * 40] = c
    tiles = dynamic_tiles(image, s, (0.0,) * 3, (1.0,) * 3, 1, 12)  # [7, 3, s, s] in [0, 1]
    assert tiles.shape == (7, 3, s, s)
    for k, c in enumerate(colours):
        inner = tiles[k, :, 3:-3, 3:-3]  # away from the resize's blending at the block edges
        torch.testing.assert_close(inner, torch.tensor(c / 255.0, dtype=torch.float32).view(3, 1, 1).expand_as(inner))
    whole = preprocess_siglip(image[None], s, (0.0,) * 3, (1.0,) * 3)[0]
    assert torch.equal(tiles[-1], whole)


@settings(max_examples=60, deadline=None)
@given(st.integers(20, 3000), st.integers(20, 3000), st.integers(1, 4), st.integers(0, 10))
def test_grid_respects_the_limits_and_the_count_matches_the_tiles(w, h, lo, extra):
    hi = lo + extra
    cols, rows = tile_grid(w, h, S, lo, hi)
    assert lo <= cols * rows <= hi
    # no allowed grid is strictly nearer the image's aspect ratio
    near = abs(w / h - cols / rows)
    assert all(abs(w / h - i / j) >= near for i in range(1, hi + 1) for j in range(1, hi + 1) if lo <= i * j <= hi)
    if w * h < 10_000:  # keep the resize small
        image = np.full((h, w, 3), 7, dtype=np.uint8)
        assert len(dynamic_tiles(image, 8, (0.5,) * 3, (0.5,) * 3, lo, hi)) == tile_count(w, h, 8, lo, hi)
