"""Held-out accuracy of the toy recipes: greedy answers to multiple-choice questions.

This is the recipes' quick check (accuracy, format rate, per category). The benchmark
adapters with the community's exact protocols live in `evals/`.
"""

from __future__ import annotations

from collections import defaultdict

from harness.algos.rewards import accuracy_reward, format_reward
from harness.data.dataset import VideoQADataset, question_text
from harness.model.interface import VideoLM
from harness.rollout.engine import SamplingConfig
from harness.rollout.hf_engine import HFEngine


def evaluate_accuracy(model: VideoLM, dataset: VideoQADataset, max_new_tokens: int,
                      batch_prompts: int = 16) -> dict[str, float]:
    engine = HFEngine(model)
    sampling = SamplingConfig(greedy=True, max_new_tokens=max_new_tokens)
    hits: dict[str, list[float]] = defaultdict(list)
    formats: list[float] = []
    records = dataset.records
    for start in range(0, len(records), batch_prompts):
        chunk, prompts = [], []
        for rec in records[start : start + batch_prompts]:
            clip = dataset.load_frames(rec)
            if clip is None:
                continue
            video = model.encode_frames(clip.frames, clip.timestamps)
            prompts.append(model.build_prompt(model.chat_prompt_ids(question_text(rec)), video))
            chunk.append(rec)
        for rec, out in zip(chunk, engine.generate(prompts, sampling), strict=True):
            text = model.tokenizer.decode(out.token_ids, skip_special_tokens=True)
            acc = accuracy_reward(text, rec.answer, rec.problem_type)
            hits["all"].append(acc)
            hits[rec.category or "none"].append(acc)
            formats.append(format_reward(text))
    result = {f"eval/acc_{k}" if k != "all" else "eval/accuracy": sum(v) / len(v) for k, v in hits.items()}
    result["eval/format_rate"] = sum(formats) / max(len(formats), 1)
    result["eval/questions"] = float(len(formats))
    return result
