"""Run a function on N local processes in one torch.distributed world, as `torchrun
--nproc_per_node N` would, without torchrun on the PATH: the demo's MR-SP stage, the perf
suites and the 2-process tests all start their ranks here.

    results = spawn(fn, world, *args)   # fn(rank, world, *args) on every rank, values in rank order

Each rank gets torchrun's environment (MASTER_ADDR/PORT, RANK, WORLD_SIZE, LOCAL_RANK,
LOCAL_WORLD_SIZE), its share of the CPU threads, and the process group `init_distributed`
makes (gloo on CPU; NCCL for CUDA tensors plus gloo for CPU ones on GPU). A rank's exception
is raised in the caller.
"""

from __future__ import annotations

import os
import socket
import sys
import tempfile
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp


def free_port() -> int:
    """A TCP port nothing listens on now (the OS picks it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def spawn(fn, world: int, *args, threads: int | None = None, backend: str | None = None) -> list:
    """`fn(rank, world, *args)` on `world` processes; their return values in rank order.
    `threads`: torch threads per rank (default: the cores shared out, at least one).
    `backend`: a torch.distributed backend to use instead of `init_distributed`'s choice
    (the CPU tests pin gloo, so that a machine with one GPU runs them too)."""
    threads = threads or max(1, (os.cpu_count() or world) // world)
    with tempfile.TemporaryDirectory(prefix="harness-ranks-") as out:
        mp.spawn(_entry, args=(world, free_port(), threads, backend, out, fn, args), nprocs=world, join=True)
        return [torch.load(Path(out) / f"rank{r}.pt", weights_only=False) for r in range(world)]


def _entry(rank: int, world: int, port: int, threads: int, backend: str | None, out: str, fn, args) -> None:
    from harness.parallel.groups import init_distributed

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank), LOCAL_WORLD_SIZE=str(world))
    torch.set_num_threads(threads)
    if backend is None:
        init_distributed()
    else:
        dist.init_process_group(backend, rank=rank, world_size=world)
    try:
        torch.save(fn(rank, world, *args), Path(out) / f"rank{rank}.pt")
    finally:
        _teardown()


def _teardown() -> None:
    """Destroy the process groups, unless a vLLM engine shares them: its shutdown (when
    the process exits and releases the engine, harness/rollout/vllm_engine.py) destroys
    them itself and fails on groups destroyed before it. Under torchrun nobody destroys
    them earlier, so both launchers end alike. An engine alone in a world of one process
    shuts its world down when closed (nothing left to destroy)."""
    if not dist.is_initialized():
        return
    state = sys.modules.get("vllm.distributed.parallel_state")  # imported only where an engine ran
    if state is not None and state.model_parallel_is_initialized():
        return
    dist.destroy_process_group()
