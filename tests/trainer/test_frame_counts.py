"""SFT's per-example frame counts (data.min_frames): in range, varied, the same on a resumed
run (a function of seed and step only), and a bad range is refused before any work."""

from __future__ import annotations

import pytest

from harness.config import ConfigError, SFTConfig, load_config
from harness.trainer.sft import _frame_counts


def _cfg(*overrides: str) -> SFTConfig:
    return load_config(None, list(overrides), SFTConfig)


def test_fixed_count_without_min_frames():
    assert _frame_counts(_cfg("data.num_frames=8"), step=3, k=4) == [8, 8, 8, 8]


def test_counts_in_range_varied_and_reproducible():
    cfg = _cfg("data.num_frames=16", "data.min_frames=2")
    counts = [n for step in range(20) for n in _frame_counts(cfg, step, 8)]
    assert min(counts) >= 2 and max(counts) <= 16 and len(set(counts)) > 8
    assert _frame_counts(cfg, 7, 8) == _frame_counts(cfg, 7, 8)  # what a resume draws again
    assert _frame_counts(cfg, 7, 8) != _frame_counts(cfg, 8, 8)


def test_min_frames_above_num_frames_is_refused():
    with pytest.raises(ConfigError, match="data.min_frames"):
        _cfg("data.num_frames=4", "data.min_frames=8")
