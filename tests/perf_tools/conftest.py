"""Fixture rows shaped like perf/mrsp.py's results (no process is started)."""

import pytest


def _row(mode, frames, sec, mem, fits=True, calls=2.0, status=None):
    blocks = {"data": 0.01, "rollout": sec * 0.3, "logprob": sec * 0.3, "update": sec * 0.4, "sync": 0.0}
    if mode != "baseline":
        blocks["encode"] = 0.05
    return {"mode": mode, "frames": frames, "dp": 2, "sp": 1, "status": status or ("ok" if fits else "over_budget"),
            "sec_per_step": sec, "steps_measured": 1, "step_seconds": [sec], "blocks": blocks,
            "encoder_calls": calls, "mem_per_rank_gib": [mem, mem * 0.9], "peak_rss_per_rank_gib": [mem + 0.5] * 2,
            "rss_start_per_rank_gib": [0.5, 0.5], "fits": fits}


@pytest.fixture
def sweep_rows():
    return [
        _row("baseline", 32, 2.0, 0.3, calls=16.0), _row("stage1", 32, 1.0, 0.3), _row("stage12", 32, 1.5, 0.2),
        dict(_row("stage12_shared", 32, 0.5, 0.2), mfu=0.25),
        _row("baseline", 64, 4.0, 1.2, fits=False, calls=16.0), _row("stage1", 64, 2.0, 0.6),
        _row("stage12", 64, 2.5, 0.4), _row("stage12_shared", 64, 1.0, 0.3),
        {"mode": "baseline", "frames": 128, "status": "oom", "reason": "over the 1.0 GiB budget at 64 frames",
         "fits": False},
        _row("stage1", 128, 4.0, 1.1, fits=False), _row("stage12", 128, 5.0, 0.8),
        _row("stage12_shared", 128, 2.0, 0.6),
    ]
