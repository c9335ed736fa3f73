"""`python -m reproduce table1`: our eval results beside the paper's tables, with deltas."""

import csv
import json

import pytest

from reproduce import table1


def _result(task, acc, subtitles=False, **breakdowns):
    scores = {"accuracy": acc}
    for key, groups in breakdowns.items():
        scores[f"by_{key}"] = {g: {"accuracy": a, "n": 10} for g, a in groups.items()}
    return {"task": task, "scores": scores, "protocol": {"subtitles": subtitles, "frames": 64, "engine": "hf"},
            "counts": {"questions": 10, "answered": 10, "unparsed": 0, "missing_video": 0}}


@pytest.fixture
def results_dir(tmp_path):
    files = {
        "videomme.json": _result("videomme", 0.60, duration={"short": 0.7, "medium": 0.6, "long": 0.5}),
        "videomme_subtitles.json": _result("videomme", 0.70, True, duration={"short": 0.8, "medium": 0.7,
                                                                              "long": 0.6}),
        "longvideo_reason.json": _result("longvideo_reason", 0.72, category={"temporal": 0.681, "goal": 0.9,
                                                                             "plot": 0.7, "spatial": 0.5}),
        "nextqa.json": _result("nextqa", 0.815),
    }
    for name, data in files.items():
        (tmp_path / name).write_text(json.dumps(data))
    (tmp_path / "videomme.predictions.jsonl").write_text("{}\n")
    (tmp_path / "notes.json").write_text(json.dumps({"something": "else"}))  # not a results file
    return tmp_path


def test_tables_rows_and_deltas(results_dir):
    rows = table1.build_tables(table1.load_results(results_dir))
    by = {(r["table"], r["column"]): r for r in rows}
    assert by[("table1", "VideoMME w/o sub")]["ours"] == pytest.approx(60.0)
    assert by[("table1", "VideoMME w/o sub")]["delta"] == pytest.approx(60.0 - 65.1)
    assert by[("table1", "VideoMME w/ sub")]["delta"] == pytest.approx(70.0 - 71.1)
    assert by[("table1", "NExT-QA")]["delta"] == pytest.approx(0.0)
    assert by[("table1", "ActivityNet-QA")]["ours"] is None and by[("table1", "ActivityNet-QA")]["delta"] is None
    assert by[("videomme_wo_sub", "long")]["delta"] == pytest.approx(50.0 - 55.2)
    assert by[("videomme_w_sub", "short")]["ours"] == pytest.approx(80.0)
    assert by[("longvideo_reason", "Temporal")]["delta"] == pytest.approx(0.0)
    assert by[("longvideo_reason", "Overall")]["ours"] == pytest.approx(72.0)


def test_main_writes_markdown_and_csv(results_dir, tmp_path, capsys):
    out = tmp_path / "out"
    assert table1.main(["--results", str(results_dir), "--out", str(out), "--label", "toy"]) == 0
    md = (out / "table1.md").read_text()
    assert "| LongVILA-R1-7B (paper) | 64.8 | 58.0 | 68.9 | 81.5 | 75.5 | 65.1 | 71.1 |" in md
    assert "| **toy** | – | – | – | 81.5 | – | 60.0 | 70.0 |" in md
    assert "| Δ toy − LongVILA-R1-7B | – | – | – | +0.0 | – | -5.1 | -1.1 |" in md
    assert "Not measured (no results file): ActivityNet-QA, LongVideoBench, PerceptionTest, VNBench." in md
    with (out / "table1.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 7 + 4 + 4 + 5
    nextqa = next(r for r in rows if r["column"] == "NExT-QA")
    assert nextqa == {"table": "table1", "column": "NExT-QA", "paper_LongVILA-R1-7B": "81.50", "model": "toy",
                      "ours": "81.50", "delta": "0.00"}


def test_two_results_for_one_column_is_an_error(results_dir, capsys):
    (results_dir / "videomme_again.json").write_text(json.dumps(_result("videomme", 0.5)))
    assert table1.main(["--results", str(results_dir)]) == 2
    assert "two results for videomme" in capsys.readouterr().out
