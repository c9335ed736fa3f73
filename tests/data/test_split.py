"""`harness data split`: whole videos to each stage, the share rounded to the closest whole
videos, and no file replaced (its own input, or an earlier split). The rows follow the
released LongVideo-Reason train lines (test_released_lvr.ROW0)."""

from __future__ import annotations

import json

from harness.cli import main
from tests.data.test_released_lvr import ROW0


def _release(path, videos: list[int]) -> list[str]:
    """A released-form file: `videos[i]` records of video i (ids in order); returns the lines."""
    lines, pid = [], 0
    for v, n in enumerate(videos):
        for _ in range(n):
            lines.append(json.dumps({**ROW0, "problem_id": pid, "videos": f"longvila_videos/v{v}.mp4"}))
            pid += 1
    path.write_text("".join(line + "\n" for line in lines))
    return lines


def _split(src, out, *extra) -> int:
    return main(["data", "split", "--input", str(src), "--out", str(out), *extra])


def _count(path) -> int:
    return len(path.read_text().splitlines())


def test_split_refuses_to_overwrite_its_own_input(tmp_path, capsys):
    """Was: `--input X/rl.jsonl --out X` wrote 8 of the 16 records back over the input."""
    src = tmp_path / "rl.jsonl"
    _release(src, [4, 4, 4, 4])
    before = src.read_bytes()
    assert _split(src, tmp_path) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1
    assert "would overwrite the input" in err and str(src) in err and "another --out" in err
    assert src.read_bytes() == before and not (tmp_path / "sft.jsonl").exists()


def test_split_refuses_to_replace_an_earlier_split(tmp_path, capsys):
    src = tmp_path / "train.jsonl"
    _release(src, [2] * 6)
    out = tmp_path / "out"
    assert _split(src, out) == 0
    first = {n: (out / n).read_bytes() for n in ("sft.jsonl", "rl.jsonl")}
    capsys.readouterr()
    assert _split(src, out, "--seed", "5") == 2
    err = capsys.readouterr().err
    assert f"{out / 'sft.jsonl'} already exists" in err and "another --out" in err
    assert {n: (out / n).read_bytes() for n in first} == first


def test_split_of_a_single_video_is_refused(tmp_path, capsys):
    """Was: every record went to sft.jsonl and rl.jsonl was written empty, without a word."""
    src = tmp_path / "train.jsonl"
    _release(src, [5])
    assert _split(src, tmp_path / "out") == 2
    assert "needs records of at least 2 videos" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_sft_share_is_the_closest_whole_videos(tmp_path):
    """4 equal videos at 1/3: one video (4 of 16 records), not the 8 that the greedy fill
    took (it added videos while SFT held less than the share, overshooting it)."""
    src = tmp_path / "train.jsonl"
    _release(src, [4, 4, 4, 4])
    assert _split(src, tmp_path / "out") == 0
    assert (_count(tmp_path / "out" / "sft.jsonl"), _count(tmp_path / "out" / "rl.jsonl")) == (4, 12)


def test_each_stage_keeps_a_video_whatever_the_order(tmp_path):
    """A small video drawn first used to let SFT take the big one too, leaving RL empty."""
    src = tmp_path / "train.jsonl"
    _release(src, [1, 5])
    for seed in range(4):
        out = tmp_path / f"out{seed}"
        assert _split(src, out, "--seed", str(seed)) == 0
        assert _count(out / "sft.jsonl") > 0 and _count(out / "rl.jsonl") > 0


def test_records_the_recipes_refuse_stay_out_of_the_split(tmp_path, capsys):
    """A record with two videos would be grouped by its first only (and trained on it only):
    it is refused with file:line, like any line the recipes cannot use."""
    src = tmp_path / "train.jsonl"
    lines = _release(src, [2, 2, 2])
    two = {**ROW0, "problem_id": 99, "videos": ["longvila_videos/v0.mp4", "longvila_videos/v9.mp4"]}
    src.write_text("".join(line + "\n" for line in lines) + json.dumps(two) + "\n")
    assert _split(src, tmp_path / "out") == 0
    out = capsys.readouterr().out
    assert "refused lines: 1" in out and "train.jsonl:7" in out and "2 videos" in out
    assert _count(tmp_path / "out" / "sft.jsonl") + _count(tmp_path / "out" / "rl.jsonl") == 6


def test_split_input_that_is_a_folder_says_so(tmp_path, capsys):
    """Was: "<folder> does not exist"."""
    assert _split(tmp_path, tmp_path / "out") == 2
    err = capsys.readouterr().err
    assert "is a folder" in err and "records file" in err and "does not exist" not in err
