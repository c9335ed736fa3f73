"""Which attributes does a model's greedy chain of thought read? Per-field accuracy.

    python -m reproduce.probe_reasoning MODEL_DIR [MODEL_DIR ...] [--data DIR] [--split test150.jsonl]

A basic-level reasoning names all three attributes of the one object, whatever the question
("A yellow square appears in the top right. So the answer is top right."), so one greedy
response per question shows what the model reads: the colour, shape and region it names
against the video's truth, and whether its `<answer>` (the span the harness scores: the last
complete one) agrees with its own reasoning. reproduce/LOG.md (sessions 4-5) uses it to tell a
reading the model lacks from an answer that disagrees with a reading it has.
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path

from reproduce.probe_embeddings import KINDS, question_kind

# the basic level's narration of its one event (harness/data/synthetic/questions.py)
NARRATION = re.compile(r"A (?P<colour>\w+) (?P<shape>\w+) appears in the (?P<region>[\w ]+?)\.")


def read_fields(text: str) -> dict[str, str] | None:
    """{"colour", "shape", "region"} named by the first narration in `text`, or None."""
    m = NARRATION.search(text)
    return m.groupdict() if m else None


def score(pairs: list[tuple[str, str, str, str, str]]) -> dict[str, float]:
    """Per-field figures from (question, problem type, reference reasoning, key, response) tuples.

    `accuracy` and `acc_<kind>` are the harness's scores (the last complete `<answer>` span);
    `reads_<field>` is how often the response's narration names that attribute right, over
    the parsed responses (0 when none parsed: read `unparsed`); `answer_follows_reasoning` how often the scored answer equals the
    field the question asks about as the response itself named it.
    """
    from harness.algos.rewards import accuracy_reward, extract_answer, normalize_text

    hits, asked = Counter(), Counter()
    for question, problem_type, reference, key, response in pairs:
        kind = question_kind(question)
        right = accuracy_reward(response, key, problem_type)
        asked[kind] += 1
        hits[f"acc_{kind}"] += right
        hits["accuracy"] += right
        truth, named = read_fields(reference), read_fields(response)
        if truth is None:
            raise ValueError(f"reference reasoning is not a basic-level narration: {reference!r}")
        if named is None:
            hits["unparsed"] += 1
            continue
        hits["parsed"] += 1
        for field in KINDS:
            hits[f"reads_{field}"] += named[field] == truth[field]
        answer = extract_answer(response)
        hits["answer_follows_reasoning"] += answer is not None and normalize_text(answer) == normalize_text(named[kind])
    n, parsed = sum(asked.values()), max(hits["parsed"], 1)
    out = {"questions": float(n), "accuracy": hits["accuracy"] / max(n, 1), "unparsed": float(hits["unparsed"])}
    out |= {f"acc_{k}": hits[f"acc_{k}"] / asked[k] for k in KINDS if asked[k]}
    out |= {f"reads_{f}": hits[f"reads_{f}"] / parsed for f in KINDS}
    out["answer_follows_reasoning"] = hits["answer_follows_reasoning"] / parsed
    return out


def probe(model_dir: Path, data_dir: Path, split: str = "test150.jsonl", frames: int = 16,
          max_new_tokens: int = 48) -> dict[str, float]:
    """Greedy responses of the model at `model_dir` to the basic-level questions of `split`, scored."""
    import torch

    from harness.data.dataset import QADataset, SkipLedger
    from harness.model.build import load_model
    from harness.rollout.engine import SamplingConfig
    from harness.rollout.hf_engine import HFEngine
    from harness.trainer.evaluate import prompt_batches

    model = load_model(model_dir).eval()
    engine = HFEngine(model)
    greedy = SamplingConfig(greedy=True, max_new_tokens=max_new_tokens)
    data = QADataset(data_dir / split, frames, SkipLedger(1.0))
    pairs = []
    with torch.no_grad():
        for _, chunk, prompts in prompt_batches(model, data, 16):
            for rec, out in zip(chunk, engine.generate(prompts, greedy), strict=True):
                text = model.tokenizer.decode(out.token_ids, skip_special_tokens=True)
                pairs.append((rec.problem, rec.problem_type, rec.reasoning, rec.answer, text))
    return score(pairs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", type=Path, nargs="+")
    ap.add_argument("--data", type=Path, default=Path("runs/reproduce-toy/data"))
    ap.add_argument("--split", default="test150.jsonl")
    ap.add_argument("--frames", type=int, default=16)
    args = ap.parse_args()
    print("| model | accuracy | colour / shape / region asked | reads colour / shape / region "
          "| answer = own reasoning | narration unparsed |")
    print("|---|---|---|---|---|---|")
    for path in args.models:
        r = probe(path, args.data, args.split, args.frames)
        asked = " / ".join(f"{r.get(f'acc_{k}', float('nan')):.2f}" for k in KINDS)
        reads = " / ".join(f"{r[f'reads_{k}']:.2f}" for k in KINDS)
        print(f"| {path} | {r['accuracy']:.3f} | {asked} | {reads} | {r['answer_follows_reasoning']:.2f} "
              f"| {int(r['unparsed'])} of {int(r['questions'])} |")


if __name__ == "__main__":
    main()
