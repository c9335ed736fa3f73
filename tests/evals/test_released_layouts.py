"""Each adapter on its benchmark as the owners publish it (and as lmms-eval lays it out where
that differs). Every fixture is written here from the published description; the source of
each is in its test's docstring. Videos are empty placeholder files: only paths matter.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from evals.runner import EvalIncomplete, EvalSettings, _check_complete, run_eval
from evals.tasks import build_benchmark


def _write(path: Path, obj) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj))
    return path


def _touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    return path


def _mme_row(vid: str, qid: str) -> dict:
    # lmms-lab/Video-MME videomme/test-00000-of-00001.parquet, first published row
    return {"video_id": "001", "duration": "short", "domain": "Knowledge", "sub_category": "Humanity & History",
            "url": f"https://www.youtube.com/watch?v={vid}", "videoID": vid, "question_id": qid,
            "task_type": "Counting Problem",
            "question": "When demonstrating the Germany modern Christmas tree is initially decorated with "
                        "apples, candles and berries, which kind of the decoration has the largest number?",
            "options": ["A. Apples.", "B. Candles.", "C. Berries.", "D. The three kinds are of the same number."],
            "answer": "C"}


def test_videomme_finds_mp4_MP4_and_mkv(tmp_path):
    """Video-MME's zips unpack to data/<videoID>.{mp4,MP4,mkv} (lmms-eval
    lmms_eval/tasks/videomme/utils.py `videomme_doc_to_visual` tries the three in order)."""
    rows = [_mme_row("fFjv93ACGo8", "001-1"), _mme_row("upper0000AA", "002-1"), _mme_row("matroska0AA", "003-1")]
    (tmp_path / "videomme").mkdir()
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "videomme" / "test-00000-of-00001.parquet")
    for name in ("fFjv93ACGo8.mp4", "upper0000AA.MP4", "matroska0AA.mkv"):
        _touch(tmp_path / "data" / name)
    items = build_benchmark("videomme").load(tmp_path)
    assert [i.video.name for i in items] == ["fFjv93ACGo8.mp4", "upper0000AA.MP4", "matroska0AA.mkv"]
    assert all(i.video.is_file() for i in items) and items[0].answer == "C"


def test_mlvu_answer_outside_candidates_scores_wrong(tmp_path):
    """MLVU/MVLU `MLVU/json/2_needle.json` entry 34 (published): its answer is not among its
    candidates. MLVU's `choice_bench.py` keys it with a letter no reply matches; it stays in
    the needle task's denominator."""
    needle = [
        {"video": "needle_1.mp4", "duration": 420.0, "question": "What is on the table?",
         "candidates": ["A cup", "A book", "A phone", "A lamp"], "answer": "A book", "question_type": "findNeedle"},
        {"video": "needle_4.mp4", "duration": 510.0,
         "question": "What is the man in the video doing on the lake shore during the sunny summer?",
         "candidates": ["Fishing", "Catching the drone", "Launching the drone", "Sunbathing"],
         "answer": "Catching a flying drone quadcopter", "question_type": "findNeedle"},
    ]
    plot = [{"video": "movie101_66.mp4", "duration": 246, "question": "What color is the main male character in the video?",
             "candidates": ["Yellow", "Red", "Green", "Blue"], "answer": "Yellow", "question_type": "plotQA"}]
    _write(tmp_path / "MLVU" / "json" / "2_needle.json", needle)
    _write(tmp_path / "MLVU" / "json" / "1_plotQA.json", plot)
    bench = build_benchmark("mlvu")
    items = bench.load(tmp_path)
    assert [i.fields["task"] for i in items] == ["plotQA", "needle", "needle"]
    assert items[1].video == tmp_path / "MLVU" / "video" / "2_needle" / "needle_1.mp4"
    outside = items[2]
    for reply in ("B", "A", "C", "D", "(B) Catching the drone", ""):
        assert bench.score(outside, reply)["correct"] is False
    rows = [{**bench.score(i, r), "fields": i.fields} for i, r in zip(items, ["A", "B", "B"], strict=True)]
    scores = bench.aggregate(rows)
    assert scores["by_task"]["needle"] == {"accuracy": 0.5, "n": 2}
    assert scores["accuracy"] == pytest.approx(0.75) and scores["key_outside_options"] == 1


def test_perceptiontest_mc_download(tmp_path):
    """google-deepmind/perception_test README: `mc_question_valid_annotations.zip` holds
    `mc_question_valid.json`, keyed by video id, each with `metadata` and `mc_question`."""
    _write(tmp_path / "mc_question_valid.json", {"video_10909": {
        "metadata": {"split": "valid", "video_id": "video_10909", "frame_rate": 30, "num_frames": 930,
                     "resolution": [1080, 1920], "is_cup_game": False, "is_camera_moving": False},
        "mc_question": [{"id": 0, "question": "Is the camera moving or static?",
                         "options": ["I don't know", "moving", "static or shaking"], "answer_id": 2,
                         "area": "physics", "reasoning": "descriptive", "tag": ["motion"]}]}})
    _touch(tmp_path / "videos" / "video_10909.mp4")
    (it,) = build_benchmark("perceptiontest").load(tmp_path)
    assert (it.qid, it.answer, it.fields) == ("video_10909-0", "C", {"area": "physics", "reasoning": "descriptive"})
    assert it.video.is_file()


NEXTQA_HEADER = ["video", "frame_count", "width", "height", "question", "answer", "qid", "type",
                 "a0", "a1", "a2", "a3", "a4"]
# doc-doc/NExT-QA dataset/nextqa/test.csv, its first row (and a TP-type row)
NEXTQA_ROWS = [
    ["2574374895", "719", "320", "240", "what did the baby do after throwing the green cup away while on the floor "
     "near the end", "2", "8", "TN", "clap proudly", "the lady sitting down", "lay on floor", "just picked it up ",
     "crawl"],
    ["2574374895", "719", "320", "240", "what was the baby doing before the lady came ", "0", "9", "TP",
     "playing", "sleeping", "eating", "crying", "walking"],
]


def test_nextqa_official_layout(tmp_path):
    """doc-doc/NExT-QA: dataset/nextqa/test.csv + map_vid_vidorID.json ({"2574374895":
    "1025/2574374895"}), videos NExTVideo/<dir>/<id>.mp4; `eval_mc.py` folds TP into TN."""
    csv_path = tmp_path / "dataset" / "nextqa" / "test.csv"
    csv_path.parent.mkdir(parents=True)
    with csv_path.open("w", newline="") as f:
        csv.writer(f).writerows([NEXTQA_HEADER, *NEXTQA_ROWS])
    _write(tmp_path / "dataset" / "nextqa" / "map_vid_vidorID.json", {"2574374895": "1025/2574374895"})
    items = build_benchmark("nextqa").load(tmp_path)
    assert [i.qid for i in items] == ["2574374895-8", "2574374895-9"]
    assert items[0].video == tmp_path / "NExTVideo" / "1025" / "2574374895.mp4"
    assert items[0].answer == "C" and items[0].options[3] == "just picked it up"
    assert [i.fields["type"] for i in items] == ["TN", "TN"]


def test_nextqa_lmms_eval_layout(tmp_path):
    """lmms-lab/NExTQA: MC/test-*.parquet (answer an int), videos flat NExTVideo/<video>.mp4
    (lmms-eval lmms_eval/tasks/nextqa/utils.py)."""
    rows = [dict(zip(NEXTQA_HEADER, r, strict=True)) for r in NEXTQA_ROWS]
    for r in rows:
        r.update(video=int(r["video"]), answer=int(r["answer"]), qid=int(r["qid"]))
    (tmp_path / "MC").mkdir()
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "MC" / "test-00000-of-00001.parquet")
    items = build_benchmark("nextqa").load(tmp_path)
    assert items[0].video == tmp_path / "NExTVideo" / "2574374895.mp4" and items[1].answer == "A"
    assert build_benchmark("nextqa").prompt(items[0]).endswith("D. just picked it up\nE. crawl")


def test_nextqa_without_test_split_is_an_error(tmp_path):
    (tmp_path / "dataset" / "nextqa").mkdir(parents=True)
    (tmp_path / "dataset" / "nextqa" / "val.csv").write_text(",".join(NEXTQA_HEADER) + "\n")
    with pytest.raises(FileNotFoundError, match="test.csv"):
        build_benchmark("nextqa").load(tmp_path)


def test_vnbench_owner_layout_and_4try_score(tmp_path):
    """joez17/VideoNIAH: VNBench-main-4try.json entries {video: "./VNBench/<name>.mp4",
    question, options, gt (text), type, try}; `evaluation/eval.py` counts a question right
    only if all its tries are."""
    entries = []
    for q, (video, qtype) in enumerate([("./VNBench/v_PkRvgIFREJU_ord_insert2.mp4", "ord_insert2"),
                                        ("./VNBench/v_abc_ret_edit1.mp4", "ret_edit1")]):
        for t in range(4):
            options = ["red", "green", "blue", "white"][t:] + ["red", "green", "blue", "white"][:t]
            entries.append({"video": video, "question": f"Q{q}", "options": options, "gt": "blue",
                            "type": qtype, "try": t})
    _write(tmp_path / "VNBench-main-4try.json", entries)
    _touch(tmp_path / "VNBench" / "v_PkRvgIFREJU_ord_insert2.mp4")
    bench = build_benchmark("vnbench")
    items = bench.load(tmp_path)
    assert items[0].video.is_file() and [i.answer for i in items[:4]] == ["C", "B", "A", "D"]
    assert bench.prompt(items[0]).splitlines()[1] == "A. red"
    replies = [i.answer for i in items[:4]] + [i.answer for i in items[4:7]] + ["A" if items[7].answer != "A" else "B"]
    rows = [{**bench.score(i, r), "fields": i.fields, "qid": i.qid} for i, r in zip(items, replies, strict=True)]
    s = bench.aggregate(rows)
    assert s["accuracy"] == pytest.approx(7 / 8) and s["accuracy_4try"] == pytest.approx(0.5)
    # a question with a try unanswered (its video missing) is not graded on fewer tries
    s = bench.aggregate(rows[:7])
    assert s["accuracy_4try"] == pytest.approx(1.0) and s["incomplete_questions"] == 1


def test_activitynet_lmms_eval_folder(tmp_path):
    """MILVLG/activitynet-qa dataset/test_q.json + test_a.json (first published pair); lmms-eval
    keeps the videos in all_test/v_<video_name>.<ext>."""
    _write(tmp_path / "test_q.json", [{"video_name": "1QIUV7WYKXg", "question": "is the athlete wearing trousers",
                                       "question_id": "v_1QIUV7WYKXg_3"}])
    _write(tmp_path / "test_a.json", [{"answer": "no", "type": 3, "question_id": "v_1QIUV7WYKXg_3"}])
    _touch(tmp_path / "all_test" / "v_1QIUV7WYKXg.webm")
    (it,) = build_benchmark("activitynet_qa").load(tmp_path)
    assert it.video == tmp_path / "all_test" / "v_1QIUV7WYKXg.webm" and it.fields == {"type": "yes_no"}


def test_longvideobench_parquet(tmp_path):
    """HF longvideobench/LongVideoBench validation-00000-of-00001.parquet: option0..option4,
    "N/A" where a question has fewer options (lmms-eval longvideobench/utils.py skips them)."""
    row = {"video_id": "soNQYQXrx_A", "id": "soNQYQXrx_A_1", "video_path": "soNQYQXrx_A.mp4",
           "subtitle_path": "soNQYQXrx_A_en.json", "correct_choice": 3, "question": "What happens to this man's clothes?",
           "option0": "a", "option1": "b", "option2": "c", "option3": "d", "option4": "N/A", "duration": 563.37,
           "duration_group": 600, "question_category": "TAA", "topic_category": "MR-Movie-Recaps",
           "starting_timestamp_for_subtitles": 0.0}
    pq.write_table(pa.Table.from_pylist([row]), tmp_path / "validation-00000-of-00001.parquet")
    (it,) = build_benchmark("longvideobench").load(tmp_path)
    assert (it.options, it.answer, it.fields["duration_group"]) == (["a", "b", "c", "d"], "D", "600")


# HF LongVideo-Reason/longvideo-reason test.jsonl, row 0 (option texts shortened)
LVR_ROW = {"problem_id": 0, "data_type": "video", "problem_type": "goal",
           "problem": "What is the primary intention behind the video's sequence?\nA. To rank animals.\n"
                      "B. To contrast human athleticism with animal locomotion.\nC. To show a food chain.\nD. To follow a herd.",
           "reasoning": "The sequence begins ...", "videos": "longvila_videos/I_Q3ajyOrcI.mp4",
           "answer": "<answer>B</answer>"}


def test_longvideo_reason_released_split(tmp_path):
    """Long-RL eval/README.md: annotations `test.jsonl`, videos unpacked under a video folder
    as `longvila_videos/ID.mp4` (eval/eval.py joins `videos` to --video_dir)."""
    rows = [LVR_ROW, {**LVR_ROW, "problem_id": 1, "problem_type": "temporal",
                      "problem": "Why does the cheetah slow down?", "answer": "<answer>B</answer>"},
            {**LVR_ROW, "problem_id": 2, "problem": "Which?\nD. four\nA. one\nB. two\nC. three"}]
    (tmp_path / "ann").mkdir()
    (tmp_path / "ann" / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    _touch(tmp_path / "videos" / "longvila_videos" / "I_Q3ajyOrcI.mp4")
    bench = build_benchmark("longvideo_reason", video_dir=str(tmp_path / "videos"))
    mc, free, shuffled = bench.load(tmp_path / "ann")
    assert shuffled.options == ["one", "two", "three", "four"]  # options listed out of order
    assert mc.video.is_file() and mc.letters == "ABCD" and mc.fields == {"category": "goal"}
    assert mc.options[1] == "To contrast human athleticism with animal locomotion."
    assert free.options == [] and free.fields == {"category": "temporal"}
    assert bench.score(free, "<think>...</think><answer>B</answer>")["correct"] is True
    assert bench.score(free, "<answer>B. it is tired</answer>")["correct"] is False
    assert bench.score(mc, "<think>x</think><answer>B</answer>")["correct"] is True
    assert bench.dropped == []


class _Never:
    """Stands in for the model where no question is ever asked (every record dropped)."""

    batch_size = 1
    frames_per_unit = 1
    sp_group = None

    def describe(self):
        return {"model_path": "none", "engine": "none"}


def test_a_run_that_drops_records_fails_with_the_reasons(tmp_path):
    (tmp_path / "test.jsonl").write_text(json.dumps({**LVR_ROW, "answer": "<answer></answer>"}) + "\n")
    bench = build_benchmark("longvideo_reason")
    with pytest.raises(EvalIncomplete, match=r"(?s)scored no question.*answer"):
        run_eval(bench, _Never(), tmp_path, tmp_path / "out.json", EvalSettings(frames=2, progress=False))
    res = json.loads((tmp_path / "out.json").read_text())
    assert res["counts"]["bad_records"] == 1 and "answer" in res["dropped_records"][0]["reason"]


def test_dropped_share_above_the_allowance_fails():
    bench = build_benchmark("vnbench")
    bench.drop("f entry 3", "answer 'x' is not one of the options")
    res = {"counts": {"questions": 9, "answered": 9, "bad_records": 1}, "missing_videos": []}
    with pytest.raises(EvalIncomplete, match=r"(?s)dropped 1 of 10.*entry 3"):
        _check_complete(bench, res, 0.0, Path("out.json"))
    _check_complete(bench, res, 0.1, Path("out.json"))  # 10 % allowed: passes


def test_videomme_owner_json_per_video(tmp_path):
    """BradyFU/Video-MME README: the owners' JSON holds one object per video (video_id,
    duration_category, video_category, video_sub_category, url, questions [question_id,
    task_type, question, choices, answer]). Whether `choices` carry their "A. " labels is not
    established: both forms are read."""
    _write(tmp_path / "videomme.json", [{
        "video_id": "001", "duration_category": "short", "video_category": "Knowledge",
        "video_sub_category": "Humanity & History", "url": "https://www.youtube.com/watch?v=fFjv93ACGo8",
        "questions": [
            {"question_id": "001-1", "task_type": "Counting Problem", "question": "Which has the largest number?",
             "choices": ["Apples.", "Candles.", "Berries.", "The same."], "answer": "C"},
            {"question_id": "001-2", "task_type": "Counting Problem", "question": "How many?",
             "choices": ["A. 1", "B. 2", "C. 3", "D. 4"], "answer": "B"}]}])
    _touch(tmp_path / "data" / "fFjv93ACGo8.mp4")
    a, b = build_benchmark("videomme").load(tmp_path)
    assert a.video.is_file() and a.options[2] == "C. Berries." and b.options[1] == "B. 2"
    assert a.fields == {"duration": "short", "domain": "Knowledge", "task_type": "Counting Problem"}


def test_perceptiontest_lmms_eval_parquet(tmp_path):
    """HF lmms-lab/PerceptionTest_Val: mc_question_val/validation-00000-of-00001.parquet,
    `answer_id` a string (dataset card); videos <cache>/videos/<video_name>.mp4 or .MP4
    (lmms-eval tasks/perceptiontest/val/utils.py)."""
    row = {"video_name": "video_10909", "question": "Is the camera moving or static?", "question_id": "0",
           "options": ["I don't know", "moving", "static or shaking"], "answer_id": "2", "area": "physics",
           "reasoning": "descriptive", "tag": ["motion"]}
    (tmp_path / "mc_question_val").mkdir()
    pq.write_table(pa.Table.from_pylist([row]), tmp_path / "mc_question_val" / "validation-00000-of-00001.parquet")
    _touch(tmp_path / "videos" / "video_10909.MP4")
    (it,) = build_benchmark("perceptiontest").load(tmp_path)
    assert (it.answer, it.video.name, it.fields["area"]) == ("C", "video_10909.MP4", "physics")


def test_activitynet_lmms_eval_parquet(tmp_path):
    """HF lmms-lab/ActivityNetQA: data/test-*.parquet, every field a string (dataset card)."""
    row = {"video_name": "1QIUV7WYKXg", "question_id": "v_1QIUV7WYKXg_3",
           "question": "is the athlete wearing trousers", "answer": "no", "type": "3"}
    (tmp_path / "data").mkdir()
    pq.write_table(pa.Table.from_pylist([row]), tmp_path / "data" / "test-00000-of-00001.parquet")
    (it,) = build_benchmark("activitynet_qa").load(tmp_path)
    assert (it.qid, it.answer, it.fields) == ("v_1QIUV7WYKXg_3", "no", {"type": "yes_no"})
    assert it.video == tmp_path / "videos" / "v_1QIUV7WYKXg.mp4"  # missing: reported with this path


def test_mlvu_lmms_eval_parquet(tmp_path):
    """HF sy1998/MLVU_dev: mlvu/test-00000-of-00001.parquet with video_name, question (the
    options inside it), answer (a letter), task_type (lmms-eval tasks/mlvu/utils.py); the
    form of the options inside the question is not established: "(A) x" lines here."""
    rows = [{"video_name": "movie101_66.mp4", "task_type": "plotQA", "answer": "A",
             "question": "What color is the main male character in the video?\n(A) Yellow\n(B) Red\n(C) Green\n(D) Blue"},
            {"video_name": "needle_4.mp4", "task_type": "needle", "answer": "B", "question": "No options here?"}]
    (tmp_path / "mlvu").mkdir()
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "mlvu" / "test-00000-of-00001.parquet")
    bench = build_benchmark("mlvu")
    (it,) = bench.load(tmp_path)
    assert (it.question, it.options, it.answer) == ("What color is the main male character in the video?",
                                                   ["Yellow", "Red", "Green", "Blue"], "A")
    assert it.video == tmp_path / "movie101_66.mp4" and len(bench.dropped) == 1
