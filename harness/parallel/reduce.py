"""The one way the recipes reduce small host-side numbers across ranks: counts, sums for
logged means, budgets, DAPO deficits. Every function is a collective over its group (every
rank of it must call it with the same number of values) and returns the values
themselves when there is no such group.

Values travel as float64 on the CPU (gloo; under NCCL the process group also has a gloo
backend for CPU tensors, see groups.init_distributed): integer counts stay exact below
2**53, and sums of per-token statistics keep their precision.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.distributed as dist

from harness.parallel.groups import Layout


def _reduce(values: Sequence[float], group: dist.ProcessGroup | None, op: dist.ReduceOp.RedOpType,
            active: bool) -> list[float]:
    if not active:
        return [float(v) for v in values]
    t = torch.tensor([float(v) for v in values], dtype=torch.float64)
    dist.all_reduce(t, op=op, group=group)
    return t.tolist()


def dp_sum(values: Sequence[float], layout: Layout) -> list[float]:
    """Element-wise sum over the data-parallel group (the ranks holding other prompts)."""
    return _reduce(values, layout.dp_group, dist.ReduceOp.SUM, layout.dp_group is not None)


def dp_max(values: Sequence[float], layout: Layout) -> list[float]:
    return _reduce(values, layout.dp_group, dist.ReduceOp.MAX, layout.dp_group is not None)


def dp_min(values: Sequence[float], layout: Layout) -> list[float]:
    return _reduce(values, layout.dp_group, dist.ReduceOp.MIN, layout.dp_group is not None)


def world_sum(values: Sequence[float], layout: Layout) -> list[float]:
    """Element-wise sum over every rank: for quantities each rank holds a disjoint part of
    (under SP, a rank's share of a sequence's tokens)."""
    return _reduce(values, None, dist.ReduceOp.SUM, layout.world_size > 1)


def dp_summer(layout: Layout):
    """Integer `dp_sum`, for `SkipLedger.check(reduce=...)`; None without data parallelism."""
    if layout.dp_group is None:
        return None
    return lambda values: [int(v) for v in dp_sum(values, layout)]
