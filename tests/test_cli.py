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


def test_model_init_refuses_7b(tmp_path):
    try:
        main(["model", "init", "--family", "vila", "--size", "7b", "--out", str(tmp_path)])
    except SystemExit as exc:
        assert "meta device" in str(exc)
    else:
        raise AssertionError("7b init should refuse to save")


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
