"""Frames per example: SFT's drawn counts (data.min_frames) in range, varied, the same on a
resumed run (a function of seed and step only); frames at a rate (data.fps) in both recipes;
a bad range or rate refused before any work."""

from __future__ import annotations

import math

import pytest

from harness.config import ConfigError, RLConfig, SFTConfig, load_config
from harness.trainer.run import open_run
from harness.trainer.sft import _frame_counts
from tests.helpers import tiny_overrides


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


@pytest.mark.parametrize("fps", [0, -1.0])
def test_a_rate_that_is_not_positive_is_refused(fps):
    with pytest.raises(ConfigError, match="data.fps"):
        _cfg(f"data.fps={fps}")


@pytest.mark.parametrize(("recipe", "kind"), [("configs/sft/toy-cpu.yaml", SFTConfig), ("configs/rl/toy-cpu.yaml", RLConfig)])
def test_both_recipes_read_frames_at_data_fps(toy_data, tmp_path, recipe, kind):
    """data.fps reaches the training and held-out splits of both recipes: a toy video of
    `duration` seconds gives ceil(duration x fps) frames, capped by data.num_frames."""
    cfg = load_config(recipe, tiny_overrides(toy_data, tmp_path / "run", **{
        "model.path": None, "model.size": "tiny", "data.num_frames": 64, "data.fps": 0.5}), kind)
    run = open_run(cfg, resume=False, name="fps")
    for split in (run.train, run.held_out):
        clip = split.load_frames(split.records[0])
        assert len(clip.timestamps) == min(64, math.ceil(clip.duration * 0.5 - 1e-9)) < 64
