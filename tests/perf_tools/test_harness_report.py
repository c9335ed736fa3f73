"""`harness report`: verdicts, the Markdown table, exit status, baseline lookup by machine."""

import json

import pytest

from harness import cli, report


def fig(value, better="lower", threshold=0.2, unit="s"):
    return {"value": value, "unit": unit, "better": better, "threshold": threshold}


@pytest.mark.parametrize(
    "base, cur, better, verdict",
    [
        (10.0, 11.9, "lower", report.OK),  # +19% within 20%
        (10.0, 12.5, "lower", report.REGRESSED),  # +25% slower
        (10.0, 7.0, "lower", report.IMPROVED),
        (2.0, 1.5, "higher", report.REGRESSED),  # speedup fell by 25%
        (2.0, 2.6, "higher", report.IMPROVED),
        (2.0, 1.7, "higher", report.OK),
        (0.0, 0.0, "lower", report.OK),
        (0.0, 1.0, "lower", report.REGRESSED),
        (10.0, float("nan"), "lower", report.REGRESSED),
    ],
)
def test_judge(base, cur, better, verdict):
    v = report.judge("x", fig(base, better), fig(cur, better))
    assert v.verdict == verdict


def test_baseline_threshold_wins_and_new_missing():
    base = {"figures": {"a": fig(1.0, threshold=0.5), "gone": fig(1.0)}}
    cur = {"figures": {"a": fig(1.4, threshold=0.1), "fresh": fig(3.0)}}
    verdicts = {v.name: v for v in report.compare(base, cur)}
    assert verdicts["a"].verdict == report.OK and verdicts["a"].threshold == 0.5
    assert verdicts["gone"].verdict == report.MISSING
    assert verdicts["fresh"].verdict == report.NEW
    assert report.exit_status(list(verdicts.values())) == 0
    assert report.exit_status(list(verdicts.values()), strict=True) == 1


def test_render_lists_regressions_first():
    verdicts = report.compare({"figures": {"fast": fig(1.0), "slow": fig(1.0)}},
                              {"figures": {"fast": fig(1.0), "slow": fig(2.0)}})
    text = report.render(verdicts)
    lines = [line for line in text.splitlines() if line.startswith("| ")]
    assert lines[0].startswith("| figure | baseline | current | change | threshold | verdict |")
    assert lines[1].startswith("| slow | 1 s | 2 s | +100.0% | 20% ↓ | **REGRESSED** |")
    assert "2 figures: 1 REGRESSED, 1 ok." in text


def _write(path, machine_kind, figures):
    path.write_text(json.dumps({"machine_kind": machine_kind, "figures": figures}))
    return path


def test_cli_exit_codes_and_baseline_folder(tmp_path, capsys):
    baselines = tmp_path / "baselines"
    baselines.mkdir()
    _write(baselines / "cpu-2core.json", "cpu-2core", {"t": fig(1.0), "speedup": fig(2.0, "higher")})
    good = _write(tmp_path / "good.json", "cpu-2core", {"t": fig(1.1), "speedup": fig(2.1, "higher")})
    bad = _write(tmp_path / "bad.json", "cpu-2core", {"t": fig(1.5), "speedup": fig(2.1, "higher")})
    assert cli.main(["report", "--baseline", str(baselines), "--current", str(good)]) == 0
    out = tmp_path / "report.md"
    assert cli.main(["report", "--baseline", str(baselines / "cpu-2core.json"), "--current", str(bad),
                     "--out", str(out)]) == 1
    assert "REGRESSED" in out.read_text()
    other = _write(tmp_path / "other.json", "gpu-8xH100-80GB", {"t": fig(1.0)})
    assert cli.main(["report", "--baseline", str(baselines), "--current", str(other)]) == 2
    assert "no baseline for machine kind 'gpu-8xH100-80GB'" in capsys.readouterr().err


def test_write_baseline_and_bad_input(tmp_path, capsys):
    cur = _write(tmp_path / "cur.json", "cpu-2core", {"t": fig(1.0)})
    target = tmp_path / "b" / "cpu-2core.json"
    assert cli.main(["report", "--write-baseline", str(target), "--current", str(cur)]) == 0
    assert json.loads(target.read_text())["figures"]["t"]["value"] == 1.0
    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps({"figures": {"t": {"value": "fast", "better": "lower"}}}))
    assert cli.main(["report", "--baseline", str(target), "--current", str(broken)]) == 2
    assert "no numeric 'value'" in capsys.readouterr().err


def test_merge_current_rejects_a_figure_twice(tmp_path):
    a = _write(tmp_path / "a.json", "cpu-2core", {"t": fig(1.0)})
    b = _write(tmp_path / "b.json", "cpu-2core", {"t": fig(1.0)})
    with pytest.raises(ValueError, match="appears in two current files"):
        report.merge_current([a, b])
