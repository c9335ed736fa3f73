"""Data-parallel SFT on 2 processes (gloo) equals one process on the whole batch,
replicated or sharded (ZeRO-3), through a resume."""

import json
import shutil

import pytest

from harness.config import ConfigError, SFTConfig, load_config
from harness.model.build import load_model
from harness.trainer.metrics import read_metrics
from harness.trainer.sft import train_sft
from tests.helpers import tiny_overrides
from tests.parallel import workers
from tests.parallel.launch import run_distributed


def _overrides(data, out, **extra):
    # min_frames: each example draws its frame count, so a rank taking the wrong share
    # of the global batch (or of the frame counts) shows up as a different loss
    base = {"run.steps": 3, "run.save_every": 1, "optim.lr": 1e-3, "optim.warmup_steps": 0,
            "train.batch_size": 2, "train.grad_accum": 1, "data.eval": None, "data.min_frames": 2,
            "train.freeze_vision": False}
    base.update(extra)
    return tiny_overrides(str(data), str(out), **base)


def _worst(a: dict, b: dict) -> float:
    return max(float((a[k] - b[k]).abs().max()) for k in a)


@pytest.fixture(scope="module")
def single(toy_data, tmp_path_factory):
    """One process, 4 examples per step in 2 micro-batches of 2."""
    out = tmp_path_factory.mktemp("sft_single")
    train_sft(load_config("configs/sft/toy-cpu.yaml", _overrides(toy_data, out, **{"train.grad_accum": 2}),
                          SFTConfig))
    rows = [r for r in read_metrics(out / "metrics.jsonl") if "loss" in r]
    return {"weights": load_model(out / "final").state_dict(), "losses": [r["loss"] for r in rows],
            "grad_norms": [r["grad_norm"] for r in rows]}


@pytest.mark.distributed
def test_dp2_sft_equals_single_process(toy_data, tmp_path, single):
    dp2 = run_distributed(workers.sft_run, 2, _overrides(toy_data, tmp_path, **{"parallel.dp_size": 2}))[0]
    assert dp2["losses"] == pytest.approx(single["losses"], rel=1e-5)
    # the pre-clip gradient norm: AdamW + clipping would hide a gradient off by a constant factor
    assert dp2["grad_norms"] == pytest.approx(single["grad_norms"], rel=1e-4)
    assert _worst(dp2["weights"], single["weights"]) < 1e-5


@pytest.mark.distributed
def test_dp2_zero3_sft_resumed_equals_single_process(toy_data, tmp_path, single):
    common = {"parallel.dp_size": 2, "parallel.zero_stage": 3}
    first = _overrides(toy_data, tmp_path, **common, **{"run.steps": 2})
    second = _overrides(toy_data, tmp_path, **common)
    z3 = run_distributed(workers.sft_run, 2, first, second)[0]
    assert z3["losses"] == pytest.approx(single["losses"], rel=1e-5)
    assert z3["grad_norms"] == pytest.approx(single["grad_norms"], rel=1e-4)
    assert _worst(z3["weights"], single["weights"]) < 1e-5


def test_sft_refuses_sequence_parallelism():
    with pytest.raises(ConfigError, match="data parallel only"):
        load_config(None, ["parallel.sp_size=2"], SFTConfig)


@pytest.mark.distributed
@pytest.mark.timeout(300)
def test_dp2_skip_budget_stops_every_rank_with_the_global_count(toy_data, tmp_path):
    """One record of rank 0's first share points at a missing video, none of rank 1's: rank 1
    has no failure of its own, so only the ledger's sum over ranks tells it the budget is
    exceeded. Both ranks must stop at the same step with the same count (none may wait in a
    collective for a rank that has left; the old rank-local check left rank 1 waiting)."""
    from harness.data.dataset import EpochSampler

    data = tmp_path / "data"
    shutil.copytree(toy_data, data)
    lines = (data / "sft.jsonl").read_text().splitlines()
    per_rank = 2  # train.batch_size x train.grad_accum of _overrides
    first_draw = EpochSampler(len(lines), seed=0).take(2 * per_rank)  # run.seed 0: the trainer's draw
    broken = json.loads(lines[first_draw[0]])
    broken["videos"] = ["videos/missing.mp4"]
    lines[first_draw[0]] = json.dumps(broken)
    (data / "sft.jsonl").write_text("\n".join(lines) + "\n")
    messages = run_distributed(workers.run_error, 2, "sft", _overrides(
        data, tmp_path / "run", **{"parallel.dp_size": 2, "data.max_skip_fraction": 0.05, "run.steps": 6}))
    assert all(m and "1 of 4 media decodes failed over all data-parallel ranks" in m for m in messages), messages
    assert "missing.mp4" in messages[0] and "missing.mp4" not in messages[1]  # only rank 0 had it
    assert messages[0].splitlines()[0] == messages[1].splitlines()[0]
