"""MR-SP stage 1: the frames (units) of one video are split across the SP group, each rank
encodes its contiguous slice, and the embeddings are all-gathered back in frame order.
Exactly equal to encoding on one rank, because units encode independently.

Only one video is split at a time. The authors split the frames of a whole concatenated
micro-batch across ranks, so ranks encoded frames of the wrong videos (docs/reference.md
pitfall 2); splitting per video makes that impossible by construction.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.distributed as dist

from harness.parallel.comm import all_gather_uneven, chunk_bounds


def encode_split(num_units: int, encode_slice: Callable[[int, int], torch.Tensor],
                 group: dist.ProcessGroup | None) -> torch.Tensor:
    """`encode_slice(a, b)` -> [b-a, T, D] embeddings of units [a, b). Returns [U, T, D] on
    every rank of `group` (or the plain encoding when group is None)."""
    if group is None:
        return encode_slice(0, num_units)
    world, rank = dist.get_world_size(group), dist.get_rank(group)
    sizes = [b - a for a, b in (chunk_bounds(num_units, world, r) for r in range(world))]
    a, b = chunk_bounds(num_units, world, rank)
    if a == b:
        # More ranks than units: encode one real unit so every rank contributes a tensor of
        # the right shape to the collective; its rows are dropped (size 0 below).
        local = encode_slice(num_units - 1, num_units)[:0]
    else:
        local = encode_slice(a, b)  # [b-a, T, D]
    return all_gather_uneven(local.detach(), sizes, group)
