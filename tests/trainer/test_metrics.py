"""StepTimer, peak memory, and the metrics log (jsonl + TensorBoard), including resume."""

import json
import math
import sys
import time

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from harness.trainer.metrics import (
    MetricsLogger,
    StepTimer,
    peak_memory,
    progress,
    read_metrics,
    reset_peak,
)


def _tb_scalars(out_dir, tag):
    acc = EventAccumulator(str(out_dir / "tb"))
    acc.Reload()
    if tag not in acc.Tags()["scalars"]:
        return None
    return [(e.step, e.value) for e in acc.Scalars(tag)]


# --- StepTimer -----------------------------------------------------------------------------


def test_timer_sums_blocks_in_order_of_first_entry_and_resets():
    timer = StepTimer()
    with timer.block("rollout"):
        time.sleep(0.01)
    with timer.block("update"):
        with timer.block("update/backward"):
            time.sleep(0.02)
    with timer.block("rollout"):
        time.sleep(0.01)
    out = timer.pop()
    assert list(out) == ["time/rollout", "time/update", "time/update/backward"]
    assert out["time/rollout"] >= 0.02
    assert out["time/update"] >= out["time/update/backward"] >= 0.02
    assert timer.pop() == {}


def test_timer_records_a_block_that_raises():
    timer = StepTimer()
    with pytest.raises(KeyError), timer.block("reward"):
        raise KeyError("boom")
    assert list(timer.pop()) == ["time/reward"]


def test_peak_memory_keys():
    out = peak_memory()
    assert out["mem/peak_rss_gb"] > 0.01  # a python process with torch is well above 10 MiB
    assert ("mem/peak_cuda_gb" in out) == torch.cuda.is_available()
    reset_peak()  # a no-op without CUDA, and must not fail


# --- MetricsLogger -------------------------------------------------------------------------


def test_log_appends_one_flushed_json_line_per_call(tmp_path):
    with MetricsLogger(tmp_path, tensorboard=False) as log:
        log.log(1, {"loss": 0.5, "reward": 1})
        # Flushed at once: a crash after log() loses nothing.
        lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
        assert [json.loads(line) for line in lines] == [{"step": 1, "loss": 0.5, "reward": 1.0}]
        log.log(2, {"loss": torch.tensor(0.25)})
    assert read_metrics(tmp_path) == [
        {"step": 1, "loss": 0.5, "reward": 1.0},
        {"step": 2, "loss": 0.25},
    ]


def test_non_finite_values_become_null_and_are_skipped_in_tensorboard(tmp_path):
    with MetricsLogger(tmp_path) as log:
        log.log(1, {"loss": math.nan, "kl": math.inf, "reward": 0.5})
        log.log(2, {"loss": 1.0, "kl": 0.1, "reward": 0.75})
    rows = read_metrics(tmp_path / "metrics.jsonl")
    assert rows[0] == {"step": 1, "loss": None, "kl": None, "reward": 0.5}
    assert "NaN" not in (tmp_path / "metrics.jsonl").read_text()
    assert list((tmp_path / "tb").glob("events.out.tfevents.*"))
    assert _tb_scalars(tmp_path, "loss") == [(2, 1.0)]
    assert _tb_scalars(tmp_path, "reward") == [(1, 0.5), (2, 0.75)]


def test_bad_values_and_keys_are_errors(tmp_path):
    with MetricsLogger(tmp_path, tensorboard=False) as log:
        with pytest.raises(TypeError, match="'name'"):
            log.log(1, {"name": "abc"})
        with pytest.raises(TypeError, match="not a scalar"):
            log.log(1, {"loss": torch.ones(2)})
        with pytest.raises(ValueError, match="reserved"):
            log.log(1, {"step": 3})
        log.log(2, {"loss": 1.0})
        log.log(2, {"eval/acc": 0.5})  # a step may carry several lines
        with pytest.raises(ValueError, match="must not go back"):
            log.log(1, {"loss": 1.0})
    with pytest.raises(RuntimeError, match="after close"):
        log.log(3, {"loss": 1.0})


def test_fresh_run_refuses_an_existing_metrics_file(tmp_path):
    with MetricsLogger(tmp_path, tensorboard=False) as log:
        log.log(1, {"loss": 1.0})
    with pytest.raises(FileExistsError, match="resume=True"):
        MetricsLogger(tmp_path, tensorboard=False)


def test_resume_truncates_after_the_checkpoint_step(tmp_path):
    with MetricsLogger(tmp_path) as log:
        for step in range(1, 6):
            log.log(step, {"loss": float(step)})
    with open(tmp_path / "metrics.jsonl", "a") as f:
        f.write('{"step": 6, "lo')  # the run died mid-write
    with MetricsLogger(tmp_path, resume=True) as log:
        with pytest.raises(RuntimeError, match="truncate_after"):
            log.log(4, {"loss": 40.0})
        log.truncate_after(3)
        log.log(4, {"loss": 40.0})
    assert [(r["step"], r["loss"]) for r in read_metrics(tmp_path)] == [
        (1, 1.0), (2, 2.0), (3, 3.0), (4, 40.0)
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.jsonl", "tb"]  # no temp file
    # TensorBoard purges the interrupted run's steps >= 4 as well.
    assert _tb_scalars(tmp_path, "loss") == [(1, 1.0), (2, 2.0), (3, 3.0), (4, 40.0)]


def test_resume_without_a_metrics_file(tmp_path):
    """A run that crashed before its first log still resumes."""
    with MetricsLogger(tmp_path, tensorboard=False, resume=True) as log:
        log.truncate_after(0)
        log.log(1, {"loss": 1.0})
    assert read_metrics(tmp_path) == [{"step": 1, "loss": 1.0}]


def test_read_metrics_names_malformed_lines(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 1}\nnot json\n')
    with pytest.raises(ValueError, match=r"metrics.jsonl:2"):
        read_metrics(path)
    path.write_text('{"step": 1}\n{"step": 2, "lo')
    with pytest.raises(ValueError, match="incomplete"):
        read_metrics(path)


def test_missing_tensorboard_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorboard", None)  # makes `import tensorboard` fail
    with pytest.raises(ImportError, match="pip install tensorboard.*tensorboard=False"):
        MetricsLogger(tmp_path)
    MetricsLogger(tmp_path, tensorboard=False).close()


def test_progress_bar_shows_postfix_and_can_be_disabled(capsys):
    with progress(3, "rl") as bar:
        for _ in range(3):
            bar.set_postfix(loss=0.5)
            bar.update(1)
    err = capsys.readouterr().err
    assert "rl" in err and "loss=0.5" in err and "3/3" in err
    with progress(3, "rl", enabled=False) as bar:
        bar.set_postfix(loss=0.5)
        bar.update(1)
    assert capsys.readouterr().err == ""
