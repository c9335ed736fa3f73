"""Slow: the frames-vs-accuracy property on a larger synthetic set (tox -e slow)."""

import json

import numpy as np
import pytest

from harness.data.records import read_jsonl
from harness.data.synthetic import oracle_answer, synthesize


@pytest.mark.slow
def test_oracle_accuracy_grows_with_frames_on_200_videos(tmp_path):
    synthesize(tmp_path, 200, seed=1, progress=False)
    events = {p.name.split(".")[0]: json.loads(p.read_text()) for p in (tmp_path / "videos").glob("*.events.json")}
    records = [r for s in ("sft", "rl", "test") for r in read_jsonl(tmp_path / f"{s}.jsonl", strict=True)]
    rng = np.random.default_rng(0)
    acc = {}
    for frames in (2, 4, 8, 16, 32, None):
        hits = []
        for rec in records:
            ev = events[rec.video_id]
            n = ev["num_frames"]
            idx = np.arange(n) if frames is None else np.linspace(0, n - 1, frames).round()
            hits.append(oracle_answer(rec, ev, idx / ev["fps"], rng) == rec.answer_text)
        acc[frames] = float(np.mean(hits))
    values = list(acc.values())
    assert acc[2] < 0.35  # near chance (0.25) with two frames
    assert all(a <= b + 0.02 for a, b in zip(values, values[1:], strict=False)), acc
    assert acc[None] == 1.0
