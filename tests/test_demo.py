"""The demo end to end (what `tox -e demo` runs), and its reuse of built artefacts."""

import json

from harness.cli import main


def test_demo_runs_end_to_end_and_reuses(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out)]) == 0
    first = capsys.readouterr().out
    result = json.loads((out / "demo.json").read_text())
    assert result["video_tokens"] == 16 * 4  # 16 frames x 4 tokens (tiny vila)
    assert result["cache"] == {"hits": 1, "misses": 1, "corrupt": 0, "writes": 1}
    assert (out / "data" / "videomme" / "subtitle").is_dir()
    assert "reused" not in first
    assert main(["demo", "--out", str(out)]) == 0
    second = capsys.readouterr().out
    assert "reused existing data" in second and "loaded existing checkpoint" in second
    # the on-disk cache from the first run is hit on the second
    assert json.loads((out / "demo.json").read_text())["cache"]["hits"] == 2


def test_demo_qwen_family(tmp_path):
    assert main(["demo", "--out", str(tmp_path / "q"), "--family", "qwen2_5_vl"]) == 0
    assert json.loads((tmp_path / "q" / "demo.json").read_text())["video_tokens"] == 8 * 4
