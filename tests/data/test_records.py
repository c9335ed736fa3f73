"""The training record schema: validation names the record and field; jsonl reading skips
bad lines with their line numbers instead of dying; writing is validated and atomic."""

from __future__ import annotations

import json
import logging

import pytest

from harness.data.records import (
    Record,
    RecordError,
    read_jsonl,
    validate_record,
    write_jsonl,
)


def good(**overrides) -> dict:
    d = {
        "problem_id": "v0001-q1",
        "data_type": "video",
        "videos": ["videos/v0001.mp4"],
        "problem": "Where did it go?\nA. left\nB. right\nC. up\nD. down",
        "problem_type": "multiple choice",
        "reasoning": "At 0:12 it moves right. So the answer is B.",
        "answer": "<answer>B</answer>",
        "category": "spatial",
        "options": ["left", "right", "up", "down"],
        "video_id": "v0001",
        "duration": 31.5,
    }
    d.update(overrides)
    return {k: v for k, v in d.items() if v is not ...}


def test_valid_record_round_trips():
    rec = validate_record(good())
    assert isinstance(rec, Record)
    assert rec.answer_text == "B" and rec.options[1] == "right" and rec.duration == 31.5
    assert validate_record(rec.to_dict()) == rec


def test_authors_minimal_record_is_valid():
    d = good(reasoning=..., category=..., options=..., video_id=..., duration=...)
    rec = validate_record(d)
    assert rec.category is None and rec.options is None and rec.reasoning == ""
    assert set(rec.to_dict()) == {"problem_id", "data_type", "videos", "problem", "problem_type",
                                  "answer", "reasoning"}


def test_unknown_keys_are_kept():
    rec = validate_record(good(source="clip-7"))
    assert rec.extra == {"source": "clip-7"}
    assert rec.to_dict()["source"] == "clip-7"


@pytest.mark.parametrize(
    "overrides, field",
    [
        ({"problem_id": ""}, "problem_id"),
        ({"data_type": "sound"}, "data_type"),
        ({"videos": []}, "videos"),
        ({"videos": 3}, "videos"),  # one path string is the released form (test_released_lvr.py)
        ({"videos": [""]}, "videos"),
        ({"problem": ...}, "problem"),
        ({"problem": "  "}, "problem"),
        ({"problem_type": "mcq"}, "problem_type"),
        ({"answer": "<answer></answer>"}, "answer"),
        ({"answer": "<answer>BC</answer>"}, "answer"),
        ({"answer": "<answer>E</answer>"}, "answer"),
        ({"category": "causal"}, "category"),
        ({"options": ["only one"]}, "options"),
        ({"options": ["left", "right", "up", "sideways"]}, "problem"),
        ({"duration": -1.0}, "duration"),
        ({"duration": True}, "duration"),
        ({"reasoning": 3}, "reasoning"),
    ],
)
def test_bad_field_names_record_and_field(overrides, field):
    with pytest.raises(RecordError) as info:
        validate_record(good(**overrides))
    assert info.value.field == field
    assert field in str(info.value)
    if overrides.get("problem_id", "v0001-q1"):
        assert "v0001-q1" in str(info.value)


def test_not_an_object():
    with pytest.raises(RecordError, match="JSON object"):
        validate_record(["not", "a", "dict"])


def test_free_form_answer_need_not_be_a_letter():
    rec = validate_record(good(problem_type="free-form", answer="<answer>a red square</answer>",
                               options=...))
    assert rec.answer_text == "a red square"


def test_read_jsonl_skips_and_counts_bad_lines(tmp_path, caplog):
    path = tmp_path / "data.jsonl"
    lines = [
        json.dumps(good()),
        "{not json",
        "",
        json.dumps(good(problem_id="v0001-q2", answer="<answer>Z</answer>")),
        json.dumps(good()),  # duplicate id
        json.dumps(good(problem_id="v0001-q3")),
    ]
    path.write_text("\n".join(lines) + "\n")
    skipped: list = []
    with caplog.at_level(logging.WARNING):
        recs = list(read_jsonl(path, skipped=skipped))
    assert [r.problem_id for r in recs] == ["v0001-q1", "v0001-q3"]
    assert [s.line for s in skipped] == [2, 4, 5]
    assert "JSON" in skipped[0].reason and "'answer'" in skipped[1].reason and "duplicate of line 1" in skipped[2].reason
    assert f"{path}:2" in caplog.text and "skipped 3 of 5 records" in caplog.text


def test_read_jsonl_strict_raises_with_location(tmp_path):
    path = tmp_path / "data.jsonl"
    path.write_text(json.dumps(good()) + "\n" + json.dumps(good(problem_type="mcq")) + "\n")
    with pytest.raises(RecordError, match=r"data.jsonl:2: record 'v0001-q1': field 'problem_type'"):
        list(read_jsonl(path, strict=True))


def test_read_jsonl_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        list(read_jsonl(tmp_path / "nope.jsonl"))


def test_write_jsonl_round_trip(tmp_path):
    path = tmp_path / "out.jsonl"
    recs = [validate_record(good()), good(problem_id="v0001-q2", source="x")]
    assert write_jsonl(path, recs) == 2
    back = list(read_jsonl(path, strict=True))
    assert back[0] == recs[0] and back[1].extra == {"source": "x"}


def test_write_jsonl_is_validated_and_atomic(tmp_path):
    path = tmp_path / "out.jsonl"
    path.write_text("old\n")
    with pytest.raises(RecordError, match="answer"):
        write_jsonl(path, [good(), good(problem_id="v0001-q2", answer="<answer>BC</answer>")])
    with pytest.raises(RecordError, match="duplicate"):
        write_jsonl(path, [good(), good()])
    assert path.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["out.jsonl"]


def test_every_problem_type_a_record_may_have_is_one_the_reward_scores():
    """Validation and use agree: a type the schema accepts but the reward cannot score
    ("regression" once) would pass the split's check and fail after training."""
    from harness.algos.rewards import accuracy_reward
    from harness.data.records import PROBLEM_TYPES

    for kind in PROBLEM_TYPES:
        key = {"numerical": "<answer>3</answer>", "multiple choice": "<answer>B</answer>"}.get(kind, "<answer>red</answer>")
        assert accuracy_reward("<think>x</think>" + key, key, kind) == 1.0  # raises on a type it cannot score


def test_a_file_of_many_bad_lines_lists_a_capped_number(tmp_path, caplog):
    """Thousands of refused lines are all counted and kept in `skipped`, but the log names
    only the first LISTED_LINES of them, then says the count."""
    import json as _json
    import logging

    from harness.data.records import LISTED_LINES, read_jsonl

    good = {"problem_id": "ok", "problem": "What colour?", "data_type": "video", "problem_type": "free-form",
            "videos": ["v.mp4"], "answer": "<answer>red</answer>"}
    lines = [_json.dumps(good)] + [_json.dumps({"problem_id": k}) for k in range(200)]
    path = tmp_path / "split.jsonl"
    path.write_text("\n".join(lines) + "\n")
    skipped: list = []
    with caplog.at_level(logging.WARNING):
        assert [r.problem_id for r in read_jsonl(path, skipped=skipped)] == ["ok"]
    assert len(skipped) == 200
    named = [m for m in caplog.messages if ": skipped: " in m]
    assert len(named) == LISTED_LINES
    assert caplog.messages[-1].endswith("skipped 200 of 201 records")


# EasyR1-style records as Long-RL reads them (NVlabs/Long-RL verl/utils/dataset.py
# `RLHFDataset`: `problem` with one "<image>" marker per image, `images` a list of paths,
# `answer` the bare key; hiyouga/geometry3k and hiyouga/math12k on the HF hub name no id,
# no data_type and no problem_type).
EASYR1_IMAGE = {"images": ["geo/0001.png"], "problem": "<image>Find x. Choices: A. 3 B. 4", "answer": "3"}
EASYR1_MATH = {"problem": "What is $\\frac{1}{2}+\\frac{1}{4}$?", "answer": "\\frac{3}{4}"}


def test_easyr1_records_read_with_their_own_fields(tmp_path):
    path = tmp_path / "train.jsonl"
    path.write_text("\n".join(json.dumps(d) for d in (EASYR1_IMAGE, EASYR1_MATH, {**EASYR1_MATH, "answer": 7})) + "\n")
    image, math, number = list(read_jsonl(path))
    assert (image.problem_id, image.data_type, image.images, image.answer_text) == ("train-1", "image", ["geo/0001.png"], "3")
    assert image.problem_type == "math" and image.media_paths == ["geo/0001.png"]
    assert (math.data_type, math.problem_type, math.answer_text, math.media_paths) == ("text", "math", "\\frac{3}{4}", [])
    assert number.answer_text == "7" and number.problem_id == "train-3"


@pytest.mark.parametrize("data_type, field", [("image", "images"), ("audio", "audios"), ("video+audio", "videos")])
def test_every_media_type_needs_its_paths(data_type, field):
    with pytest.raises(RecordError) as err:
        validate_record(good(data_type=data_type, videos=..., options=..., problem="Which? A. x B. y"))
    assert err.value.field == field
    rec = validate_record(good(data_type=data_type, options=..., **{"videos": ..., field: ["m/1.x"]}))
    assert rec.media_paths == ["m/1.x"]


def test_the_recipes_refuse_media_the_model_does_not_take():
    from harness.data.records import media_problem

    text_only, vision = media_problem(()), media_problem(("image", "video"))
    video = validate_record(good())
    assert text_only(video)[0] == "data_type" and "takes text only" in text_only(video)[1]
    assert vision(video) is None
    assert vision(validate_record(good(videos=["a.mp4", "b.mp4"])))[0] == "videos"
    two_images = validate_record(good(data_type="image", videos=..., images=["a.png", "b.png"]))
    assert vision(two_images) is None and text_only(two_images) is not None
