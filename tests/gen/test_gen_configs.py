"""The released-model gen-rl configs run as written on CPU with only sizes and paths
changed (a tiny model, toy prompts, one process): every key they set is a real setting,
LoRA and the rest of their recipe included."""

from __future__ import annotations

import pytest

from harness.config import load_config
from harness.gen.config import GenRLConfig
from harness.gen.train import train_gen_rl
from tests.gen.test_gen_rl import _rows


@pytest.mark.parametrize(("path", "modality", "reward", "shape"), [
    ("configs/gen/sd35-medium-8gpu.yaml", "gen-image", "shape_match", {"sample.height": 16, "sample.width": 16}),
    ("configs/gen/wan21-1.3b-8gpu.yaml", "gen-video", "motion_match",
     {"sample.height": 16, "sample.width": 16, "sample.frames": 5}),
])
def test_released_gen_config_runs_with_sizes_and_paths_changed(tmp_path, path, modality, reward, shape):
    cfg = load_config(path, [f"{k}={v}" for k, v in {
        "model.path": "null", "model.size": "tiny", "model.device": "cpu", "model.compute_dtype": "null",
        "data.dir": tmp_path / "data", "data.train": "train.jsonl", "data.eval": "test.jsonl",
        "data.synth_items": 20, "data.synth_modality": modality,
        "reward.name": reward, "parallel.dp_size": 1, "parallel.zero_stage": 0, "run.out_dir": tmp_path / "run",
        "run.steps": 1, "run.tensorboard": False, "run.progress": False, "run.sample_grid": 0,
        "sample.num_steps": 2, "sample.eval_num_steps": 2, "algo.group_size": 2, "train.prompts_per_step": 2,
        **shape}.items()], GenRLConfig)
    assert cfg.model.lora_rank == 32 and cfg.algo.kl_coef == 0.04
    train_gen_rl(cfg)
    assert [r["step"] for r in _rows(tmp_path / "run") if "loss" in r] == [1]
    assert (tmp_path / "run" / "final" / "lora").is_dir()
