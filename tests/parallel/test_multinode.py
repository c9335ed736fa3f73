"""Multi-node launch on loopback: two torchrun launchers with `--nnodes 2` (one process
each, static rendezvous on 127.0.0.1, as two machines would run them) train the same RL
steps as one launcher with two processes on one node."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from harness.model.build import load_model
from harness.trainer.metrics import read_metrics
from tests.helpers import tiny_overrides

ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _torchrun(launcher: list[str], args: list[str]) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "torch.distributed.run", *launcher, "-m", "harness", "rl", *args],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _finish(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        out, _ = p.communicate(timeout=400)
        assert p.returncode == 0, out[-4000:]


@pytest.mark.distributed
@pytest.mark.timeout(600)
def test_two_nodes_on_loopback_train_as_one_node(toy_data, tmp_path):
    def args(name: str) -> list[str]:
        return ["--config", "configs/rl/toy-cpu.yaml", *tiny_overrides(str(toy_data), str(tmp_path / name), **{
            "model.path": None, "model.size": "tiny", "run.steps": 2, "run.save_every": 2, "data.eval": None,
            "rollout.n": 3, "rollout.max_new_tokens": 6, "train.prompts_per_step": 1, "train.micro_batch": 3,
            "train.mini_batches": 1, "optim.lr": 1e-3, "algo.reward_fn": "tests.trainer.reward_fns:by_length",
            "parallel.dp_size": 2, "parallel.zero_stage": 3})]

    port = _free_port()
    nodes = [_torchrun(["--nnodes", "2", "--nproc_per_node", "1", "--node_rank", str(rank),
                        "--master_addr", "127.0.0.1", "--master_port", str(port)], args("two-nodes"))
             for rank in (0, 1)]
    _finish(nodes)
    _finish([_torchrun(["--standalone", "--nproc_per_node", "2"], args("one-node"))])

    one, two = (load_model(tmp_path / n / "final").state_dict() for n in ("one-node", "two-nodes"))
    for k in one:
        torch.testing.assert_close(two[k], one[k], rtol=0, atol=1e-6)
    rows = [[r for r in read_metrics(tmp_path / n / "metrics.jsonl") if "loss" in r] for n in ("one-node", "two-nodes")]
    assert len(rows[0]) == 2
    for a, b in zip(*rows, strict=True):
        for key in ("loss", "reward/mean", "grad_norm", "data/prompts"):
            assert a[key] == pytest.approx(b[key], rel=1e-6, abs=1e-9), key
