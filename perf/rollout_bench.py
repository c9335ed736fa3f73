"""Suite 3 of the perf issue: the rollout engines on the same prompts with video.

Tokens per second of generation (all samples' new tokens / wall seconds of `generate`) for
the HF engine and the vLLM engine, from the same prompt embeddings (text + cached video
rows) with the same sampling settings, and the weight-sync time (trainer -> engine; a no-op
for HF, which samples from the trainer's own module). Single process, as the harness runs
vLLM in-process; the first `generate` of each engine is a warm-up and not counted.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Any


def build_prompts(model, data_dir: str, count: int, frames: int) -> list:
    from harness.data.dataset import QADataset, SkipLedger, question_text
    from harness.trainer.videos import StepVideoCache

    data = QADataset(Path(data_dir) / "rl.jsonl", frames, SkipLedger(1.0))
    cache = StepVideoCache(model, reuse=True)
    prompts = []
    for rec in data.records[:count]:
        clip = data.load_frames(rec)
        video = cache.get(rec.problem_id, clip)
        prompts.append(model.build_prompt(model.chat_prompt_ids(question_text(rec)), video))
    return prompts


def bench_engine(name: str, model, prompts: list, *, n: int, new_tokens: int, rounds: int = 2,
                 seed: int = 0) -> dict[str, Any]:
    from harness.rollout import HFEngine, SamplingConfig, VLLMEngine

    engine = HFEngine(model) if name == "hf" else VLLMEngine(model, kv_cache_gib=1.0, seed=seed)
    sampling = SamplingConfig(n=n, temperature=1.0, top_p=0.99, max_new_tokens=new_tokens, seed=seed)
    try:
        engine.generate(prompts[:1], SamplingConfig(n=1, max_new_tokens=4, seed=seed))  # warm-up
        runs = []
        for _ in range(rounds):
            start = time.perf_counter()
            outs = engine.generate(prompts, sampling)
            seconds = time.perf_counter() - start
            runs.append((sum(int(o.token_ids.shape[0]) for o in outs), seconds))
        syncs = []
        for _ in range(3):
            start = time.perf_counter()
            engine.sync_weights(model)
            syncs.append(time.perf_counter() - start)
    finally:
        if hasattr(engine, "close"):
            engine.close()
    rates = [tokens / seconds for tokens, seconds in runs]
    return {"engine": name, "tokens_per_second": statistics.median(rates), "rates": rates,
            "new_tokens": [t for t, _ in runs], "generate_seconds": [s for _, s in runs],
            "sync_seconds": statistics.median(syncs),
            "prompt_tokens": [len(p) for p in prompts]}


def run(pc, work: Path) -> dict[str, Any]:
    import torch

    from harness.model.build import load_model
    from harness.rollout.vllm_engine import vllm_unavailable_reason
    from perf.common import figure, stamp
    from perf.mrsp import prepare

    data_dir, model_path = prepare(pc, work)
    model = load_model(model_path)
    if torch.cuda.is_available():
        model = model.cuda()
    prompts = build_prompts(model, data_dir, pc.rollout_prompts, pc.rollout_frames)
    engines, skipped = [], {}
    for name in pc.rollout_engines:
        reason = vllm_unavailable_reason(model) if name == "vllm" else None
        if reason:
            skipped[name] = reason
            continue
        engines.append(bench_engine(name, model, prompts, n=pc.rollout_n, new_tokens=pc.rollout_new_tokens))
    q, t = pc.thresholds["ratio"], pc.thresholds["time"]
    figs = {}
    for e in engines:
        figs[f"rollout/{e['engine']}/tokens_per_second"] = figure(e["tokens_per_second"], "tok/s", "higher", q)
        if e["engine"] != "hf":
            figs[f"rollout/{e['engine']}/sync_seconds"] = figure(e["sync_seconds"], "s", "lower", max(t, 1.0))
    return {"suite": "rollout", **stamp(), "model": model_path, "frames": pc.rollout_frames,
            "prompts": len(prompts), "n": pc.rollout_n, "max_new_tokens": pc.rollout_new_tokens,
            "engines": engines, "skipped": skipped, "figures": figs}
