"""Process groups for the data-parallel x sequence-parallel layout, built once and passed
explicitly to every function that communicates (no module-level globals).

Ranks are laid out SP-major: rank = dp_rank * sp_size + sp_rank, so the ranks of one SP
group are consecutive (the same node under torchrun), where the all-to-all traffic is.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from harness.errors import HarnessError


class LaunchError(HarnessError, RuntimeError):
    """The process count does not match the parallel settings."""


@dataclass(frozen=True)
class Layout:
    rank: int
    world_size: int
    dp_size: int
    sp_size: int
    sp_group: dist.ProcessGroup | None  # None when sp_size == 1
    dp_group: dist.ProcessGroup | None  # None when dp_size == 1

    @property
    def sp_rank(self) -> int:
        return self.rank % self.sp_size

    @property
    def dp_rank(self) -> int:
        return self.rank // self.sp_size


SINGLE_PROCESS = Layout(0, 1, 1, 1, None, None)


def init_distributed() -> None:
    """Initialise torch.distributed from torchrun's environment (RANK, WORLD_SIZE,
    MASTER_ADDR, ...). With CUDA: NCCL for CUDA tensors and gloo for CPU ones (the trainers
    reduce small CPU counters: skip tallies, DAPO deficits, token totals; NCCL alone rejects
    CPU tensors). Without CUDA: gloo."""
    if dist.is_initialized():
        return
    if "RANK" not in os.environ:
        raise RuntimeError("not launched by torchrun: RANK/WORLD_SIZE are not set "
                           "(use `torchrun --nproc_per_node N -m harness ...`)")
    if torch.cuda.is_available():
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
        dist.init_process_group("cpu:gloo,cuda:nccl")
    else:
        dist.init_process_group("gloo")


def build_layout(dp_size: int, sp_size: int) -> Layout:
    """Create the SP and DP groups. Every rank must call this (new_group is collective)."""
    if not dist.is_initialized():
        if dp_size * sp_size != 1:
            raise LaunchError(f"parallel.dp_size={dp_size} x parallel.sp_size={sp_size} needs {dp_size * sp_size} "
                              f"processes: launch with `torchrun --nproc_per_node {dp_size * sp_size} -m harness ...`")
        return SINGLE_PROCESS
    world, rank = dist.get_world_size(), dist.get_rank()
    if dp_size * sp_size != world:
        raise LaunchError(f"parallel.dp_size={dp_size} x parallel.sp_size={sp_size} != world size {world}")
    sp_group = dp_group = None
    for d in range(dp_size):  # all ranks create all groups, in the same order
        ranks = list(range(d * sp_size, (d + 1) * sp_size))
        group = dist.new_group(ranks) if sp_size > 1 else None
        if rank in ranks:
            sp_group = group
    for s in range(sp_size):
        ranks = list(range(s, world, sp_size))
        group = dist.new_group(ranks) if dp_size > 1 else None
        if rank in ranks:
            dp_group = group
    return Layout(rank, world, dp_size, sp_size, sp_group, dp_group)
