"""The `harness` command: each subcommand runs the real component."""

import json
import subprocess
import sys

from harness.cli import main
from harness.model.build import load_model


def test_help_is_instant_and_lists_commands():
    res = subprocess.run([sys.executable, "-m", "harness", "--help"], capture_output=True, text=True)
    assert res.returncode == 0
    for cmd in ("doctor", "demo", "model", "data"):
        assert cmd in res.stdout


def test_model_init_writes_a_loadable_checkpoint(tmp_path, capsys):
    assert main(["model", "init", "--family", "vila", "--size", "tiny", "--out", str(tmp_path / "m")]) == 0
    assert "parameters" in capsys.readouterr().out
    assert load_model(tmp_path / "m").family == "vila"


def test_model_info_on_7b_counts_without_allocating(capsys):
    assert main(["model", "info", "--family", "vila", "--size", "7b"]) == 0
    out = capsys.readouterr().out
    assert "16x16 tokens + 1 end token(s) = 257 prompt rows per frame" in out  # 448/14 = 32x32 -> 2x2 merge


def test_model_init_refuses_7b_and_a_folder_that_holds_files(tmp_path, capsys):
    assert main(["model", "init", "--family", "vila", "--size", "7b", "--out", str(tmp_path / "a")]) == 2
    assert "meta device" in capsys.readouterr().err
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "config.json").write_text("{}")  # e.g. a trained checkpoint
    assert main(["model", "init", "--family", "qwen2_5_vl", "--size", "tiny", "--out", str(tmp_path / "m")]) == 2
    assert "not an empty folder" in capsys.readouterr().err
    assert (tmp_path / "m" / "config.json").read_text() == "{}"  # untouched


def test_bad_user_input_is_a_clear_error_without_traceback(tmp_path, capsys):
    code = main(["data", "synth", "--out", str(tmp_path), "--videos", "3", "--minutes", "two"])
    assert code == 2
    assert "error" in capsys.readouterr().err


def test_doctor_reports_every_part(capsys):
    assert main(["doctor"]) == 0
    out = capsys.readouterr().out
    for part in ("torch", "transformers", "decord", "av", "vllm", "deepspeed", "cuda-only companions",
                 "device", "torch.distributed"):
        assert part in out
    assert "required parts: all working" in out


def test_purposeful_errors_are_one_line_and_debug_shows_the_traceback(tmp_path, capsys, monkeypatch):
    """A stop the harness makes on purpose (here: a data split whose lines are all malformed,
    SkipBudgetExceeded, a RuntimeError before #18) is one line naming the file, exit 2; the
    traceback comes with --debug."""
    import pytest

    from harness.cli import main
    from harness.data.dataset import SkipBudgetExceeded

    data = tmp_path / "data"
    data.mkdir()
    good = {"problem_id": "a", "data_type": "video", "videos": ["v.mp4"], "problem": "Q?\nA. x\nB. y",
            "problem_type": "multiple choice", "answer": "<answer>A</answer>", "reasoning": "r"}
    (data / "sft.jsonl").write_text(json.dumps(good) + '\n{"problem_id": "b"}\n')
    argv = ["sft", f"data.dir={data}", "data.eval=null", "data.max_skip_fraction=0", f"run.out_dir={tmp_path / 'run'}",
            "run.progress=false", "run.tensorboard=false"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    first = err.splitlines()[0]
    assert "1 of 2 lines" in first and "sft.jsonl" in first and "Traceback" not in err and "--debug" in err
    with pytest.raises(SkipBudgetExceeded, match="sft.jsonl"):
        main(["--debug", *argv])


def _sft(tmp_path, *extra, config="configs/sft/toy-cpu.yaml"):
    return ["sft", "--config", str(config), f"run.out_dir={tmp_path / 'run'}", "run.progress=false", *extra]


def test_config_mistakes_are_one_line_naming_file_line_or_key(tmp_path, capsys):
    bad = tmp_path / "tab.yaml"
    bad.write_text("run:\n\tsteps: 2\n")  # a tab indent
    assert main(_sft(tmp_path, config=bad)) == 2
    err = capsys.readouterr().err
    assert str(bad) in err and "not valid YAML" in err and "line 2" in err and "Traceback" not in err
    twice = tmp_path / "twice.yaml"
    twice.write_text("run:\n  steps: 2\noptim:\n  lr: 0.1\nrun:\n  seed: 3\n")
    assert main(_sft(tmp_path, config=twice)) == 2
    assert "line 5: key 'run' appears twice" in capsys.readouterr().err
    assert main(_sft(tmp_path, "optim.betas=[0.9, 0.99")) == 2
    assert "optim.betas=[0.9, 0.99' is not valid YAML" in capsys.readouterr().err
    assert main(_sft(tmp_path, "run=5")) == 2
    assert "run is a section, not a setting" in capsys.readouterr().err
    assert main(["sft", "configs/sft/toy-cpu.yaml"]) == 2  # --config forgotten
    assert "give --config configs/sft/toy-cpu.yaml" in capsys.readouterr().err
    assert main(_sft(tmp_path, config=tmp_path)) == 2  # a folder
    assert "is not a file" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()  # nothing written


def test_parallel_settings_without_torchrun_say_how_to_launch(tmp_path, capsys):
    assert main(_sft(tmp_path, "parallel.dp_size=2")) == 2
    assert "torchrun --nproc_per_node 2 -m harness" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_out_dir_that_is_a_file_and_home_in_paths(tmp_path, capsys, monkeypatch):
    (tmp_path / "run").write_text("")
    assert main(_sft(tmp_path)) == 2
    err = capsys.readouterr().err
    assert "run.out_dir" in err and "is a file" in err
    from harness.config import SFTConfig, load_config

    monkeypatch.setenv("HOME", str(tmp_path))
    cfg = load_config(None, ["run.out_dir=~/runs/x", "data.dir=~/data"], SFTConfig)
    assert cfg.run.out_dir == f"{tmp_path}/runs/x" and cfg.data.dir == f"{tmp_path}/data"


def test_harness_debug_false_means_no_traceback(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HARNESS_DEBUG", "false")
    assert main(_sft(tmp_path, "parallel.dp_size=2")) == 2  # printed as one line, not raised
