"""Collectives used by MR-SP, with autograd where gradients must cross ranks.

gloo (CPU) has all_to_all and same-size all_gather but no uneven all_gather, so uneven
pieces are padded to the largest one and trimmed after.
"""

from __future__ import annotations

import torch
import torch.distributed as dist


def chunk_bounds(n: int, parts: int, index: int) -> tuple[int, int]:
    """[start, end) of piece `index` when n items are split into `parts` contiguous pieces
    whose sizes differ by at most one (the first n % parts pieces are one larger)."""
    base, extra = divmod(n, parts)
    start = index * base + min(index, extra)
    return start, start + base + (1 if index < extra else 0)


def all_gather_uneven(x: torch.Tensor, sizes: list[int], group: dist.ProcessGroup) -> torch.Tensor:
    """Concatenate every rank's `x` (dim 0 size = sizes[rank]) in rank order; no autograd."""
    biggest = max(sizes)
    padded = x.new_zeros(biggest, *x.shape[1:])
    padded[: x.shape[0]] = x
    parts = [torch.empty_like(padded) for _ in sizes]
    dist.all_gather(parts, padded.contiguous(), group=group)
    return torch.cat([p[:n] for p, n in zip(parts, sizes, strict=True)])


def _all_to_all(x: torch.Tensor, scatter_dim: int, gather_dim: int, group: dist.ProcessGroup) -> torch.Tensor:
    world = dist.get_world_size(group)
    inputs = [t.contiguous() for t in x.chunk(world, dim=scatter_dim)]
    outputs = [torch.empty_like(inputs[0]) for _ in range(world)]
    dist.all_to_all(outputs, inputs, group=group)
    return torch.cat(outputs, dim=gather_dim)


class _AllToAll(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, scatter_dim, gather_dim, group):
        ctx.dims, ctx.group = (scatter_dim, gather_dim), group
        return _all_to_all(x, scatter_dim, gather_dim, group)

    @staticmethod
    def backward(ctx, grad):
        scatter_dim, gather_dim = ctx.dims
        # The transpose of an all-to-all is the all-to-all with the roles swapped.
        return _all_to_all(grad, gather_dim, scatter_dim, ctx.group), None, None, None


def all_to_all(x: torch.Tensor, scatter_dim: int, gather_dim: int, group: dist.ProcessGroup) -> torch.Tensor:
    """Split `x` along scatter_dim across the group, concatenate what arrives along
    gather_dim (Ulysses: [B, H, L/P, d] -> [B, H/P, L, d] with scatter 1, gather 2)."""
    return _AllToAll.apply(x, scatter_dim, gather_dim, group)
