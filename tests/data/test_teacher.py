"""The imperfect SFT teacher (harness/data/synthetic/teacher.py): it misnames exactly the
confused colours, at the given rate, one draw per video, in the SFT split only; RL, test
and the videos stay the truth; bad specifications are refused by name."""

from __future__ import annotations

import json

import pytest

from harness.cli import main
from harness.data.records import read_jsonl
from harness.data.synthetic import ColourConfusion, parse_confusion, synthesize
from harness.data.synthetic.scene import Scene

N_VIDEOS = 60
SPLITS = (0.8, 0.1, 0.1)  # most videos in SFT, where the teacher acts


def _truth_colour(out, video_id: str) -> str:
    scene = Scene.from_json(json.loads((out / "videos" / f"{video_id}.events.json").read_text()))
    return scene.events_of(0, "appear")[0].colour


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    """The same seed synthesised with a perfect teacher and with one that always calls
    yellow green and calls blue red in half of the videos."""
    truth = tmp_path_factory.mktemp("truth")
    taught = tmp_path_factory.mktemp("taught")
    synthesize(truth, N_VIDEOS, seed=3, difficulty="basic", split_fractions=SPLITS, progress=False)
    teacher = (ColourConfusion("yellow", "green", 1.0), ColourConfusion("blue", "red", 0.5))
    summary = synthesize(taught, N_VIDEOS, seed=3, difficulty="basic", split_fractions=SPLITS, teacher=teacher,
                         progress=False)
    return truth, taught, summary


def test_rl_test_and_videos_keep_the_truth(pair):
    truth, taught, _ = pair
    for split in ("rl", "test"):
        assert (truth / f"{split}.jsonl").read_bytes() == (taught / f"{split}.jsonl").read_bytes()
    for events in (truth / "videos").glob("*.events.json"):
        assert events.read_bytes() == (taught / "videos" / events.name).read_bytes()


def test_sft_records_carry_the_teachers_mistakes(pair):
    truth, taught, summary = pair
    before = {r.problem_id: r for r in read_jsonl(truth / "sft.jsonl", strict=True)}
    after = list(read_jsonl(taught / "sft.jsonl", strict=True))
    assert [r.problem_id for r in after] == list(before)
    said_by_video: dict[str, str] = {}
    for r in after:
        b, colour = before[r.problem_id], _truth_colour(truth, r.video_id)
        said = next(c for c in ("red", "green", "blue", "yellow") if f"A {c} " in r.reasoning)
        # One draw per video: all of a video's questions name the same colour.
        assert said_by_video.setdefault(r.video_id, said) == said
        if colour == "yellow":
            assert said == "green"  # rate 1
        elif colour in ("red", "green"):
            assert r == b  # not confused: untouched
        if said != colour:
            assert r.reasoning == b.reasoning.replace(colour, said)
            is_colour_question = b.answer_text == colour
            assert r.answer_text == (said if is_colour_question else b.answer_text)
            assert r.reasoning.endswith(f"So the answer is {r.answer_text}.")
        else:
            assert r == b
    blue = [v for v in said_by_video if _truth_colour(truth, v) == "blue"]
    blue_misnamed = sum(said_by_video[v] == "red" for v in blue)
    assert len(blue) >= 4 and 0 < blue_misnamed < len(blue)  # rate 0.5: some of each
    yellow = sum(_truth_colour(truth, v) == "yellow" for v in said_by_video)
    assert summary.teacher_misnamed == yellow + blue_misnamed > 0
    assert "misnamed in" in str(summary)


def test_rate_zero_is_the_perfect_teacher(pair, tmp_path):
    truth, _, _ = pair
    summary = synthesize(tmp_path, N_VIDEOS, seed=3, difficulty="basic", split_fractions=SPLITS, progress=False,
                         teacher=(ColourConfusion("yellow", "green", 0.0),))
    assert (tmp_path / "sft.jsonl").read_bytes() == (truth / "sft.jsonl").read_bytes()
    assert summary.teacher_misnamed == 0


def test_parse_confusion():
    assert parse_confusion("yellow=green:0.65") == ColourConfusion("yellow", "green", 0.65)
    assert parse_confusion(" blue = red : 1 ") == ColourConfusion("blue", "red", 1.0)
    for bad in ("yellowgreen", "yellow=green", "yellow=green:x", "yellow=green:1.2.3"):
        with pytest.raises(ValueError, match="teacher confusion"):
            parse_confusion(bad)


@pytest.mark.parametrize("teacher, difficulty, match", [
    ((ColourConfusion("yellow", "green", 0.5),), "default", "basic level"),
    ((ColourConfusion("yellow", "pink", 0.5),), "basic", "'pink' is not a colour"),
    ((ColourConfusion("yellow", "yellow", 0.5),), "basic", "confused with itself"),
    ((ColourConfusion("yellow", "green", 0.5), ColourConfusion("yellow", "red", 0.5)), "basic", "confused twice"),
    ((ColourConfusion("yellow", "green", 1.5),), "basic", r"rate must be in \[0, 1\]"),
])
def test_bad_confusions_are_refused_before_any_file(tmp_path, teacher, difficulty, match):
    with pytest.raises(ValueError, match=match):
        synthesize(tmp_path / "d", 3, difficulty=difficulty, teacher=teacher, progress=False)
    assert not (tmp_path / "d").exists()


def test_cli_flag(tmp_path, capsys):
    assert main(["data", "synth", "--out", str(tmp_path), "--videos", "6", "--difficulty", "basic",
                 "--teacher-confusion", "yellow=green:1", "--teacher-confusion", "red=blue:1"]) == 0
    assert "imperfect SFT teacher (yellow=green:1, red=blue:1)" in capsys.readouterr().out
