"""Run `train_rl` on N local processes, as `torchrun --nproc_per_node N -m harness rl`
would (`harness.parallel.launch`). Several configs run one after another in the same
processes, so vLLM and the model code are imported once.
"""

from __future__ import annotations

from harness.parallel.launch import spawn


def _rl_runs(rank: int, world: int, configs: list) -> None:
    from harness.trainer.rl import train_rl

    for cfg in configs:
        train_rl(cfg)


def run_rl(configs: list, procs: int) -> None:
    """train_rl(cfg) for each config, in order; on `procs` processes when procs > 1 (the
    configs' dp_size * sp_size must equal procs). A rank's exception is raised here."""
    if procs == 1:
        _rl_runs(0, 1, configs)
        return
    spawn(_rl_runs, procs, configs)
