"""The on-disk embedding cache in use (harness/trainer/videos.py): RL reads each video's
embeddings from it across epochs and runs and trains exactly as without it (held-out
evaluation too); the key follows everything that decides an embedding. `harness eval
--embed-cache`: tests/evals/test_embed_cache_eval.py."""

from __future__ import annotations

import shutil

import pytest
import torch

from harness.config import ConfigError, RLConfig, load_config
from harness.model.build import init_model, load_model
from harness.trainer.metrics import read_metrics
from harness.trainer.rl import train_rl
from harness.trainer.videos import DiskEmbeds
from tests.helpers import tiny_overrides


def _cfg(data, out, **extra):
    base = {
        "model.path": None, "model.size": "tiny", "run.steps": 3, "run.save_every": 3, "data.eval": None,
        "rollout.n": 2, "rollout.max_new_tokens": 4, "train.prompts_per_step": 4,
        "train.micro_batch": 4, "optim.lr": 1e-3, "algo.reward_fn": "tests.trainer.reward_fns:by_length",
    }
    base.update(extra)
    return load_config("configs/rl/toy-cpu.yaml", tiny_overrides(data, out, **base), RLConfig)


def _rows(out):
    return [r for r in read_metrics(out / "metrics.jsonl") if "reward/mean" in r]


def test_rl_encodes_each_video_once_across_epochs_and_runs_and_trains_the_same(toy_data, tmp_path):
    """12 records on 3 videos, 4 prompts a step for 3 steps (an epoch): the first run
    encodes each video once (the second question about it in a step already reads the disk);
    a second run encodes nothing; both train exactly as a run without the cache."""
    cache = tmp_path / "cache"
    train_rl(_cfg(toy_data, tmp_path / "plain"))
    train_rl(_cfg(toy_data, tmp_path / "first", **{"train.embed_cache_dir": cache}))
    train_rl(_cfg(toy_data, tmp_path / "second", **{"train.embed_cache_dir": cache}))
    plain, first, second = (_rows(tmp_path / n) for n in ("plain", "first", "second"))
    assert [r["media/encoder_calls"] for r in plain] == [4, 4, 4]
    assert sum(r["media/encoder_calls"] for r in first) == 3  # the split's 3 videos
    assert [r["media/encoder_calls"] + r["video/disk_hits"] for r in first] == [4, 4, 4]
    assert [(r["media/encoder_calls"], r["video/disk_hits"]) for r in second] == [(0, 4)] * 3
    assert len(list(cache.rglob("*.safetensors"))) == 3
    for run in (first, second):
        for key in ("reward/mean", "loss", "kl", "grad_norm", "response/length_mean"):
            assert [r[key] for r in run] == [r[key] for r in plain], key
    a, b = (load_model(tmp_path / n / "final").state_dict() for n in ("plain", "second"))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_held_out_evaluation_reads_the_cache_too(toy_data, tmp_path):
    cache = tmp_path / "cache"
    extra = {"run.steps": 1, "data.eval": "test.jsonl", "train.embed_cache_dir": cache}
    plain = train_rl(_cfg(toy_data, tmp_path / "plain", **{**extra, "train.embed_cache_dir": None}))
    cached = train_rl(_cfg(toy_data, tmp_path / "cached", **extra))
    assert cached == plain and cached["eval/questions"] > 0
    assert len(list(cache.rglob("*.safetensors"))) == 3 + 1  # the rl split's videos and the test one


@pytest.mark.parametrize(("overrides", "says"), [
    ({"train.cache_video_embeds": False}, "cache_video_embeds"),
    ({"train.freeze_vision": False}, "freeze_vision"),
    ({"train.freeze_projector": False}, "freeze_projector"),
])
def test_a_cache_that_cannot_hold_is_refused_by_the_config(tmp_path, overrides, says):
    with pytest.raises(ConfigError, match=says):
        _cfg(tmp_path, tmp_path / "run", **{"train.embed_cache_dir": tmp_path / "c", **overrides})


def test_the_key_follows_what_decides_an_embedding(toy_data, tmp_path):
    """Same content under another name: same key. Another sampler, encoder weights, encoder
    setting or autocast dtype: another key."""
    model = init_model("vila", "tiny", seed=0)
    video = next(toy_data.rglob("*.mp4"))
    copy = tmp_path / "renamed.mp4"
    shutil.copy(video, copy)
    sampler = {"num_frames": 4, "fps": None, "frame_sampling": "uniform"}
    disk = DiskEmbeds(tmp_path / "c", model, sampler)
    key = disk.key(video)
    assert disk.key(copy) == key and disk.key(tmp_path / "missing.mp4") is None
    assert DiskEmbeds(tmp_path / "c", model, {**sampler, "num_frames": 8}).key(video) != key
    assert DiskEmbeds(tmp_path / "c", model, {**sampler, "fps": 1.0}).key(video) != key
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert DiskEmbeds(tmp_path / "c", model, sampler).key(video) != key
    model.image_mean = (0.4, 0.5, 0.5)
    assert DiskEmbeds(tmp_path / "c", model, sampler).key(video) != key
    model.image_mean = (0.5, 0.5, 0.5)
    with torch.no_grad():
        model.vision_modules()[1].parameters().__next__().add_(1e-3)  # the projector
    assert DiskEmbeds(tmp_path / "c", model, sampler).key(video) != key
    with torch.no_grad():
        next(model.language_model.parameters()).add_(1.0)  # the LLM does not make embeddings
    assert DiskEmbeds(tmp_path / "c", model, sampler).key(video) == DiskEmbeds(tmp_path / "c", model, sampler).key(
        copy)
