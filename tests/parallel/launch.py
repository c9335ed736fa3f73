"""The 2-process tests' launcher: `harness.parallel.launch.spawn` with gloo and one thread
per rank (the CPU stand-in for torchrun + NCCL).

`run_distributed(fn, world_size, *args)` spawns ranks, each calling fn(rank, world_size,
*args) after init_process_group; each rank's return value comes back in rank order.
"""

from __future__ import annotations

from harness.parallel.launch import spawn


def run_distributed(fn, world_size: int, *args):
    return spawn(fn, world_size, *args, threads=1, backend="gloo")
