"""Datasets for the recipes: skips are counted with reasons, budgets stop runs, the
sampler is deterministic and resumable."""

import json
import shutil

import pytest

from harness.data.dataset import (
    EpochSampler,
    SkipBudgetExceeded,
    SkipLedger,
    VideoQADataset,
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
    ds = VideoQADataset(root / "test.jsonl", 4, ledger)
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
    with pytest.raises(SkipBudgetExceeded, match="2 of 5 video decodes failed") as err:
        ledger.check()
    assert "a.mp4: truncated" in str(err.value) and "b.mp4: missing" in str(err.value)
    assert ledger.totals == [2, 5]


def test_decodes_are_counted_per_attempt_and_lines_judged_per_split(data, tmp_path):
    """An unreadable video is a share of the decodes attempted (a revisit counts again, good
    or not); a malformed line is a share of its own split's lines, refused when read."""
    root, video = _broken_copy(data, tmp_path)
    ledger = SkipLedger(max_fraction=1.0)
    ds = VideoQADataset(root / "test.jsonl", 4, ledger)
    assert ledger.decodes == [0, 0]  # reading the split decodes nothing
    clips = [ds.load_frames(r) for r in ds.records * 2]
    bad = 2 * sum(ds.video_path(r) == video for r in ds.records)
    assert ledger.decodes == [bad, 2 * len(ds.records)] and sum(c is None for c in clips) == bad
    read = len(ds.records) + 1  # one malformed line
    VideoQADataset(root / "test.jsonl", 4, SkipLedger(max_fraction=1 / read))  # exactly at the budget
    with pytest.raises(SkipBudgetExceeded, match=f"1 of {read} lines of .*test.jsonl malformed"):
        VideoQADataset(root / "test.jsonl", 4, SkipLedger(max_fraction=0.99 / read))


def test_skip_budget_reduce_judges_the_summed_decodes():
    """Data parallel: `reduce` stands for the all-reduce over ranks (this rank's tally plus
    another's); the verdict is on the sum, not on this rank's own share."""
    ledger = SkipLedger(max_fraction=0.2, decodes=[0, 4])
    other = [3, 6]
    with pytest.raises(SkipBudgetExceeded, match="3 of 10 video decodes failed over all data-parallel ranks"):
        ledger.check(reduce=lambda mine: [a + b for a, b in zip(mine, other, strict=True)])
    ledger.check()  # alone, this rank is within budget
    ledger.check(reduce=lambda mine: [a + b for a, b in zip(mine, [2, 6], strict=True)])  # 2 of 10: at the budget
    assert ledger.totals == [2, 10]


def test_missing_split_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        VideoQADataset(tmp_path / "nope.jsonl", 4, SkipLedger(0.1))


def test_prompt_and_target_formats(data):
    rec = VideoQADataset(data / "test.jsonl", 4, SkipLedger(0.1)).records[0]
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
