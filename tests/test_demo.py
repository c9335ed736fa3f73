"""The demo end to end (what `tox -e demo` runs) at `--quick` settings, and its reuse of
built artefacts. Nothing is expected to learn here: the checks are that every stage ran
and the report holds the table and the plots."""

import json

import pytest

from harness.cli import main


def _rows(run):
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def _check_report(out):
    report = (out / "report.md").read_text()
    for row in ("| untrained (random init) |", "| CoT-SFT |", "| CoT-SFT + RL (MR-SP) |"):
        assert report.count(row) == 1, row
    assert "at or below chance" in report
    for png in ("reward_curve.png", "step_times.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    result = json.loads((out / "demo.json").read_text())
    for name in ("untrained", "sft", "rl"):
        r = result["results"][name]
        assert r["heldout"]["questions"] == 4
        assert r["videomme"]["questions"] == r["videomme_sub"]["questions"] == 4
    return result


def test_demo_quick_runs_every_stage_then_reuses(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--quick", "--procs", "1", "--engine", "hf", "--out", str(out)]) == 0
    first = capsys.readouterr().out
    assert "reused" not in first
    result = _check_report(out)
    assert set(result["stages"]) == {"data", "model", "sft", "rl", "eval", "report"}
    rl = [r for r in _rows(out / "rl") if "reward/mean" in r]
    base = [r for r in _rows(out / "rl-baseline") if "reward/mean" in r]
    assert [r["step"] for r in rl] == [1, 2] and len(base) == 1
    # MR-SP encodes each prompt's video once per step; the baseline again in every pass
    assert rl[0]["media/encoder_calls"] == rl[0]["data/prompts"] < base[0]["media/encoder_calls"]

    assert main(["demo", "--quick", "--procs", "1", "--engine", "hf", "--out", str(out)]) == 0
    second = capsys.readouterr().out
    assert second.count("reused what is already built") == 5  # data, model, sft, rl, eval
    again = json.loads((out / "demo.json").read_text())
    assert all(again["stages"][k] == "reused" for k in ("data", "model", "sft", "rl"))
    assert again["built_seconds"]["sft"] == result["built_seconds"]["sft"] > 0  # the building run's time

    # other settings on the same folder: refused, naming --fresh and what differs
    assert main(["demo", "--quick", "--procs", "1", "--engine", "hf", "--seed", "1", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "seed: 0 -> 1" in err and "--fresh" in err


@pytest.mark.slow
def test_demo_quick_with_mrsp_sp2_and_vllm(tmp_path):
    """The demo's own RL layout: 2 processes, sp_size=2, vLLM engines on both ranks."""
    pytest.importorskip("vllm")
    out = tmp_path / "demo"
    assert main(["demo", "--quick", "--out", str(out)]) == 0
    _check_report(out)
    assert all(r["rollout/logp_diff_max"] < 1e-4 for r in _rows(out / "rl") if "reward/mean" in r)


@pytest.mark.parametrize("modality", ["text", "image", "audio", "video+audio"])
def test_media_demo_quick_runs_every_stage_and_reuses_them(tmp_path, modality, capsys):
    """`harness demo --modality M --quick`: data, model, SFT, RL, eval and the report, then
    a second run reuses every stage."""
    from harness.cli import main

    out = tmp_path / modality
    assert main(["demo", "--modality", modality, "--quick", "--out", str(out)]) == 0
    summary = json.loads((out / "demo.json").read_text())
    assert summary["family"] == {"text": "qwen2", "image": "qwen2_5_vl", "audio": "qwen2_5_omni",
                                 "video+audio": "qwen2_5_omni"}[modality]
    assert set(summary["accuracy"]) == {"untrained", "sft", "rl"}
    assert all(r["questions"] == 4 for r in summary["accuracy"].values())
    assert "| rl |" in (out / "report.md").read_text() and (out / "reward.png").is_file()
    assert main(["demo", "--modality", modality, "--quick", "--out", str(out)]) == 0
    assert all(v == "reused" for v in json.loads((out / "demo.json").read_text())["stages"].values())


def test_media_demo_takes_another_family_that_takes_the_medium(tmp_path):
    """`--family vila` runs the image demo on VILA's image path; a family without the
    medium is refused before anything is built."""
    from harness.cli import main

    out = tmp_path / "vila"
    assert main(["demo", "--modality", "image", "--family", "vila", "--quick", "--out", str(out)]) == 0
    summary = json.loads((out / "demo.json").read_text())
    assert summary["family"] == "vila" and set(summary["accuracy"]) == {"untrained", "sft", "rl"}
    assert main(["demo", "--modality", "audio", "--family", "vila", "--quick", "--out", str(tmp_path / "no")]) == 2
    assert not (tmp_path / "no").exists()


@pytest.mark.parametrize("modality", ["gen-image", "gen-video"])
def test_gen_demo_quick_runs_every_stage_and_reuses_them(tmp_path, modality):
    """`harness demo --modality gen-image|gen-video --quick`: prompts, Flow-GRPO on the tiny
    generator with held-out scoring before and after, the report with its sample grids."""
    from harness.cli import main

    out = tmp_path / modality
    assert main(["demo", "--modality", modality, "--quick", "--out", str(out)]) == 0
    summary = json.loads((out / "demo.json").read_text())
    assert summary["kind"] == {"gen-image": "sd3", "gen-video": "wan"}[modality]
    r = summary["held_out_reward"]
    low = -0.5 if modality == "gen-image" else 0.0  # shape_match's contrast term may be negative
    assert r["steps"] == 2 and r["prompts"] == 4 and all(low <= r[k] <= 1 for k in ("before", "after"))
    report = (out / "report.md").read_text()
    assert "rl/samples/before.png" in report and (out / "rl" / "samples" / "after.png").is_file()
    assert main(["demo", "--modality", modality, "--quick", "--out", str(out)]) == 0
    assert all(v == "reused" for v in json.loads((out / "demo.json").read_text())["stages"].values())
    assert main(["demo", "--modality", modality, "--quick", "--engine", "hf", "--out", str(tmp_path / "x")]) == 2
