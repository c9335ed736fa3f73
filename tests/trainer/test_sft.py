"""The SFT recipe on a few steps: it trains, logs, checkpoints, and resumes exactly."""

import json

import pytest
import torch

from harness.config import SFTConfig, load_config
from harness.model.build import load_model
from harness.trainer.metrics import read_metrics
from harness.trainer.sft import train_sft
from tests.helpers import tiny_overrides


def _cfg(data, out, **extra):
    base = {"run.steps": 4, "run.save_every": 2, "optim.lr": 1e-3, "train.batch_size": 2, "train.grad_accum": 2}
    base.update(extra)
    return load_config("configs/sft/toy-cpu.yaml", tiny_overrides(data, out, **base), SFTConfig)


def test_sft_runs_logs_and_saves(toy_data, tmp_path):
    result = train_sft(_cfg(toy_data, tmp_path / "run"))
    rows = read_metrics(tmp_path / "run" / "metrics.jsonl")
    train_rows = [r for r in rows if "loss" in r]
    assert [r["step"] for r in train_rows] == [1, 2, 3, 4]
    assert all(r["examples"] == 4 for r in train_rows)  # batch 2 x accumulation 2
    assert {"time/data", "time/encode", "time/forward", "time/backward", "mem/peak_rss_gb"} <= train_rows[0].keys()
    assert "eval/accuracy" in result and result["eval/questions"] == 4
    model = load_model(tmp_path / "run" / "final")  # HF-format output loads back
    assert model.family == "vila"


def test_sft_loss_falls_when_overfitting_one_batch(toy_data, tmp_path):
    cfg = _cfg(toy_data, tmp_path / "run", **{"run.steps": 12, "optim.lr": 3e-3, "optim.warmup_steps": 0,
                                              "data.eval": None, "train.batch_size": 2, "train.grad_accum": 1})
    cfg.data.train = "test.jsonl"  # 4 records: the same few examples again and again
    train_sft(cfg)
    losses = [r["loss"] for r in read_metrics(tmp_path / "run" / "metrics.jsonl")]
    assert losses[-1] < losses[0] * 0.8, losses


def test_resume_continues_exactly(toy_data, tmp_path):
    """N steps straight == N/2 steps, stop, resume, N/2 more: same losses, same weights."""
    straight = _cfg(toy_data, tmp_path / "a", **{"data.eval": None})
    train_sft(straight)
    half = _cfg(toy_data, tmp_path / "b", **{"data.eval": None, "run.steps": 2})
    train_sft(half)
    rest = _cfg(toy_data, tmp_path / "b", **{"data.eval": None})
    train_sft(rest, resume=True)
    a = read_metrics(tmp_path / "a" / "metrics.jsonl")
    b = read_metrics(tmp_path / "b" / "metrics.jsonl")
    assert [r["step"] for r in b] == [1, 2, 3, 4]
    assert [r["loss"] for r in a] == pytest.approx([r["loss"] for r in b], rel=1e-6, abs=1e-7)
    wa = load_model(tmp_path / "a" / "final").state_dict()
    wb = load_model(tmp_path / "b" / "final").state_dict()
    assert all(torch.allclose(wa[k], wb[k], atol=1e-6) for k in wa)


def test_missing_data_without_synthesis_is_a_clear_error(tmp_path):
    cfg = load_config(None, [f"data.dir={tmp_path}", f"run.out_dir={tmp_path / 'o'}"], SFTConfig)
    with pytest.raises(FileNotFoundError, match="synth_items"):
        train_sft(cfg)


def test_config_is_written_next_to_the_run(toy_data, tmp_path):
    train_sft(_cfg(toy_data, tmp_path / "run", **{"run.steps": 1, "data.eval": None}))
    text = (tmp_path / "run" / "config.yaml").read_text()
    assert "num_frames: 4" in text
    json.dumps(text)


def test_rerun_into_an_existing_run_needs_resume(toy_data, tmp_path):
    cfg = _cfg(toy_data, tmp_path / "run", **{"run.steps": 1, "data.eval": None})
    train_sft(cfg, resume=True)  # nothing to resume yet: starts afresh
    config = (tmp_path / "run" / "config.yaml").read_text()
    with pytest.raises(FileExistsError, match="--resume"):
        train_sft(_cfg(toy_data, tmp_path / "run", **{"run.steps": 2, "data.eval": None}))
    assert (tmp_path / "run" / "config.yaml").read_text() == config  # the earlier run's, untouched


def test_non_finite_losses_skip_steps_then_stop_clearly(toy_data, tmp_path):
    """A checkpoint with NaN weights (bad input, real model): every loss is NaN, each step
    is skipped and logged, and after run.max_bad_steps in a row the run stops with a clear
    message instead of training on garbage."""
    from harness.model.build import init_model

    model = init_model("vila", "tiny")
    with torch.no_grad():
        model.llm.lm_head.weight.fill_(float("nan"))
    model.save_pretrained(tmp_path / "nan_model")
    cfg = _cfg(toy_data, tmp_path / "run", **{"model.path": tmp_path / "nan_model", "data.eval": None,
                                              "run.max_bad_steps": 2})
    with pytest.raises(RuntimeError, match="2 non-finite losses in a row at step 2"):
        train_sft(cfg)
    assert not (tmp_path / "run" / "checkpoints").exists() or not any((tmp_path / "run" / "checkpoints").iterdir())


def test_resume_without_a_checkpoint_starts_afresh(toy_data, tmp_path):
    """A run killed before its first checkpoint leaves metrics but no checkpoint: `--resume`
    starts it from step 0 in the same out_dir (the log cut back), not 'no checkpoint'."""
    from harness.cli import main

    out = tmp_path / "run"
    out.mkdir()
    (out / "metrics.jsonl").write_text('{"step": 1, "loss": 9.0}\n')  # the killed run's first step
    argv = ["sft", "--config", "configs/sft/toy-cpu.yaml", *tiny_overrides(toy_data, out, **{
        "run.steps": 1, "run.save_every": 1, "data.eval": None})]
    assert main(argv) == 2  # a plain rerun is refused: it would mix two runs' logs
    assert main([*argv[:3], "--resume", *argv[3:]]) == 0
    rows = read_metrics(out / "metrics.jsonl")
    assert [r["step"] for r in rows if "loss" in r] == [1] and rows[0]["loss"] != 9.0


def test_resume_skips_a_damaged_checkpoint_with_a_warning(toy_data, tmp_path, caplog):
    """Bytes flipped in the newest checkpoint's weights: --resume names it and continues from
    the newest intact one (never trains on corrupted weights); all damaged: exit 2."""
    from harness.cli import main
    from harness.trainer.checkpoint import list_checkpoints

    out = tmp_path / "run"
    argv = ["sft", "--config", "configs/sft/toy-cpu.yaml", *tiny_overrides(toy_data, out, **{
        "run.steps": 2, "run.save_every": 1, "run.keep_last": 2, "data.eval": None})]
    assert main(argv) == 0
    first, newest = list_checkpoints(out)
    weights = next((newest / "model").rglob("model*.safetensors"))
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte, same size
    weights.write_bytes(bytes(data))
    more = [a.replace("run.steps=2", "run.steps=3") for a in argv]
    assert main([*more[:3], "--resume", *more[3:]]) == 0
    assert f"checkpoint {newest} is damaged" in caplog.text and "sha256" in caplog.text
    steps = [r["step"] for r in read_metrics(out / "metrics.jsonl") if "loss" in r]
    assert steps == [1, 2, 3]  # step 2 redone from step 1's checkpoint
    for ckpt in list_checkpoints(out):
        f = next((ckpt / "model").rglob("model*.safetensors"))
        f.write_bytes(f.read_bytes()[:100])  # truncated
    assert main([*more[:3], "--resume", *more[3:]]) == 2


def test_malformed_lines_are_counted_in_the_metrics(toy_data, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "sft.jsonl").write_text((toy_data / "sft.jsonl").read_text() + '{"problem_id": "broken"}\n')
    cfg = _cfg(data, tmp_path / "run", **{"run.steps": 1, "data.eval": None, "data.video_dir": toy_data,
                                         "data.max_skip_fraction": 0.5})
    train_sft(cfg)
    rows = [r for r in read_metrics(tmp_path / "run" / "metrics.jsonl") if "loss" in r]
    assert rows[0]["data/malformed_lines"] == 1


def test_resume_refuses_settings_its_checkpoint_cannot_take(toy_data, tmp_path, capsys):
    """The optimizer and lr schedule come back from the checkpoint: a changed optim.lr on
    --resume would be written to config.yaml and silently ignored. It is refused, naming the
    key with both values, and config.yaml stays; a longer run.steps is taken."""
    from harness.cli import main

    out = tmp_path / "run"
    argv = ["sft", "--config", "configs/sft/toy-cpu.yaml", *tiny_overrides(toy_data, out, **{
        "run.steps": 1, "run.save_every": 1, "data.eval": None, "model.size": "tiny"})]
    assert main(argv) == 0
    saved = (out / "config.yaml").read_text()
    assert main([*argv[:3], "--resume", *argv[3:], "optim.lr=0.5"]) == 2
    err = capsys.readouterr().err
    assert "optim.lr: " in err and "-> 0.5" in err and "Traceback" not in err, err
    assert (out / "config.yaml").read_text() == saved
    assert main([*argv[:3], "--resume", *argv[3:], "run.steps=2"]) == 0
    assert [r["step"] for r in read_metrics(out / "metrics.jsonl") if "loss" in r] == [1, 2]


def test_a_start_that_failed_before_its_first_step_does_not_lock_the_out_dir(toy_data, tmp_path, capsys):
    """A run stopped during setup leaves an empty log and no checkpoint; the corrected rerun
    (no --resume) is not refused as 'an earlier run'."""
    from harness.cli import main

    out = tmp_path / "run"
    out.mkdir()
    (out / "metrics.jsonl").write_text("")
    argv = ["sft", "--config", "configs/sft/toy-cpu.yaml", *tiny_overrides(toy_data, out, **{
        "run.steps": 1, "run.save_every": 1, "data.eval": None, "model.size": "tiny"})]
    assert main(argv) == 0
    assert len(read_metrics(out / "metrics.jsonl")) == 1


def test_resuming_a_finished_run_changes_nothing(toy_data, tmp_path):
    """--resume of a run that already ran its steps: no second final evaluation row, the
    final weights untouched."""
    cfg = _cfg(toy_data, tmp_path / "run", **{"run.steps": 2, "run.save_every": 2})
    train_sft(cfg)
    log = (tmp_path / "run" / "metrics.jsonl").read_text()
    weights = (tmp_path / "run" / "final" / "llm" / "model.safetensors").read_bytes()
    train_sft(cfg, resume=True)
    assert (tmp_path / "run" / "metrics.jsonl").read_text() == log
    assert (tmp_path / "run" / "final" / "llm" / "model.safetensors").read_bytes() == weights
