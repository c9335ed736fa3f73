"""The recipes on the media besides video: text-only Qwen2 / Qwen3 models on arithmetic
problems and Qwen2.5-VL on image questions; SFT and RL run, and a resumed RL run continues
exactly as an uninterrupted one (every family)."""

from __future__ import annotations

import pytest
import torch

from harness.config import RLConfig, SFTConfig, load_config
from harness.model.build import load_model
from harness.trainer.metrics import read_metrics
from harness.trainer.rl import train_rl
from harness.trainer.sft import train_sft
from tests.helpers import tiny_overrides


@pytest.fixture(scope="module")
def text_data(tmp_path_factory):
    from harness.data.synthetic.modalities import synthesize_modality

    root = tmp_path_factory.mktemp("text")
    synthesize_modality(root, "text", 60, seed=0)
    return root


def _rl(data, out, family="qwen2", **extra):
    base = {
        "model.family": family, "model.path": None, "model.size": "tiny", "run.steps": 2, "run.save_every": 1,
        "data.eval": "test.jsonl", "data.train": "rl.jsonl", "rollout.n": 3, "rollout.max_new_tokens": 6,
        "rollout.engine": "hf", "train.prompts_per_step": 2, "train.micro_batch": 4, "train.mini_batches": 2,
        "optim.lr": 1e-3, "algo.reward_fn": "tests.trainer.reward_fns:by_length", "run.eval_every": 2,
    }
    base.update(extra)
    return load_config("configs/rl/toy-text.yaml", tiny_overrides(data, out, **base), RLConfig)


def _rows(out):
    return [r for r in read_metrics(out / "metrics.jsonl") if "reward/mean" in r]


@pytest.mark.parametrize("family", ["qwen2", "qwen3"])
def test_text_rl_resumes_exactly(text_data, tmp_path, family):
    train_rl(_rl(text_data, tmp_path / "a", family, **{"run.steps": 4}))
    train_rl(_rl(text_data, tmp_path / "b", family, **{"run.steps": 2}))
    train_rl(_rl(text_data, tmp_path / "b", family, **{"run.steps": 4}), resume=True)
    a, b = _rows(tmp_path / "a"), _rows(tmp_path / "b")
    assert [r["step"] for r in b] == [1, 2, 3, 4]
    assert all(r["media/encoder_calls"] == 0 for r in a)  # text prompts: nothing to encode
    for key in ("reward/mean", "loss", "kl"):
        assert [r[key] for r in a] == pytest.approx([r[key] for r in b], rel=1e-5, abs=1e-7), key
    wa = load_model(tmp_path / "a" / "final").state_dict()
    wb = load_model(tmp_path / "b" / "final").state_dict()
    assert load_model(tmp_path / "a" / "final").family == family
    assert all(torch.allclose(wa[k], wb[k], atol=1e-6) for k in wa)


def test_text_sft_then_rl_from_its_checkpoint(text_data, tmp_path):
    cfg = load_config("configs/sft/toy-text.yaml", tiny_overrides(text_data, tmp_path / "sft", **{
        "model.size": "tiny", "run.steps": 3, "run.eval_every": 3, "run.save_every": 3, "train.batch_size": 4}),
        SFTConfig)
    train_sft(cfg)
    evals = [r for r in read_metrics(tmp_path / "sft" / "metrics.jsonl") if "eval/accuracy" in r]
    assert evals and evals[-1]["eval/questions"] == 10  # the test split: 60 problems / 6
    train_rl(_rl(text_data, tmp_path / "rl", "qwen2", **{"model.path": tmp_path / "sft" / "final"}))
    assert len(_rows(tmp_path / "rl")) == 2


def test_records_needing_media_the_text_model_lacks_are_refused(text_data, tmp_path):
    """A text model reading a split with a video record: refused when read, counted."""
    import json

    lines = (text_data / "rl.jsonl").read_text().splitlines()
    bad = {**json.loads(lines[0]), "problem_id": "with-video", "data_type": "video", "videos": ["v.mp4"]}
    (tmp_path / "rl.jsonl").write_text("\n".join([*lines, json.dumps(bad)]) + "\n")
    (tmp_path / "test.jsonl").write_text((text_data / "test.jsonl").read_text())
    train_rl(_rl(tmp_path, tmp_path / "run", "qwen2", **{"run.steps": 1}))
    row = read_metrics(tmp_path / "run" / "metrics.jsonl")[0]
    assert row["data/malformed_lines"] == 1


@pytest.fixture(scope="module")
def image_data(tmp_path_factory):
    from harness.data.synthetic.modalities import synthesize_modality

    root = tmp_path_factory.mktemp("image")
    synthesize_modality(root, "image", 60, seed=0)
    return root


@pytest.mark.parametrize("family", ["qwen2_5_vl", "vila"])
def test_image_rl_resumes_exactly_and_encodes_each_image_once_per_step(image_data, tmp_path, family):
    """Single images and image pairs on the tiny Qwen2.5-VL and VILA: the step's images are
    encoded once each (MR-SP's cache serves every pass), and a resumed run is exact."""
    extra = {"model.family": family, "run.steps": 4}
    train_rl(_rl(image_data, tmp_path / "a", **extra))
    train_rl(_rl(image_data, tmp_path / "b", **{**extra, "run.steps": 2}))
    train_rl(_rl(image_data, tmp_path / "b", **extra), resume=True)
    a, b = _rows(tmp_path / "a"), _rows(tmp_path / "b")
    assert all(r["media/encoder_calls"] >= 2 for r in a)  # 2 prompts, 1 or 2 images each
    for key in ("reward/mean", "loss", "kl"):
        assert [r[key] for r in a] == pytest.approx([r[key] for r in b], rel=1e-5, abs=1e-7), key
    wa = load_model(tmp_path / "a" / "final").state_dict()
    wb = load_model(tmp_path / "b" / "final").state_dict()
    assert all(torch.allclose(wa[k], wb[k], atol=1e-6) for k in wa)


def test_image_sft_runs_and_evaluates(image_data, tmp_path):
    cfg = load_config("configs/sft/toy-text.yaml", tiny_overrides(image_data, tmp_path / "sft", **{
        "model.family": "qwen2_5_vl", "model.size": "tiny", "run.steps": 2, "run.eval_every": 2,
        "run.save_every": 2, "train.batch_size": 4}), SFTConfig)
    train_sft(cfg)
    evals = [r for r in read_metrics(tmp_path / "sft" / "metrics.jsonl") if "eval/accuracy" in r]
    assert evals and evals[-1]["eval/questions"] == 10


@pytest.fixture(scope="module")
def omni_data(tmp_path_factory):
    from harness.data.synthetic.modalities import synthesize_modality

    root = tmp_path_factory.mktemp("omni")
    synthesize_modality(root / "audio", "audio", 30, seed=0)
    synthesize_modality(root / "video+audio", "video+audio", 30, seed=0)
    return root


@pytest.mark.parametrize("medium", ["audio", "video+audio"])
def test_omni_rl_resumes_exactly(omni_data, tmp_path, medium):
    """Qwen2.5-Omni's thinker on audio questions and on videos with their own audio track
    (one video and one audio encoding per prompt per step, interleaved in the prompt)."""
    extra = {"model.family": "qwen2_5_omni", "run.steps": 4, "data.num_frames": 4}
    data = omni_data / medium
    train_rl(_rl(data, tmp_path / "a", **extra))
    train_rl(_rl(data, tmp_path / "b", **{**extra, "run.steps": 2}))
    train_rl(_rl(data, tmp_path / "b", **extra), resume=True)
    a, b = _rows(tmp_path / "a"), _rows(tmp_path / "b")
    per_prompt = 2 if medium == "video+audio" else 1  # the video and its audio track
    assert all(r["media/encoder_calls"] == 2 * per_prompt for r in a)
    for key in ("reward/mean", "loss", "kl"):
        assert [r[key] for r in a] == pytest.approx([r[key] for r in b], rel=1e-5, abs=1e-7), key
    wa = load_model(tmp_path / "a" / "final").state_dict()
    wb = load_model(tmp_path / "b" / "final").state_dict()
    assert all(torch.allclose(wa[k], wb[k], atol=1e-6) for k in wa)


def test_audio_in_video_reads_video_records_with_their_audio_track(omni_data, tmp_path):
    """Long-RL's `data.is_omni=true`: records written as plain video (no data_type) are read
    as video+audio, so every prompt holds the video and its own audio track."""
    import json

    from harness.config import ConfigError

    src = omni_data / "video+audio"
    for split in ("rl", "test"):
        rows = [json.loads(line) for line in (src / f"{split}.jsonl").read_text().splitlines()]
        (tmp_path / f"{split}.jsonl").write_text("".join(
            json.dumps({k: v for k, v in r.items() if k != "data_type"}) + "\n" for r in rows))
    (tmp_path / "videos").symlink_to(src / "videos")
    extra = {"model.family": "qwen2_5_omni", "data.num_frames": 4, "run.steps": 1}
    train_rl(_rl(tmp_path, tmp_path / "run", **extra, **{"data.audio_in_video": True}))
    assert _rows(tmp_path / "run")[0]["media/encoder_calls"] == 4  # 2 prompts x (video + audio)
    with pytest.raises(ConfigError, match="audio_in_video needs a family that takes audio"):
        _rl(tmp_path, tmp_path / "bad", **{**extra, "model.family": "qwen2_5_vl", "data.audio_in_video": True})


def test_vila_dynamic_tiling_trains_and_evaluates(image_data, tmp_path):
    """A vila checkpoint with NVILA's `image_aspect_ratio: "dynamic"`: single-image prompts
    are tiled, which needs each image's size when the prompt text is built (SFT, its eval,
    and the RL collection would stop with 'image_sizes' otherwise)."""
    import json

    from harness.model.build import init_model

    ck = tmp_path / "dyn"
    init_model("vila", "tiny").save_pretrained(ck)
    config = json.loads((ck / "config.json").read_text())
    (ck / "config.json").write_text(json.dumps({**config, "image_aspect_ratio": "dynamic", "max_tiles": 4}))
    assert load_model(ck).spec.tiles_images
    cfg = load_config("configs/sft/toy-text.yaml", tiny_overrides(image_data, tmp_path / "sft", **{
        "model.family": "vila", "model.path": str(ck), "run.steps": 2, "run.eval_every": 2,
        "run.save_every": 2, "train.batch_size": 4}), SFTConfig)
    train_sft(cfg)
    evals = [r for r in read_metrics(tmp_path / "sft" / "metrics.jsonl") if "eval/accuracy" in r]
    assert evals and evals[-1]["eval/questions"] == 10
    train_rl(_rl(image_data, tmp_path / "rl", family="vila", **{"model.path": str(ck)}))
    assert len(_rows(tmp_path / "rl")) == 2
