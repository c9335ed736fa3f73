"""`python -m reproduce efficiency`: the PNG and the Markdown from a fixture perf JSON."""

import json

import pytest

from reproduce import efficiency


@pytest.fixture
def perf_json(tmp_path):
    def row(mode, frames, sec, fits=True, status="ok"):
        return {"mode": mode, "frames": frames, "status": status, "sec_per_step": sec, "fits": fits,
                "mem_per_rank_gib": [0.5, 0.5]}

    data = {
        "suite": "mrsp", "machine_kind": "cpu-2core", "date": "2026-01-01", "world_size": 2, "budget_gib": 1.0,
        "model": {"text": "model vila/perf: 16 tokens/frame, vision:LLM 0.299"},
        "rows": [row("baseline", 32, 2.0), row("stage1", 32, 1.0), row("stage12", 32, 1.5),
                 row("baseline", 64, 4.0, fits=False, status="over_budget"), row("stage1", 64, 2.0),
                 row("stage12", 64, 2.6),
                 {"mode": "baseline", "frames": 128, "status": "oom", "fits": False},
                 {"mode": "stage1", "frames": 128, "status": "failed", "error": "x", "fits": False},
                 row("stage12", 128, 5.0), dict(row("stage12_shared", 32, 0.5), limit_sec_per_step=0.1),
                 dict(row("stage12_shared", 64, 0.8), limit_sec_per_step=0.2), row("stage12_shared", 128, 1.6)],
    }
    path = tmp_path / "mrsp.json"
    path.write_text(json.dumps(data))
    return path


def test_series_marks_oom():
    rows = json.loads('[{"mode": "baseline", "frames": 32, "status": "ok", "sec_per_step": 2.0, "fits": true},'
                      ' {"mode": "baseline", "frames": 64, "status": "oom", "fits": false}]')
    s = efficiency.series(rows)
    assert s["baseline"] == {"frames": [32], "seconds": [2.0], "oom": [64]}
    paper = efficiency.paper_series("LongVILA-R1-7B")
    assert paper["baseline"]["oom"] == [1024] and paper["stage12"]["seconds"] == [194, 279, 460]


def test_main_writes_png_and_prints_both(perf_json, tmp_path, capsys):
    out = tmp_path / "fig" / "efficiency.png"
    assert efficiency.main(["--perf", str(perf_json), "--out", str(out)]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 10_000
    text = capsys.readouterr().out
    assert "| ours | 32 | 2 | 1 | 1.5 | 0.5 | 2.00x | 1.33x | 4.00x |" in text
    assert "| ours | 64 | OOM | 2 | 2.6 | 0.8 | – | – | – |" in text
    assert "| paper LongVILA-R1-7B | 512 | 576 | 278 | 279 | – | 2.07x | 2.06x | – |" in text
    assert "| paper LongVILA-R1-7B | 1024 | OOM | OOM | 460 | – | – | – | – |" in text
    assert efficiency.limit_series(json.loads(perf_json.read_text())["rows"]) == {"frames": [32, 64],
                                                                                  "seconds": [0.1, 0.2]}


def test_bad_input(tmp_path, capsys):
    assert efficiency.main(["--perf", str(tmp_path / "none.json")]) == 2
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    assert efficiency.main(["--perf", str(bad)]) == 2
    assert "not an MR-SP perf result" in capsys.readouterr().out
