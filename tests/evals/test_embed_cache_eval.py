"""`harness eval --embed-cache`: each video decoded and encoded once across runs; prompts
(subtitles included, which need the sampled frames' times the cache keeps) and answers are
those of a run without the cache."""

from __future__ import annotations

import json

import numpy as np

from evals.model import HarnessVLM
from evals.runner import EvalSettings, predictions_path, run_eval
from evals.tasks import build_benchmark
from harness.data.video import load_video
from harness.trainer.videos import DiskEmbeds


def test_eval_with_the_cache_answers_the_same_and_decodes_nothing_the_second_time(mme_root, tiny_ckpt, tmp_path):
    """Video-MME with subtitles (the prompt needs the sampled frames' times, which the
    cache keeps): the second run reads every video from the cache; prompts and answers
    are those of a run without it."""
    bench, vlm = build_benchmark("videomme"), HarnessVLM(tiny_ckpt, max_new_tokens=6, batch_size=4)
    s = EvalSettings(frames=4, subtitles=True, progress=False)
    cached = EvalSettings(frames=4, subtitles=True, progress=False, embed_cache=str(tmp_path / "c"))
    plain = run_eval(bench, vlm, mme_root, tmp_path / "plain.json", s)
    first = run_eval(bench, vlm, mme_root, tmp_path / "first.json", cached)
    second = run_eval(bench, vlm, mme_root, tmp_path / "second.json", cached)
    videos = len({it.video for it in bench.load(mme_root)})
    assert plain["counts"]["embed_cache_hits"] is None
    assert (first["counts"]["embed_cache_hits"], second["counts"]["embed_cache_hits"]) == (0, videos)
    rows = [[(r["qid"], r["prompt_sha"], r["response"]) for r in
             map(json.loads, predictions_path(tmp_path / f"{n}.json").read_text().splitlines())]
            for n in ("plain", "first", "second")]
    assert rows[0] == rows[1] == rows[2]
    assert second["scores"] == plain["scores"]
    meta = DiskEmbeds(tmp_path / "c", vlm.model, {"num_frames": 4, "fps": None, "frame_sampling": "uniform"})
    item = bench.load(mme_root)[0]
    clip = load_video(item.video, 4)
    _, stored = meta.read(meta.key(item.video))
    assert np.array_equal(stored["indices"], clip.indices) and stored["video_fps"] == clip.video_fps
