"""The released LongVideo-Reason records read as they are.

Fixture lines follow the published test split (HF `LongVideo-Reason/longvideo-reason`
`test.jsonl`): row 0 as quoted from the file (option texts shortened here),
`problem_id` an int, `videos` one path string under `longvila_videos/`, the category in
`problem_type` (lmms-eval `lmms_eval/tasks/longvideo_reason/utils.py` reads it there:
temporal / goal / plot / spatial), `answer` "<answer>B</answer>"; Long-RL
`verl/utils/dataset.py` joins `videos` to `data.video_dir`.
"""

from __future__ import annotations

import json

import pytest

from harness.data.dataset import QADataset, SkipLedger
from harness.data.records import read_jsonl, validate_record
from tests.data.conftest import write_test_video

ROW0 = {
    "problem_id": 0,
    "problem": ("What is the primary intention behind the video's sequence of showcasing an African "
                "elephant (0:00:00-0:00:30) ... a cheetah (0:08:00-0:08:50)?\nA. To rank animals by size.\n"
                "B. To contrast human athleticism with animal locomotion, culminating in the cheetah's "
                "evolutionary adaptation for speed.\nC. To show a food chain.\nD. To follow one herd."),
    "data_type": "video", "problem_type": "goal",
    "reasoning": "The sequence begins by showcasing the African elephant ...",
    "videos": "longvila_videos/I_Q3ajyOrcI.mp4",
    "answer": "<answer>B</answer>",
}


def test_released_row_reads_with_its_category():
    rec = validate_record(ROW0)
    assert rec.problem_id == "0" and rec.videos == ["longvila_videos/I_Q3ajyOrcI.mp4"]
    assert rec.category == "goal" and rec.problem_type == "multiple choice" and rec.answer_text == "B"


@pytest.mark.parametrize("label, category", [("temporal", "temporal"), ("plot", "plot"),
                                             ("spatial", "spatial"), ("general", None)])
def test_every_released_category_label(label, category):
    rec = validate_record({**ROW0, "problem_type": label})
    assert rec.category == category


def test_question_without_option_lines_is_free_form():
    """Some released questions carry no option lines: the authors' reward compares the
    <answer> text with the key whatever the question, so such a record is free-form."""
    row = {**ROW0, "problem_id": 7, "problem": "Why does the cheetah slow down at the end?",
           "answer": "<answer>B</answer>"}
    rec = validate_record(row)
    assert rec.problem_type == "free-form" and rec.answer_text == "B"


def test_released_record_without_data_type():
    rec = validate_record({k: v for k, v in ROW0.items() if k != "data_type"})
    assert rec.data_type == "video"


def test_unknown_label_is_still_an_error():
    with pytest.raises(ValueError, match="problem_type"):
        validate_record({**ROW0, "problem_type": "sports"})


def test_split_with_a_separate_video_dir(tmp_path):
    splits, videos = tmp_path / "longvideo-reason", tmp_path / "videos"
    (videos / "longvila_videos").mkdir(parents=True)
    splits.mkdir()
    write_test_video(videos / "longvila_videos" / "I_Q3ajyOrcI.mp4", num_frames=8)
    rows = [ROW0, {**ROW0, "problem_id": 1, "problem_type": "temporal"}]
    (splits / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert [r.problem_id for r in read_jsonl(splits / "test.jsonl")] == ["0", "1"]
    ds = QADataset(splits / "test.jsonl", 4, SkipLedger(0.0), video_dir=videos)
    clip = ds.load_frames(ds.records[0])
    assert clip is not None and clip.frames.shape[0] == 4
    with pytest.raises(FileNotFoundError, match="video_dir"):
        QADataset(splits / "test.jsonl", 4, SkipLedger(0.0), video_dir=tmp_path / "nope")


def test_split_one_file_release_by_video(tmp_path):
    """`harness data split`: about a third of the records to CoT-SFT, by whole videos, the
    released lines copied unchanged."""
    from harness.cli import main

    rows = [{**ROW0, "problem_id": i, "videos": f"longvila_videos/v{i // 2}.mp4"} for i in range(30)]
    src = tmp_path / "train.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in rows) + '{"problem_id": 99}\n')
    assert main(["data", "split", "--input", str(src), "--out", str(tmp_path / "out")]) == 0
    sft = [json.loads(line) for line in (tmp_path / "out" / "sft.jsonl").read_text().splitlines()]
    rl = [json.loads(line) for line in (tmp_path / "out" / "rl.jsonl").read_text().splitlines()]
    assert len(sft) == 10 and len(rl) == 20
    assert not {r["videos"] for r in sft} & {r["videos"] for r in rl}
    assert sorted(r["problem_id"] for r in sft + rl) == list(range(30))  # ints stay ints
    assert main(["data", "split", "--input", str(src), "--out", str(tmp_path / "o"), "--sft-share", "1.5"]) == 2


def test_option_lines_in_any_order_and_colon_lines_are_not_options():
    from harness.data.records import option_lines

    shuffled = "Which?\nD. four\nA. one\nB. two\nC. three"
    assert option_lines(shuffled) == ["one", "two", "three", "four"]
    rec = validate_record({**ROW0, "problem": shuffled})
    assert rec.problem_type == "multiple choice"
    dialogue = "Q: who spoke first?\nA: the host"  # not option lines
    assert option_lines(dialogue) == []
    assert validate_record({**ROW0, "problem": dialogue, "answer": "<answer>the host</answer>"}).problem_type == "free-form"


def test_key_outside_the_questions_option_lines_is_refused():
    """No `options` field, but the question lists A-D: a key E is refused when read, not
    scored as a silent zero later."""
    with pytest.raises(ValueError, match="not among the question's options ABCD"):
        validate_record({**ROW0, "answer": "<answer>E</answer>"})


def test_records_the_recipes_cannot_use_are_refused_when_read(tmp_path):
    """Validation and use agree: an audio record for a video model, a numerical key that is
    not a number, a non-UTF-8 byte are skipped with file:line and counted; a BOM costs nothing."""
    rows = [json.dumps(ROW0), json.dumps({**ROW0, "problem_id": 1, "data_type": "audio", "videos": [],
                                          "audios": ["a.wav"]}),
            json.dumps({**ROW0, "problem_id": 2, "problem_type": "numerical", "problem": "How many?",
                        "answer": "<answer>many</answer>"})]
    path = tmp_path / "rl.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + "\n".join(rows).encode() + b'\n{"problem_id": 3, "problem": "caf\xe9"}\n')
    (tmp_path / "longvila_videos").mkdir()
    ledger = SkipLedger(1.0)
    ds = QADataset(path, 4, ledger)
    assert [r.problem_id for r in ds.records] == ["0"]
    reasons = " | ".join(f"{w}: {y}" for w, y in ledger.skipped)
    assert "rl.jsonl:2" in reasons and "needs audio input; this model takes video" in reasons
    assert "rl.jsonl:3" in reasons and "exactly one number" in reasons
    assert "rl.jsonl:4" in reasons and "not UTF-8 (byte 0xe9" in reasons
