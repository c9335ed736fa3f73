"""`harness demo`: the end-to-end toy run, on CPU in well under a minute.

What exists so far runs in order, each step printing what it did:
  1. synthesise long-video reasoning tasks (real mp4 files + sft/rl/test splits),
  2. build the tiny model (random weights, local tokenizer) and save it as a checkpoint,
  3. decode one test video (uniform frames) and encode it through the vision tower,
     with the embedding cache (a second lookup is a hit, equal to the first),
  4. one forward pass with the video in the prompt: greedy answer + its log-probs.
Later stages (CoT-SFT, RL with MR-SP, evaluation, report) attach here as they land.
Outputs live under `--out`; a second run reuses data and model unless `--fresh`.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import torch

from harness.data.embed_cache import EmbedCache, make_key, weights_fingerprint
from harness.data.records import read_jsonl
from harness.data.synthetic import synthesize
from harness.data.video import load_video
from harness.model.build import init_model, load_model
from harness.model.interface import VideoEmbeds

DEMO_VIDEOS = 9
DEMO_FRAMES = 16


def _step(n: int, title: str) -> float:
    print(f"\n[{n}] {title}", flush=True)
    return time.perf_counter()


def _done(t0: float, what: str) -> None:
    print(f"    {what} ({time.perf_counter() - t0:.1f} s)", flush=True)


def run_demo(out: Path, *, fresh: bool = False, seed: int = 0, family: str = "vila") -> dict:
    if fresh and out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    data_dir, model_dir, cache_dir = out / "data", out / f"model-{family}", out / "embed_cache"

    t0 = _step(1, f"synthesise {DEMO_VIDEOS} videos with questions -> {data_dir}")
    if (data_dir / "test.jsonl").exists():
        _done(t0, "reused existing data (use --fresh to rebuild)")
    else:
        summary = synthesize(data_dir, DEMO_VIDEOS, seed=seed, minutes=(0.5, 1.0),
                             formats=("harness", "videomme"), progress=True)
        _done(t0, str(summary))
    records = list(read_jsonl(data_dir / "test.jsonl"))
    print(f"    test split: {len(records)} questions; first: {records[0].problem.splitlines()[0]!r}")

    t0 = _step(2, f"build the tiny {family} model -> {model_dir}")
    if (model_dir / "config.json").exists():
        model = load_model(model_dir)
        _done(t0, "loaded existing checkpoint")
    else:
        model = init_model(family, "tiny", seed=seed)
        model.save_pretrained(model_dir)
        _done(t0, f"{sum(p.numel() for p in model.parameters()):,} parameters, "
                  f"vocabulary {len(model.tokenizer)}")

    record = records[0]
    video_path = data_dir / record.videos[0]
    t0 = _step(3, f"decode {DEMO_FRAMES} frames of {video_path.name} and encode them (cached)")
    clip = load_video(video_path, DEMO_FRAMES)
    print(f"    frames {tuple(clip.frames.shape)} at t = {clip.timestamps[0]:.1f} .. "
          f"{clip.timestamps[-1]:.1f} s of {clip.duration:.1f} s")
    cache = EmbedCache(cache_dir)
    # The embeddings come out of the projector, so both parts key the cache.
    tower, projector = model.vision_modules()
    encoder = {**tower.state_dict(prefix="tower."), **projector.state_dict(prefix="projector.")}
    key = make_key(video_path, {"family": family, "frames": DEMO_FRAMES, "mode": "uniform"},
                   weights_fingerprint(encoder))
    with torch.no_grad():
        video = model.encode_frames(clip.frames, clip.timestamps)
        cached = cache.get_or_compute(key, lambda: video.embeds)
        again = cache.get_or_compute(key, lambda: video.embeds)
    assert torch.equal(cached, again), "embedding cache returned different tensors for one key"
    video = VideoEmbeds(cached, video.grid_hw, video.seconds_per_unit)
    _done(t0, f"video embeddings {tuple(cached.shape)} ({video.num_tokens} tokens); "
              f"cache {cache.stats()}")

    t0 = _step(4, "one forward pass with the video in the prompt")
    prompt = model.build_prompt(model.chat_prompt_ids(record.problem), video)
    with torch.no_grad():
        (answer,) = model.generate(prompt, max_new_tokens=24)
        logp = model.response_logprobs(prompt, answer)
    text = model.tokenizer.decode(answer, skip_special_tokens=False)
    _done(t0, f"prompt {len(prompt)} tokens (video {prompt.video_span}); untrained answer "
              f"{text!r}; mean log-prob {logp.mean():.3f}; key answer {record.answer}")

    result = {"videos": DEMO_VIDEOS, "test_questions": len(records), "prompt_tokens": len(prompt),
              "video_tokens": video.num_tokens, "cache": cache.stats(), "answer": text}
    (out / "demo.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwrote {out / 'demo.json'}. Next stages (SFT, RL with MR-SP, eval) come with later issues.")
    return result
