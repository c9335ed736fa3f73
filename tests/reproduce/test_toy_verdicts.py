"""`python -m reproduce toy`'s bookkeeping: step times from a metrics.jsonl and PASS/FAIL per
claim against the targets (the end-to-end run itself is the slow test)."""

from __future__ import annotations

import argparse
import json

import pytest
import yaml

from reproduce.toy import (
    TARGETS,
    MemoryCheck,
    Settings,
    _step_seconds,
    claim,
    main,
    report,
    run,
    settings_from_args,
    verdicts,
)


def _memory_json(base: list[float], sp2: list[float], budget: float = 0.6) -> dict:
    """memory.json as `_memory` writes it: the baseline at 128, 256, ... frames until over the
    budget, SP 2 from there (per-rank GiB)."""
    rows = [{"mode": "baseline", "frames": 128 * 2**i, "sp": 1, "mem_per_rank_gib": [m], "fits": m <= budget}
            for i, m in enumerate(base)]
    start = 128 * 2 ** (len(base) - 1)
    rows += [{"mode": "stage12", "frames": start * 2**i, "sp": 2, "mem_per_rank_gib": [m, m], "fits": m <= budget}
             for i, m in enumerate(sp2)]
    fit = {k: max((r["frames"] for r in rows if r["mode"] == mode and r["fits"]), default=None)
           for k, mode in (("baseline", "baseline"), ("sp2", "stage12"))}
    return {"check": {"budget_gib": budget, "frames": [128, 256]}, "rows": rows, "largest_fitting": fit}


def _results(sft: float, rl: float, f2: float, f16: float, base_s: float, cached_s: float) -> dict:
    return {
        "accuracy": {"untrained": 0.0, "sft": sft, "rl": rl},
        "accuracy_by_frames": {2: f2, 4: (f2 + f16) / 2, 8: f16, 16: f16},
        "step_seconds": {"baseline": {"time/step": base_s}, "mrsp_cache": {"time/step": cached_s}},
        "memory": _memory_json([0.40, 0.88], [0.45]),  # measured 2026-11-21 (session 7)
        "wall_seconds": 60.0, "settings": {},
    }


def test_verdicts_pass_and_fail_on_the_margins():
    t = yaml.safe_load(TARGETS.read_text())["toy"]
    good = verdicts(_results(0.5, 0.51 + t["rl_over_sft"], 0.3, 0.31 + t["frames_gain"], 2.0, 1.0), t)
    assert all(ok for *_, ok in good)
    # RL below SFT + margin (what the toy run measured with a perfect teacher, sessions 3-5) fails that row only
    bad = verdicts(_results(0.51, 0.47, 0.3, 0.6, 2.0, 1.0), t)
    assert [ok for *_, ok in bad] == [True, False, True, True, True]
    assert "| (a) RL > SFT | 0.470 vs 0.510 | +0.05 | FAIL |" in report(_results(0.51, 0.47, 0.3, 0.6, 2.0, 1.0), bad)
    # the curve the 2026-11-21 run measured: high only at the trained frame count -> FAIL
    r = _results(0.54, 0.54, 0.21, 0.54, 2.0, 1.0)
    r["accuracy_by_frames"] = {2: 0.21, 4: 0.01, 8: 0.12, 16: 0.54}
    assert [ok for *_, ok in verdicts(r, t)][2] is False


def test_memory_row_passes_only_when_sp2_fits_more_frames_than_the_baseline():
    t = yaml.safe_load(TARGETS.read_text())["toy"]
    r = _results(0.5, 0.6, 0.3, 0.6, 2.0, 1.0)
    row = verdicts(r, t)[4]
    assert row[3] is True and "baseline 128, SP 2 256 frames" in row[1] and "SP 2 256f 0.45" in row[1]
    for base, sp2 in (([0.40, 0.88], [0.70]),  # SP 2 over the budget where the baseline was
                      ([0.70], [0.65]),  # nothing fits
                      ([0.40, 0.50], [])):  # the baseline fits every count: no evidence either way
        r["memory"] = _memory_json(base, sp2)
        assert verdicts(r, t)[4][3] is False, (base, sp2)
    assert "SP 2 not run: the baseline fits every count up to 256" in verdicts(r, t)[4][1]
    r["memory"] = {**_memory_json([0.40, 0.88], [0.45]), "error": "SP 2 at 256 frames: ProcessExitedException"}
    assert verdicts(r, t)[4][3] is False and "a run failed: SP 2 at 256" in verdicts(r, t)[4][1]


def test_memory_check_settings_are_validated():
    t = yaml.safe_load(TARGETS.read_text())["toy"]
    assert MemoryCheck.from_targets(t) == MemoryCheck(t["memory_budget_gib"], tuple(t["memory_frames"]))
    for budget, frames in ((0.0, (128,)), (0.6, ()), (0.6, (256, 128)), (0.6, (0, 128))):
        with pytest.raises(ValueError, match="memory_"):
            MemoryCheck(budget, frames)


def test_step_seconds_sums_top_level_blocks_and_drops_the_first_step(tmp_path):
    rows = [{"step": 1, "reward/mean": 0.1, "time/rollout": 9.0, "time/update": 9.0},
            {"step": 2, "reward/mean": 0.2, "time/rollout": 1.0, "time/update": 2.0, "time/update/backward": 1.5},
            {"step": 3, "reward/mean": 0.3, "time/rollout": 3.0, "time/update": 2.0},
            {"step": 3, "eval/accuracy": 0.5}]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    s = _step_seconds(tmp_path)
    assert s["time/rollout"] == 2.0 and s["time/update"] == 2.0 and s["time/step"] == 4.0
    (tmp_path / "metrics.jsonl").write_text(json.dumps(rows[0]) + "\n")
    with pytest.raises(ValueError, match="fewer than 2 RL steps"):
        _step_seconds(tmp_path)


def test_step_seconds_up_to_a_step_times_the_steps_the_baseline_ran(tmp_path):
    rows = [{"step": k, "reward/mean": 0.0, "time/rollout": float(k)} for k in range(1, 7)]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert _step_seconds(tmp_path, last=4)["time/step"] == 3.0  # steps 2, 3, 4
    assert _step_seconds(tmp_path)["time/step"] == 4.0  # steps 2..6


def test_report_prints_sampled_accuracy_beside_the_claims_when_measured():
    t = yaml.safe_load(TARGETS.read_text())["toy"]
    r = _results(0.5, 0.5, 0.3, 0.6, 2.0, 1.0)
    assert "sampled answers" not in report(r, verdicts(r, t))  # a results.json from before
    r["sampled_accuracy"] = {"untrained": 0.0, "sft": 0.497, "rl": 0.502}
    text = report(r, verdicts(r, t))
    assert "temperature 1): untrained 0.000 / sft 0.497 / rl 0.502." in text
    assert len(verdicts(r, t)) == 5  # informational, not a sixth claim


def test_settings_come_from_the_targets_and_a_changed_setting_is_not_reused(tmp_path):
    t = yaml.safe_load(TARGETS.read_text())["toy"]
    s = Settings.from_targets(t)
    assert s.videos == t["videos"] and s.teacher_confusion == tuple(t["teacher_confusion"])
    assert Settings.from_targets(t, sft_steps=7, rl_steps=None).sft_steps == 7  # None: keep the target
    assert Settings.from_targets(t, teacher_confusion=[]).teacher_confusion == ()
    claim(tmp_path, s, fresh=False)
    claim(tmp_path, s, fresh=False)  # the same settings: stages are reused
    with pytest.raises(ValueError, match=r"other settings \(sft_steps: \d+ -> 7\)"):
        claim(tmp_path, Settings.from_targets(t, sft_steps=7), fresh=False)
    saved = json.loads((tmp_path / "settings.json").read_text())
    (tmp_path / "settings.json").write_text(json.dumps({**saved, "retired": 1}))
    with pytest.raises(ValueError, match=r"other settings \(retired: 1 -> None\)"):
        claim(tmp_path, s, fresh=False)
    old = tmp_path / "old"
    (old / "sft").mkdir(parents=True)  # a folder with a run but no settings.json
    with pytest.raises(FileExistsError, match="holds no toy run"):
        claim(old, s, fresh=False)


def test_report_names_the_imperfect_teacher():
    t = yaml.safe_load(TARGETS.read_text())["toy"]
    r = _results(0.5, 0.6, 0.3, 0.6, 2.0, 1.0)
    r["settings"] = {"teacher_confusion": ["yellow=green:0.65"]}
    assert "imperfect teacher that names colours wrongly (yellow=green:0.65" in report(r, verdicts(r, t))


def _args(**kw):
    names = ("videos", "teacher_confusion", "sft_steps", "sft_batch", "rl_steps", "rl_prompts",
             "baseline_steps", "eval_questions")
    return argparse.Namespace(**{n: kw.get(n) for n in names})


def test_command_line_overrides_and_bad_settings_are_refused_before_any_file(tmp_path, capsys):
    t = yaml.safe_load(TARGETS.read_text())["toy"]
    assert settings_from_args(_args(), t) == Settings.from_targets(t)
    assert settings_from_args(_args(teacher_confusion=["none"]), t).teacher_confusion == ()
    assert settings_from_args(_args(teacher_confusion=["red=blue:1"]), t).teacher_confusion == ("red=blue:1",)
    assert settings_from_args(_args(rl_prompts=3), t).rl_prompts == 3
    for bad, match in ((dict(teacher_confusion=["none", "red=blue:1"]), "cannot be combined"),
                       (dict(sft_steps=0), "sft_steps must be a positive integer"),
                       (dict(teacher_confusion=["yelow=green:0.5"]), "'yelow' is not a colour")):
        with pytest.raises(ValueError, match=match):
            settings_from_args(_args(**bad), t)
    with pytest.raises(ValueError, match="a list of TRUE=SAID:RATE"):
        Settings.from_targets({**t, "teacher_confusion": "yellow=green:0.65"})
    out = tmp_path / "run"
    assert main(["--out", str(out), "--teacher-confusion", "yelow=green:0.5"]) == 2
    assert "'yelow' is not a colour" in capsys.readouterr().err and not out.exists()


def test_fresh_deletes_only_a_toy_run(tmp_path):
    t = yaml.safe_load(TARGETS.read_text())["toy"]
    (tmp_path / "precious.txt").write_text("not a toy run")
    with pytest.raises(FileExistsError, match="holds no toy run .*; --fresh will not delete it"):
        run(tmp_path, Settings.from_targets(t), fresh=True)
    with pytest.raises(FileExistsError, match="holds no toy run; choose a new or empty --out"):
        claim(tmp_path, Settings.from_targets(t), fresh=False)
    assert (tmp_path / "precious.txt").exists() and not (tmp_path / "settings.json").exists()
