"""Does a trained toy model use the video? Held-out accuracy with the real frames, with the
frames replaced by noise, and with another question's video (a derangement within the split).

    python reproduce/toy_video_ablation.py MODEL_DIR DATA_DIR [--split test.jsonl] [--frames 16]

A model that reads the video is clearly better with real frames than with noise or with the
wrong video; a model that only learned the wording scores the same on all three.
"""

from __future__ import annotations

import argparse
import dataclasses
import json

import numpy as np
import torch

from harness.data.dataset import QADataset, SkipLedger
from harness.model.build import load_model
from harness.trainer.evaluate import evaluate_accuracy


class _Swapped:
    """A dataset view whose `load_frames` returns other pixels for the same questions."""

    def __init__(self, base: QADataset, mode: str, seed: int = 0):
        self.base, self.mode = base, mode
        self.records = base.records
        self.rng = np.random.default_rng(seed)
        n = len(base.records)
        videos = [r.video_id for r in base.records]
        perm = self.rng.permutation(n)
        for _ in range(100):  # a permutation that never keeps a question's own video
            if all(videos[i] != videos[perm[i]] for i in range(n)):
                break
            perm = self.rng.permutation(n)
        self.other = {r.problem_id: base.records[int(j)] for r, j in zip(base.records, perm, strict=True)}

    def load_frames(self, record):
        if self.mode == "other":
            clip = self.base.load_frames(self.other[record.problem_id])
            return clip if clip is None else dataclasses.replace(clip)
        clip = self.base.load_frames(record)
        if clip is None:
            return None
        noise = self.rng.integers(0, 256, clip.frames.shape, dtype=np.uint8)
        return dataclasses.replace(clip, frames=noise)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model")
    ap.add_argument("data")
    ap.add_argument("--split", default="test.jsonl")
    ap.add_argument("--frames", type=int, default=16)
    ap.add_argument("--max-new-tokens", type=int, default=160)
    args = ap.parse_args()
    torch.manual_seed(0)
    model = load_model(args.model).eval()
    data = QADataset(f"{args.data}/{args.split}", args.frames, SkipLedger(0.1))
    out = {}
    with torch.no_grad():
        for name, ds in (("real", data), ("noise", _Swapped(data, "noise")), ("other", _Swapped(data, "other"))):
            r = evaluate_accuracy(model, ds, args.max_new_tokens)
            out[name] = {k.removeprefix("eval/"): round(v, 3) for k, v in r.items()}
            print(name, json.dumps(out[name]), flush=True)


if __name__ == "__main__":
    main()
