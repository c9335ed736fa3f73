"""Held-out accuracy of the toy recipes: greedy answers to multiple-choice questions, and
optionally the accuracy of sampled answers.

Greedy accuracy scores the policy's mode. The sampled accuracy (`samples` responses per
question at `temperature`, averaged: "pass@1" as DeepSeek-R1 reports it for reasoning models)
scores the distribution RL optimises; at toy scale the two can move apart (reproduce/LOG.md).

This is the recipes' quick check (accuracy, format rate, per category). The benchmark
adapters with the community's exact protocols live in `evals/`.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator

from harness.algos.rewards import accuracy_reward, format_reward
from harness.config import RunConfig
from harness.data.dataset import Medium, QADataset, prompt_ids
from harness.data.records import Record
from harness.model.interface import MediaEmbeds, PromptEmbeds, VideoLM
from harness.rollout.engine import SamplingConfig
from harness.rollout.hf_engine import HFEngine
from harness.trainer.videos import DiskEmbeds


def prompt_batches(model: VideoLM, dataset: QADataset, batch_prompts: int, disk: DiskEmbeds | None = None
                   ) -> Iterator[tuple[int, list[Record], list[PromptEmbeds]]]:
    """(start index, records, prompt embeddings) per `batch_prompts` records; records whose
    media cannot be read are left out (the dataset's ledger counts them). `disk`: videos
    read from (and stored to) the on-disk embedding cache."""
    records = dataset.records
    for start in range(0, len(records), batch_prompts):
        chunk, prompts = [], []
        for rec in records[start : start + batch_prompts]:
            loaded = dataset.media(rec)
            media = [_medium(model, dataset, rec, m, disk) for m in loaded]
            if any(m is None for m in media):
                continue
            prompts.append(model.build_prompt(prompt_ids(model, rec, loaded), media))
            chunk.append(rec)
        yield start, chunk, prompts


def _medium(model: VideoLM, dataset: QADataset, rec: Record, medium: Medium,
            disk: DiskEmbeds | None) -> MediaEmbeds | None:
    """A medium's embeddings (a video from the disk cache when it has it), None when unreadable."""
    key = None if disk is None or medium.kind != "video" else disk.key(medium.path)
    found = None if key is None else disk.read(key)
    if found is not None:
        return found[0]
    if not dataset.load_medium(rec, medium):
        return None
    embeds = model.encode_medium(medium.kind, medium.data)
    if key is not None:
        disk.write(key, embeds, medium.data)
    return embeds


def evaluate_accuracy(model: VideoLM, dataset: QADataset, max_new_tokens: int,
                      batch_prompts: int = 16, samples: int = 0, temperature: float = 1.0,
                      seed: int = 0, disk: DiskEmbeds | None = None) -> dict[str, float]:
    """`eval/accuracy`, `eval/acc_<category>`, `eval/format_rate`, `eval/questions` from greedy
    answers; with `samples` > 0 also `eval/sampled_accuracy` and `eval/sampled_format_rate`:
    means over `samples` answers per question drawn at `temperature` (seeded: reproducible)."""
    if samples < 0:
        raise ValueError(f"samples must be >= 0, got {samples}")
    engine = HFEngine(model)
    greedy = SamplingConfig(greedy=True, max_new_tokens=max_new_tokens)
    hits: dict[str, list[float]] = defaultdict(list)
    formats: list[float] = []
    sampled_hits: list[float] = []
    sampled_formats: list[float] = []
    for start, chunk, prompts in prompt_batches(model, dataset, batch_prompts, disk):
        for rec, out in zip(chunk, engine.generate(prompts, greedy), strict=True):
            text = model.tokenizer.decode(out.token_ids, skip_special_tokens=True)
            acc = accuracy_reward(text, rec.answer, rec.problem_type)
            hits["all"].append(acc)
            hits[rec.category or "none"].append(acc)
            formats.append(format_reward(text))
        if samples and prompts:
            sampling = SamplingConfig(n=samples, temperature=temperature, top_p=1.0,
                                      max_new_tokens=max_new_tokens, seed=seed + start)
            outs = engine.generate(prompts, sampling)  # grouped: all samples of prompt 0, then 1, ...
            for i, out in enumerate(outs):
                text = model.tokenizer.decode(out.token_ids, skip_special_tokens=True)
                rec = chunk[i // samples]
                sampled_hits.append(accuracy_reward(text, rec.answer, rec.problem_type))
                sampled_formats.append(format_reward(text))
    result = {f"eval/acc_{k}" if k != "all" else "eval/accuracy": sum(v) / len(v) for k, v in hits.items()}
    result["eval/format_rate"] = sum(formats) / max(len(formats), 1)
    result["eval/questions"] = float(len(formats))
    if samples:
        result["eval/sampled_accuracy"] = sum(sampled_hits) / max(len(sampled_hits), 1)
        result["eval/sampled_format_rate"] = sum(sampled_formats) / max(len(sampled_formats), 1)
    return result


def evaluate_run(model: VideoLM, dataset: QADataset, run: RunConfig,
                 disk: DiskEmbeds | None = None) -> dict[str, float]:
    """`evaluate_accuracy` with a recipe's `run.eval_*` settings."""
    return evaluate_accuracy(model, dataset, run.eval_max_new_tokens, samples=run.eval_samples,
                             temperature=run.eval_temperature, seed=run.seed, disk=disk)
