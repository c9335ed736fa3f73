"""Each adapter reads its benchmark's published local layout (tiny hand-written copies)."""

import csv
import json

import pytest

from evals.tasks import build_benchmark


def _write(path, obj):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj))


def test_videomme_reads_parquet_layout(mme_root):
    items = build_benchmark("videomme").load(mme_root)
    assert len(items) == 12
    it = items[0]
    assert it.video == mme_root / "videos" / f"{it.video.stem}.mp4" and it.video.exists()
    assert it.subtitle == mme_root / "subtitle" / f"{it.video.stem}.srt" and it.subtitle.exists()
    assert it.options[0].startswith("A. ") and it.answer in "ABCD" and it.letters == "ABCD"
    assert set(it.fields) == {"duration", "domain", "task_type"}


def test_videomme_json_and_data_folder(tmp_path):
    (tmp_path / "data").mkdir()
    _write(tmp_path / "videomme" / "q.json", [{
        "video_id": "001", "duration": "long", "domain": "Sports", "sub_category": "x", "url": "u",
        "videoID": "abc", "question_id": "001-1", "task_type": "Counting Problem",
        "question": "How many?", "options": ["A. 1", "B. 2", "C. 3", "D. 4"], "answer": "B"}])
    (it,) = build_benchmark("videomme").load(tmp_path)
    assert it.video == tmp_path / "data" / "abc.mp4" and it.fields["duration"] == "long"


def test_longvideobench(tmp_path):
    _write(tmp_path / "lvb_val.json", [{
        "id": "q1", "video_id": "v", "video_path": "v.mp4", "question": "Q?", "candidates": list("wxyzq"),
        "correct_choice": 4, "duration_group": 600, "question_category": "S2E"}])
    (it,) = build_benchmark("longvideobench").load(tmp_path)
    assert (it.answer, it.letters, it.fields) == ("E", "ABCDE", {"duration_group": "600", "question_category": "S2E"})
    assert it.video == tmp_path / "videos" / "v.mp4"


def test_mlvu_mavg_is_mean_of_task_accuracies(tmp_path):
    _write(tmp_path / "json" / "1_plotQA.json", [
        {"video": "a.mp4", "question": "Q", "candidates": ["x", "y"], "answer": "y", "question_type": "plotQA"}] * 3)
    _write(tmp_path / "json" / "4_count.json", [
        {"video": "b.mp4", "question": "Q", "candidates": ["1", "2", "3"], "answer": "1", "question_type": "count"}])
    _write(tmp_path / "json" / "9_summary.json", [{"video": "c.mp4", "question": "Sum?", "answer": "..."}])
    bench = build_benchmark("mlvu")
    items = bench.load(tmp_path)
    assert [i.answer for i in items] == ["B", "B", "B", "A"]
    assert items[0].video == tmp_path / "video" / "1_plotQA" / "a.mp4"
    rows = [{"correct": c, "fields": i.fields} for i, c in zip(items, [True, True, True, False], strict=True)]
    scores = bench.aggregate(rows)
    assert scores["accuracy"] == pytest.approx(0.5) and scores["micro_accuracy"] == pytest.approx(0.75)


def test_perceptiontest(tmp_path):
    _write(tmp_path / "all_valid.json", {"video_1": {"mc_question": [
        {"id": 0, "question": "Q?", "options": ["a", "b", "c"], "answer_id": 2, "area": "memory",
         "reasoning": "counting", "tag": []}]}})
    (it,) = build_benchmark("perceptiontest").load(tmp_path)
    assert (it.qid, it.answer, it.letters) == ("video_1-0", "C", "ABC")
    assert it.video == tmp_path / "videos" / "video_1.mp4"


def test_nextqa_with_and_without_map(tmp_path):
    with (tmp_path / "test.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["video", "frame_count", "width", "height", "question", "answer", "qid", "type",
                    "a0", "a1", "a2", "a3", "a4"])
        w.writerow(["4010069381", "100", "640", "480", "why did the boy run ", "3", "6", "CW",
                    "p", "q", "r", "s", "t"])
    (it,) = build_benchmark("nextqa").load(tmp_path)
    assert (it.qid, it.answer, it.question, it.fields) == ("4010069381-6", "D", "why did the boy run",
                                                          {"type": "CW", "type_group": "C"})
    assert it.video == tmp_path / "NExTVideo" / "4010069381.mp4"
    _write(tmp_path / "map_vid_vidorID.json", {"4010069381": "1106/4010069381"})
    (it,) = build_benchmark("nextqa").load(tmp_path)
    assert it.video == tmp_path / "NExTVideo" / "1106" / "4010069381.mp4"


def test_vnbench_letter_or_text_answer(tmp_path):
    _write(tmp_path / "VNBench-main-4try.json", [
        {"video": "./VNBench_new/x.mp4", "question": "Q", "options": ["a", "b", "c", "d"], "gt": "c",
         "gt_option": "(C)", "type": "ord_edit1", "try": 0},
        {"video": "./VNBench_new/x.mp4", "question": "Q", "options": ["d", "c", "b", "a"], "gt": "c",
         "type": "ord_edit1", "try": 1}])
    items = build_benchmark("vnbench").load(tmp_path)
    assert [i.answer for i in items] == ["C", "B"] and len({i.qid for i in items}) == 2
    assert items[0].video == tmp_path / "VNBench_new" / "x.mp4"  # missing: reported with its given path


def test_activitynet_qa(tmp_path):
    _write(tmp_path / "test_q.json", [{"video_name": "abc", "question_id": "abc_1", "question": "is it day"}])
    _write(tmp_path / "test_a.json", [{"question_id": "abc_1", "answer": "yes", "type": 3}])
    bench = build_benchmark("activitynet_qa")
    (it,) = bench.load(tmp_path)
    assert (it.answer, it.fields, it.video.name) == ("yes", {"type": "yes_no"}, "v_abc.mp4")
    assert bench.prompt(it) == "Is it day?\nAnswer the question using a single word or phrase."


def test_longvideo_reason_reads_records(mme_root):
    bench = build_benchmark("longvideo_reason")
    items = bench.load(mme_root.parent)  # the synthetic test.jsonl
    assert len(items) == 12 and bench.dropped == []
    assert {i.fields["category"] for i in items} == {"temporal", "goal", "plot", "spatial"}
    assert all(i.video.exists() and i.letters == "ABCD" for i in items)


def test_longvideo_reason_drops_a_record_of_several_videos(tmp_path):
    """One video per question, as in training: a record naming two is dropped with its line
    (counted in `dropped`), not evaluated on its first video alone."""
    import json

    from tests.data.test_released_lvr import ROW0

    (tmp_path / "longvila_videos").mkdir()
    two = {**ROW0, "problem_id": 1, "videos": [ROW0["videos"], "longvila_videos/other.mp4"]}
    (tmp_path / "test.jsonl").write_text(json.dumps(ROW0) + "\n" + json.dumps(two) + "\n")
    bench = build_benchmark("longvideo_reason")
    items = bench.load(tmp_path)
    assert len(items) == 1
    assert len(bench.dropped) == 1 and "2 videos" in bench.dropped[0]["reason"]
    assert bench.dropped[0]["where"].endswith("test.jsonl:2")


@pytest.mark.parametrize("task,name,record,missing", [
    ("longvideobench", "lvb_val.json", [{"id": "q1", "video_path": "v.mp4", "question": "Q"}], "candidates"),
    ("videomme", "q.json", [{"question_id": "1", "question": "Q", "options": ["A. a"], "answer": "A"}], "videoID"),
])
def test_missing_field_names_file_and_field(tmp_path, task, name, record, missing):
    _write(tmp_path / name, record)
    with pytest.raises(ValueError, match=missing):
        build_benchmark(task).load(tmp_path)


def test_missing_layout_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="lvb_val.json"):
        build_benchmark("longvideobench").load(tmp_path)
