"""Run `train_rl` on N local processes (gloo), as `torchrun --nproc_per_node N -m harness rl`
would, without needing torchrun on the PATH: torch.multiprocessing spawn with MASTER_ADDR/
MASTER_PORT set. Several configs run one after another in the same processes, so vLLM and
the model code are imported once.
"""

from __future__ import annotations

import os
import socket

import torch
import torch.multiprocessing as mp


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, configs: list) -> None:
    import torch.distributed as dist

    from harness.trainer.rl import train_rl

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE=str(world), LOCAL_RANK=str(rank), LOCAL_WORLD_SIZE=str(world))
    torch.set_num_threads(max(1, (os.cpu_count() or world) // world))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        for cfg in configs:
            train_rl(cfg)
    finally:
        dist.destroy_process_group()


def run_rl(configs: list, procs: int) -> None:
    """train_rl(cfg) for each config, in order; on `procs` processes when procs > 1 (the
    configs' dp_size * sp_size must equal procs). A rank's exception is raised here."""
    if procs == 1:
        from harness.trainer.rl import train_rl

        for cfg in configs:
            train_rl(cfg)
        return
    mp.spawn(_worker, args=(procs, _free_port(), configs), nprocs=procs, join=True)
