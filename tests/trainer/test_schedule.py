"""Learning-rate schedule: linear warmup, then constant or cosine to min_lr_ratio."""

import pytest

from harness.config import ConfigError, OptimConfig, SFTConfig, load_config
from harness.trainer.common import lr_factor


def test_warmup_then_cosine_hand_computed():
    cfg = OptimConfig(warmup_steps=2, schedule="cosine", min_lr_ratio=0.1)
    # warmup: (s + 1) / 2
    assert lr_factor(cfg, 0, 12) == pytest.approx(0.5)
    assert lr_factor(cfg, 1, 12) == pytest.approx(1.0)
    # cosine over the 10 steps after warmup: progress (s - 2) / 10
    assert lr_factor(cfg, 2, 12) == pytest.approx(1.0)
    assert lr_factor(cfg, 7, 12) == pytest.approx(0.1 + 0.9 * 0.5)  # cos(pi/2) = 0
    assert lr_factor(cfg, 12, 12) == pytest.approx(0.1)
    assert lr_factor(cfg, 20, 12) == pytest.approx(0.1)  # past the end: stays at the floor


def test_constant_and_errors():
    assert lr_factor(OptimConfig(warmup_steps=0), 5, None) == 1.0
    with pytest.raises(ValueError, match="total number of steps"):
        lr_factor(OptimConfig(schedule="cosine"), 0, None)
    with pytest.raises(ConfigError, match="optim.schedule"):
        load_config(None, ["optim.schedule=linear"], SFTConfig)
    with pytest.raises(ConfigError, match="min_lr_ratio"):
        load_config(None, ["optim.min_lr_ratio=2"], SFTConfig)
