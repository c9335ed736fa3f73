from pathlib import Path

import pytest

from harness.config import ConfigError, RLConfig, SFTConfig, apply_override, load_config

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


@pytest.mark.parametrize("path", sorted((CONFIGS / "sft").glob("*.yaml")))
def test_every_sft_config_validates(path):
    load_config(path, [], SFTConfig)


@pytest.mark.parametrize("path", sorted((CONFIGS / "rl").glob("*.yaml")))
def test_every_rl_config_validates(path):
    load_config(path, [], RLConfig)


def test_overrides_parse_yaml_values():
    cfg = load_config(None, ["optim.lr=3e-4", "model.path=null", "optim.betas=[0.8, 0.9]",
                             "run.tensorboard=false"], SFTConfig)
    assert cfg.optim.lr == 3e-4 and cfg.model.path is None
    assert cfg.optim.betas == (0.8, 0.9) and cfg.run.tensorboard is False


def test_wrong_types_and_values_name_the_key(tmp_path):
    with pytest.raises(ConfigError, match="train.batch_size must be int"):
        load_config(None, ["train.batch_size=two"], SFTConfig)
    with pytest.raises(ConfigError, match="model.family"):
        load_config(None, ["model.family=llava"], SFTConfig)
    with pytest.raises(ConfigError, match="not of the form"):
        apply_override({}, "no_equals_sign")
    bad = tmp_path / "bad.yaml"
    bad.write_text("- a list\n")
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_config(bad, [], SFTConfig)
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.yaml", [], SFTConfig)


def test_released_data_settings_are_checked(tmp_path):
    with pytest.raises(ConfigError, match="data.frame_sampling"):
        load_config(None, ["data.frame_sampling=nearest"], SFTConfig)
    cfg = load_config(None, [f"data.video_dir={tmp_path}", "data.frame_sampling=qwen"], SFTConfig)
    assert (cfg.data.video_dir, cfg.data.frame_sampling) == (str(tmp_path), "qwen")


def test_qwen_video_pixels_setting():
    from harness.trainer.common import build_model

    cfg = load_config(None, ["model.family=qwen2_5_vl", "model.video_pixels=[1024, 2048, 100000]"], SFTConfig)
    assert build_model(cfg.model).video_pixels == (1024, 2048, 100000)
    with pytest.raises(ConfigError, match="video_pixels is for qwen2_5_vl"):
        load_config(None, ["model.video_pixels=[1, 2, 3]"], SFTConfig)
    with pytest.raises(ConfigError, match=r"\[min, max, total\]"):
        load_config(None, ["model.family=qwen2_5_vl", "model.video_pixels=[5, 2, 3]"], SFTConfig)


@pytest.mark.parametrize("override, key", [
    ("optim.grad_clip=-1", "optim.grad_clip"),  # would turn the update into gradient ascent
    ("optim.grad_clip=0", "optim.grad_clip"),  # would freeze training
    ("optim.lr=.inf", "optim.lr"),
    ("optim.lr=.nan", "optim.lr"),
    ("run.log_every=0", "run.log_every"),
    ("run.keep_last=0", "run.keep_last"),
    ("optim.betas=[0.9, 1.5]", "optim.betas"),
    ("algo.dual_clip=0.5", "algo.dual_clip"),
    ("rollout.max_new_tokens=0", "rollout.max_new_tokens"),
])
def test_nonsense_numbers_stop_the_cli_before_any_work(override, key, tmp_path, capsys):
    from harness.cli import main

    assert main(["rl", "--config", "configs/rl/toy-cpu.yaml", f"run.out_dir={tmp_path / 'run'}", override]) == 2
    assert key in capsys.readouterr().err and not (tmp_path / "run").exists()


def test_an_unknown_key_on_the_command_line_is_attributed_to_it():
    with pytest.raises(ConfigError, match=r"command line: unknown key 'optim.lrr' \(did you mean 'optim.lr'\?\)"):
        load_config("configs/rl/toy-cpu.yaml", ["optim.lrr=1e-5"], RLConfig)


def _setting_names(instance, prefix=""):
    import dataclasses

    for f in dataclasses.fields(instance):
        value = getattr(instance, f.name)
        if dataclasses.is_dataclass(value):
            yield from _setting_names(value, f"{prefix}{f.name}.")
        else:
            yield f"{prefix}{f.name}", f.name


@pytest.mark.parametrize("kind", [SFTConfig, RLConfig])
def test_every_setting_is_read_by_the_code(kind):
    """Every key of the recipe's config is read somewhere in harness/ outside config.py (as
    an attribute `.name`): a key that is accepted but read by nothing does nothing. The
    check is by name, so a key whose name another attribute shares can pass unread; it
    catches the keys that appear nowhere."""
    import re

    root = Path(__file__).resolve().parents[1] / "harness"
    code = "\n".join(p.read_text() for p in root.rglob("*.py") if p.name != "config.py")
    unread = [key for key, name in _setting_names(kind()) if not re.search(rf"\.{name}\b", code)]
    assert not unread, f"settings no code reads: {unread}"


def test_frame_counts_past_the_samplers_limit_are_refused_by_name():
    from harness.config import MAX_FRAMES
    from harness.data import video

    assert MAX_FRAMES == video.MAX_FRAMES  # one limit, kept in two light places
    with pytest.raises(ConfigError, match="data.num_frames must be <= 8192"):
        load_config(None, ["data.num_frames=9000"], SFTConfig)
