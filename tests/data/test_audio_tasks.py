"""Tests for harness.data.synthetic.audio_tasks: the oracle answers every generated question
from the files alone, the records are well formed and deterministic, and a wrong key or
moved tone is caught. Records are checked as plain JSON dicts (the record schema is
extended for audio elsewhere)."""

from __future__ import annotations

import json
import re
from collections import Counter
from itertools import pairwise
from pathlib import Path

import av
import numpy as np
import pytest

from harness.data.audio import AudioClip, load_audio
from harness.data.synthetic import audio_tasks as at
from harness.data.video import load_video, probe_video

N_PER_KIND = 10
ANSWER = re.compile(r"^<answer>(.+)</answer>$")


def read_records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


@pytest.fixture(scope="module")
def audio_split(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("audio_split")
    return at.write_audio_split(out, N_PER_KIND * len(at.AUDIO_KINDS), seed=0)


@pytest.fixture(scope="module")
def video_split(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("video_audio_split")
    return at.write_video_audio_split(out, N_PER_KIND, seed=0)


# ----------------------------------------------------------------------------- oracle


@pytest.mark.parametrize("kind", at.AUDIO_KINDS)
def test_oracle_answers_every_audio_record(audio_split: Path, kind: str) -> None:
    records = [r for r in read_records(audio_split) if r["task"] == kind]
    assert len(records) == N_PER_KIND
    for rec in records:
        assert at.oracle_answer(rec, audio_split.parent) == at.answer_text(rec), rec["problem_id"]


def test_oracle_answers_every_video_audio_record(video_split: Path) -> None:
    records = read_records(video_split)
    assert len(records) == N_PER_KIND
    for rec in records:
        assert at.oracle_answer(rec, video_split.parent) == at.answer_text(rec), rec["problem_id"]
    assert at.oracle_accuracy(video_split) == 1.0


def test_oracle_disagrees_with_a_tampered_key(audio_split: Path, video_split: Path) -> None:
    for split in (audio_split, video_split):
        for rec in read_records(split):
            truth = at.answer_text(rec)
            if rec["problem_type"] == "numerical":
                wrong = str(int(truth) % at.MAX_BEEPS + 1)  # another count in 1..5
            else:
                wrong = next(at.LETTERS[i] for i in range(len(rec["options"])) if at.LETTERS[i] != truth)
            tampered = {**rec, "answer": f"<answer>{wrong}</answer>"}
            assert at.oracle_answer(tampered, split.parent) != at.answer_text(tampered), rec["problem_id"]


def test_oracle_follows_the_audio_not_the_key(audio_split: Path, tmp_path: Path) -> None:
    """Replace a count question's audio with another's of a different count: the oracle now
    disagrees with the record, so it reads the file, not the key."""
    records = [r for r in read_records(audio_split) if r["task"] == "count"]
    a, b = next((x, y) for x in records for y in records if at.answer_text(x) != at.answer_text(y))
    swapped = tmp_path / "audios"
    swapped.mkdir()
    (swapped / Path(a["audios"][0]).name).write_bytes((audio_split.parent / b["audios"][0]).read_bytes())
    assert at.oracle_answer(a, tmp_path) == at.answer_text(b) != at.answer_text(a)


def test_screen_oracle_needs_the_audio(video_split: Path, tmp_path: Path) -> None:
    """Every option colour is on screen at some point (frames alone cannot answer), and the
    same frames with the tone moved one segment on change the oracle's answer."""
    rec = read_records(video_split)[0]
    path = video_split.parent / rec["videos"][0]
    frames = load_video(path, probe_video(path).total_frames).frames  # [T, 64, 64, 3]
    seen = {at._frame_colour(f, at.SCREEN_COLOURS) for f in frames}
    assert set(rec["options"]) <= seen

    task = at.make_screen_task(at.item_rng(0, "screen", 0))
    k = next(i for i, c in enumerate(task.colours) if c == rec["options"][at.LETTERS.index(at.answer_text(rec))])
    shift = 1 if k < at.SCREEN_SEGMENTS - 1 else -1
    moved = np.roll(task.samples, shift * int(at.SCREEN_SEGMENT_S * at.SAMPLE_RATE))  # [N]
    (tmp_path / "videos").mkdir()
    at.write_av_mp4(tmp_path / rec["videos"][0], at._screen_frames(task.colours), at.SCREEN_FPS, moved)
    assert at.oracle_answer(rec, tmp_path) == at._letter(rec["options"], task.colours[k + shift])


def test_silence_has_no_tones() -> None:
    rng = np.random.default_rng(0)
    floor = AudioClip(at._noise_floor(rng, 2.0), at.SAMPLE_RATE, 0.0, 2.0)
    assert at.tone_segments(floor) == [] and at.count_beeps(floor) == 0
    with pytest.raises(ValueError, match="no sound"):
        at.sound_onset(floor)


# ----------------------------------------------------------------------------- generation


@pytest.mark.parametrize("i", range(40))
def test_count_beeps_fit_and_are_apart(i: int) -> None:
    task = at.make_count_task(at.item_rng(7, "count", i))
    starts = [s for s, _ in task.tones]
    assert len(starts) == int(task.answer)
    assert starts[0] >= at.EDGE_S - 1e-9 and task.tones[-1][1] <= at.COUNT_SECONDS - at.EDGE_S + 1e-9
    assert all(b[0] - a[1] >= at.BEEP_GAP_S - 1e-9 for a, b in pairwise(task.tones))


@pytest.mark.parametrize("i", range(40))
def test_onset_options_are_apart_and_hold_the_truth(i: int) -> None:
    task = at.make_onset_task(at.item_rng(7, "onset", i))
    times = [float(re.fullmatch(r"at ([0-9.]+) seconds", o).group(1)) for o in task.options]
    assert len(times) == 4 and times == sorted(times)
    assert min(b - a for a, b in pairwise(times)) >= at.ONSET_SPACING
    assert times[at.LETTERS.index(task.answer)] == task.tones[0][0]
    assert task.tones[0][1] <= at.ONSET_SECONDS


def test_order_tones_are_low_and_high() -> None:
    for i in range(20):
        task = at.make_order_task(at.item_rng(7, "order", i))
        clip = AudioClip(task.samples, at.SAMPLE_RATE, 0.0, task.duration)
        pitches = [at.segment_pitch(clip, s) for s in at.tone_segments(clip)]
        assert len(pitches) == 2 and min(pitches) < at.LOW_HZ[1] + 10 and max(pitches) > at.HIGH_HZ[0] - 10
        assert sorted(task.options) == sorted(at.ORDER_OPTIONS)


# ----------------------------------------------------------------------------- records


def _check_common(rec: dict, root: Path, media_key: str) -> None:
    assert isinstance(rec["problem_id"], str) and rec["problem_id"]
    assert rec["problem"].strip() and rec["reasoning"].strip()
    paths = rec[media_key]
    assert isinstance(paths, list) and len(paths) == 1
    assert not Path(paths[0]).is_absolute() and (root / paths[0]).is_file()
    m = ANSWER.match(rec["answer"])
    assert m, rec["answer"]
    if rec["problem_type"] == "numerical":
        assert "options" not in rec
        assert re.fullmatch(r"[1-5]", m.group(1)) and m.group(1) in rec["reasoning"]
    else:
        assert rec["problem_type"] == "multiple choice"
        options = rec["options"]
        assert len(options) in (2, 4) and len(set(options)) == len(options) and all(options)
        lines = rec["problem"].splitlines()
        assert lines[1:] == [f"{at.LETTERS[i]}. {o}" for i, o in enumerate(options)]
        assert m.group(1) in at.LETTERS[: len(options)]
        assert f" {m.group(1)}." in rec["reasoning"]  # the chain of thought ends on the key


def test_audio_records_are_well_formed(audio_split: Path) -> None:
    root = audio_split.parent
    records = read_records(audio_split)
    assert len({r["problem_id"] for r in records}) == len(records)
    assert [r["task"] for r in records] == [at.AUDIO_KINDS[i % 3] for i in range(len(records))]
    for rec in records:
        assert rec["data_type"] == "audio" and "videos" not in rec
        _check_common(rec, root, "audios")
        clip = load_audio(root / rec["audios"][0])
        assert clip.duration == pytest.approx(rec["duration"]) and clip.sample_rate == at.SAMPLE_RATE
    types = Counter((r["task"], r["problem_type"]) for r in records)
    assert types == {("count", "numerical"): 10, ("order", "multiple choice"): 10,
                     ("onset", "multiple choice"): 10}


def test_video_audio_records_are_well_formed(video_split: Path) -> None:
    root = video_split.parent
    for rec in read_records(video_split):
        assert rec["data_type"] == "video+audio" and rec["task"] == "screen" and "audios" not in rec
        assert rec["video_id"] == rec["problem_id"]
        _check_common(rec, root, "videos")
        path = root / rec["videos"][0]
        with av.open(str(path)) as container:
            assert len(container.streams.video) == 1 and len(container.streams.audio) == 1
        info = probe_video(path)
        assert (info.width, info.height, info.fps) == (at.SCREEN_SIZE, at.SCREEN_SIZE, at.SCREEN_FPS)
        assert info.duration == pytest.approx(rec["duration"])
        assert load_audio(path).duration == pytest.approx(rec["duration"])


def test_files_are_small(audio_split: Path, video_split: Path) -> None:
    for path in [*(audio_split.parent / "audios").iterdir(), *(video_split.parent / "videos").iterdir()]:
        assert path.stat().st_size < 250_000, path


# ----------------------------------------------------------------------------- determinism


def test_same_seed_same_bytes(audio_split: Path, video_split: Path, tmp_path: Path) -> None:
    again = at.write_audio_split(tmp_path / "a", N_PER_KIND * 3, seed=0)
    assert again.read_bytes() == audio_split.read_bytes()
    for rec in read_records(again)[:6]:  # PCM WAV: the media bytes repeat too
        assert (again.parent / rec["audios"][0]).read_bytes() == (audio_split.parent / rec["audios"][0]).read_bytes()
    again_v = at.write_video_audio_split(tmp_path / "v", N_PER_KIND, seed=0)
    assert again_v.read_bytes() == video_split.read_bytes()


def test_other_seed_other_answers(audio_split: Path, tmp_path: Path) -> None:
    other = at.write_audio_split(tmp_path, N_PER_KIND * 3, seed=1)
    assert [r["answer"] for r in read_records(other)] != [r["answer"] for r in read_records(audio_split)]


def test_first_items_do_not_change_when_n_grows(audio_split: Path, tmp_path: Path) -> None:
    small = at.write_audio_split(tmp_path, 5, seed=0)
    assert small.read_text().splitlines() == audio_split.read_text().splitlines()[:5]


def test_kinds_subset(tmp_path: Path) -> None:
    path = at.write_audio_split(tmp_path, 4, seed=3, kinds=("onset",), filename="onset.jsonl")
    records = read_records(path)
    assert path.name == "onset.jsonl" and [r["task"] for r in records] == ["onset"] * 4
    assert at.oracle_accuracy(path) == 1.0


@pytest.mark.parametrize("kwargs", [{"n": 0}, {"n": 2.0}, {"seed": -1}, {"kinds": ("count", "pitch")},
                                    {"kinds": "count"}, {"kinds": ()}, {"kinds": ("count", "count")}])
def test_bad_arguments(tmp_path: Path, kwargs: dict) -> None:
    args = {"n": 3, "seed": 0, **kwargs}
    with pytest.raises(ValueError):
        at.write_audio_split(tmp_path, **args)
    assert not (tmp_path / "audio.jsonl").exists()
