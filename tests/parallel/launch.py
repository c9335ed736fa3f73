"""Run a function on N local processes with gloo (the CPU stand-in for torchrun + NCCL).

`run_distributed(fn, world_size, *args)` spawns ranks, each calling fn(rank, world_size,
*args) after init_process_group; each rank's return value comes back in rank order.
"""

from __future__ import annotations

import os
import socket
import tempfile
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _entry(rank: int, world_size: int, port: int, out_dir: str, fn, args) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world_size)
    try:
        result = fn(rank, world_size, *args)
        torch.save(result, Path(out_dir) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def run_distributed(fn, world_size: int, *args):
    with tempfile.TemporaryDirectory() as out:
        mp.spawn(_entry, args=(world_size, _free_port(), out, fn, args), nprocs=world_size, join=True)
        return [torch.load(Path(out) / f"rank{r}.pt", weights_only=False) for r in range(world_size)]
