"""Datasets for the recipes: skips are counted with reasons, budgets stop runs, the
sampler is deterministic and resumable."""

import json
import logging
import math
import shutil

import numpy as np
import pytest

from harness.data.dataset import (
    EpochSampler,
    QADataset,
    SkipBudgetExceeded,
    SkipLedger,
    question_text,
    sft_target,
)
from harness.data.synthetic import synthesize


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    out = tmp_path_factory.mktemp("ds")
    synthesize(out, 3, seed=0, minutes=(0.2, 0.2), progress=False)
    return out


def _broken_copy(data, tmp_path):
    """test split with one malformed line and its video truncated."""
    root = tmp_path / "broken"
    shutil.copytree(data, root)
    lines = (root / "test.jsonl").read_text().splitlines()
    (root / "test.jsonl").write_text("\n".join([*lines, '{"problem_id": "x", "oops"', ""]))
    video = root / json.loads(lines[0])["videos"][0]
    video.write_bytes(video.read_bytes()[:300])
    return root, video


def test_malformed_lines_and_unreadable_videos_are_skipped_with_reasons(data, tmp_path):
    root, video = _broken_copy(data, tmp_path)
    ledger = SkipLedger(max_fraction=1.0)
    ds = QADataset(root / "test.jsonl", 4, ledger)
    assert len(ledger.skipped) == 1 and "test.jsonl:" in ledger.skipped[0][0]
    clips = [ds.load_frames(r) for r in ds.records]
    bad = [r for r, c in zip(ds.records, clips, strict=True) if c is None]
    assert bad and all(ds.video_path(r) == video for r in bad)
    assert any(video.name in what for what, _ in ledger.skipped)


def test_skip_budget_stops_with_the_list():
    ledger = SkipLedger(max_fraction=0.25)
    ledger.decoded(failure=("a.mp4", "truncated"))
    for _ in range(3):
        ledger.decoded()
    ledger.check()  # 1 of 4 is allowed
    ledger.decoded(failure=("b.mp4", "missing"))
    with pytest.raises(SkipBudgetExceeded, match="2 of 5 media decodes failed") as err:
        ledger.check()
    assert "a.mp4: truncated" in str(err.value) and "b.mp4: missing" in str(err.value)
    assert ledger.totals == [2, 5]


def test_decodes_are_counted_per_attempt_and_lines_judged_per_split(data, tmp_path):
    """An unreadable video is a share of the decodes attempted (a revisit counts again, good
    or not); a malformed line is a share of its own split's lines, refused when read."""
    root, video = _broken_copy(data, tmp_path)
    ledger = SkipLedger(max_fraction=1.0)
    ds = QADataset(root / "test.jsonl", 4, ledger)
    assert ledger.decodes == [0, 0]  # reading the split decodes nothing
    clips = [ds.load_frames(r) for r in ds.records * 2]
    bad = 2 * sum(ds.video_path(r) == video for r in ds.records)
    assert ledger.decodes == [bad, 2 * len(ds.records)] and sum(c is None for c in clips) == bad
    read = len(ds.records) + 1  # one malformed line
    QADataset(root / "test.jsonl", 4, SkipLedger(max_fraction=1 / read))  # exactly at the budget
    with pytest.raises(SkipBudgetExceeded, match=f"1 of {read} lines of .*test.jsonl malformed"):
        QADataset(root / "test.jsonl", 4, SkipLedger(max_fraction=0.99 / read))


def test_skip_budget_reduce_judges_the_summed_decodes():
    """Data parallel: `reduce` stands for the all-reduce over ranks (this rank's tally plus
    another's); the verdict is on the sum, not on this rank's own share."""
    ledger = SkipLedger(max_fraction=0.2, decodes=[0, 4])
    other = [3, 6]
    with pytest.raises(SkipBudgetExceeded, match="3 of 10 media decodes failed over all data-parallel ranks"):
        ledger.check(reduce=lambda mine: [a + b for a, b in zip(mine, other, strict=True)])
    ledger.check()  # alone, this rank is within budget
    ledger.check(reduce=lambda mine: [a + b for a, b in zip(mine, [2, 6], strict=True)])  # 2 of 10: at the budget
    assert ledger.totals == [2, 10]


def test_missing_split_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        QADataset(tmp_path / "nope.jsonl", 4, SkipLedger(0.1))


def test_prompt_and_target_formats(data):
    rec = QADataset(data / "test.jsonl", 4, SkipLedger(0.1)).records[0]
    assert question_text(rec).startswith(rec.problem) and "<answer>" in question_text(rec)
    assert sft_target(rec) == f"<think>{rec.reasoning}</think>{rec.answer}"


def test_sampler_covers_each_epoch_and_resumes_exactly():
    a = EpochSampler(7, seed=3)
    first = a.take(7)
    assert sorted(first) == list(range(7))
    a.take(3)
    state = a.state()
    expected = a.take(9)
    b = EpochSampler(7, seed=3)
    b.load_state(state)
    assert b.take(9) == expected
    assert EpochSampler(7, seed=4).take(7) != first
    with pytest.raises(ValueError, match="does not match"):
        EpochSampler(8, seed=3).load_state(state)


# --- what the recipes refuse when they read a split, as `harness sft` shows it -------------


def _sft_reading(tmp_path, train: str, *extra: str) -> list[str]:
    """`harness sft` argv that stops once the split is read (data.max_skip_fraction=0)."""
    return ["sft", f"data.dir={tmp_path}", f"data.train={train}", "data.eval=null", "data.max_skip_fraction=0",
            f"run.out_dir={tmp_path / 'run'}", "run.progress=false", "run.tensorboard=false", *extra]


def _lines(*rows: dict) -> str:
    return "".join(json.dumps(r) + "\n" for r in rows)


def test_a_record_with_several_videos_is_refused_with_its_line(tmp_path, capsys):
    """Was: a record naming two videos trained on the first only, and a second path that does
    not exist was never noticed. The recipes take one video per question."""
    from harness.cli import main
    from tests.data.test_released_lvr import ROW0

    two = {**ROW0, "problem_id": 1, "videos": ["longvila_videos/I_Q3ajyOrcI.mp4", "longvila_videos/NOPE.mp4"]}
    (tmp_path / "sft.jsonl").write_text(_lines(ROW0, two))
    assert main(_sft_reading(tmp_path, "sft.jsonl")) == 2
    err = capsys.readouterr().err
    assert "1 of 2 lines" in err and "sft.jsonl:2" in err and "field 'videos': 2 videos" in err


def test_a_refused_line_is_logged_once(tmp_path, capsys, caplog):
    """Was: logged by the record reader, then again by the skip ledger."""
    from harness.cli import main
    from tests.data.test_released_lvr import ROW0

    (tmp_path / "sft.jsonl").write_text(_lines(ROW0, {"problem_id": 1}))
    with caplog.at_level(logging.WARNING):
        assert main(_sft_reading(tmp_path, "sft.jsonl")) == 2
    assert "sft.jsonl:2" in capsys.readouterr().err
    assert sum("sft.jsonl:2" in r.getMessage() for r in caplog.records) == 1


@pytest.mark.parametrize("kind", ["array", "pretty", "binary"])
def test_a_split_that_is_not_json_lines_is_one_line(tmp_path, capsys, caplog, kind):
    """Was: every line of a pretty-printed JSON array refused and logged twice (486 lines for
    12 records), ending in "holds no valid records"; a video given by mistake alike."""
    from harness.cli import main
    from tests.data.conftest import write_test_video
    from tests.data.test_released_lvr import ROW0

    rows = [{**ROW0, "problem_id": i} for i in range(12)]
    name = {"array": "sft.json", "pretty": "sft_pretty.jsonl", "binary": "v.mp4"}[kind]
    if kind == "array":
        (tmp_path / name).write_text(json.dumps(rows, indent=2))
    elif kind == "pretty":
        (tmp_path / name).write_text("\n".join(json.dumps(r, indent=2) for r in rows))
    else:
        write_test_video(tmp_path / name, num_frames=24)
    with caplog.at_level(logging.WARNING):
        assert main(_sft_reading(tmp_path, name)) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1
    assert f"{tmp_path / name} is not JSON Lines (one JSON object per line): line 1:" in err
    assert {"array": "jq -c '.[]'", "pretty": "jq -c .", "binary": "give the records file"}[kind] in err
    assert not [r for r in caplog.records if "skipped" in r.getMessage()]


def test_a_bad_first_line_does_not_refuse_a_json_lines_file(tmp_path):
    """Only a file whose opening lines are all no JSON objects is refused whole; a damaged
    first line of a real split costs that line, counted like any other."""
    from tests.data.test_released_lvr import ROW0

    (tmp_path / "longvila_videos").mkdir()
    (tmp_path / "rl.jsonl").write_text('{"problem_id": 0, "cut off\n' + _lines(*[{**ROW0, "problem_id": i}
                                                                               for i in range(1, 4)]))
    ledger = SkipLedger(1.0)
    ds = QADataset(tmp_path / "rl.jsonl", 4, ledger)
    assert len(ds.records) == 3 and ds.malformed == 1
    assert ledger.skipped[0][0].endswith("rl.jsonl:1") and "not valid JSON" in ledger.skipped[0][1]


@pytest.mark.parametrize(("fps", "cap"), [(1.0, 64), (0.25, 64), (4.0, 16)])
def test_fps_sampling_takes_frames_at_the_rate_with_num_frames_as_cap(data, fps, cap):
    """data.fps: frames k / fps seconds apart over the whole video, at most num_frames; the
    video's own length and rate decide the count (12 s synthetic videos)."""
    ds = QADataset(data / "test.jsonl", cap, SkipLedger(0.1), fps=fps)
    clip = ds.load_frames(ds.records[0])
    expected = min(cap, math.ceil(clip.duration * fps - 1e-9))
    assert len(clip.timestamps) == expected
    if expected < cap:  # at the rate: consecutive frames 1 / fps seconds apart (within a frame)
        assert np.allclose(np.diff(clip.timestamps), 1 / fps, atol=1 / clip.video_fps)
    uniform = QADataset(data / "test.jsonl", cap, SkipLedger(0.1)).load_frames(ds.records[0])
    assert len(uniform.timestamps) == cap
