"""Do a model's video embeddings carry the basic level's answers? A linear probe.

    python -m reproduce.probe_embeddings MODEL_DIR [--data DIR] [--split rl.jsonl] [--videos 900]

For each basic-level video (one object: colour, shape, region), the embeddings the LLM
receives are max-pooled over frames per token position ([T, D] -> T*D features), and a
multinomial logistic regression per attribute is fitted on 70 % of the videos and scored on
the rest. Held-out probe accuracy near 1 means the answer is in the features and a model
that fails the question fails to *read* it (measured: reproduce/LOG.md).
"""

from __future__ import annotations

import argparse
import collections
from pathlib import Path

import torch

KINDS = ("colour", "shape", "region")


def question_kind(question: str) -> str:
    return "region" if "Where" in question else "colour" if "colour" in question else "shape"


def probe(model_dir: Path, data_dir: Path, split: str = "rl.jsonl", frames: int = 16, videos: int = 900,
          steps: int = 300, seed: int = 0) -> dict[str, float]:
    """Held-out linear-probe accuracy per attribute (colour, shape, region)."""
    from harness.data.dataset import QADataset, SkipLedger
    from harness.model.build import load_model

    torch.manual_seed(seed)
    model = load_model(model_dir).eval()
    data = QADataset(data_dir / split, frames, SkipLedger(1.0))
    by_video: dict[str, dict] = collections.defaultdict(dict)
    for rec in data.records:
        by_video[rec.videos[0]][question_kind(rec.problem)] = rec
    feats, labels = [], collections.defaultdict(list)
    for questions in list(by_video.values())[:videos]:
        if set(questions) != set(KINDS):
            continue
        clip = data.load_frames(questions["colour"])
        with torch.no_grad():
            embeds = model.encode_frames(clip.frames, clip.timestamps).embeds  # [F, T, D]
        feats.append(embeds.amax(0).flatten())  # [T*D]
        for kind in KINDS:
            labels[kind].append(questions[kind].answer)
    if len(feats) < 4:
        raise ValueError(f"{data_dir / split}: fewer than 4 basic-level videos with all three questions")
    x = torch.stack(feats)  # [N, T*D]
    x = (x - x.mean(0)) / (x.std(0) + 1e-6)
    cut = int(len(x) * 0.7)
    out = {}
    for kind in KINDS:
        classes = sorted(set(labels[kind]))
        y = torch.tensor([classes.index(a) for a in labels[kind]])  # [N]
        w = torch.zeros(x.shape[1], len(classes), requires_grad=True)
        b = torch.zeros(len(classes), requires_grad=True)
        opt = torch.optim.Adam([w, b], lr=1e-2)
        for _ in range(steps):
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(x[:cut] @ w + b, y[:cut]) + 1e-3 * w.pow(2).sum()
            loss.backward()
            opt.step()
        with torch.no_grad():
            out[kind] = float(((x[cut:] @ w + b).argmax(1) == y[cut:]).float().mean())
    out["videos_held_out"] = float(len(x) - cut)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", type=Path)
    ap.add_argument("--data", type=Path, default=Path("runs/reproduce-toy/data"))
    ap.add_argument("--split", default="rl.jsonl")
    ap.add_argument("--videos", type=int, default=900)
    args = ap.parse_args()
    result = probe(args.model, args.data, args.split, videos=args.videos)
    for kind in KINDS:
        print(f"{kind}: held-out probe accuracy {result[kind]:.3f}")
    print(f"({int(result['videos_held_out'])} held-out videos)")


if __name__ == "__main__":
    main()
