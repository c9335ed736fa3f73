"""`harness data split`: the paper's CoT-SFT / RL split of a one-file release.

The paper gives about one third of LongVideo-Reason to CoT-SFT and two thirds to RL (the
authors confirm the shares in NVlabs/Long-RL issue #1; which rows went where was not
released). This splits a records file by video, so no video's questions are in both
stages, with a seeded shuffle of the videos: `sft.jsonl` then takes whole videos until it
holds `sft_share` of the records. Lines are copied as they are (the released field types
stay as published); a line the record reader would refuse is left out and listed.
"""

from __future__ import annotations

import os
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from harness.data.records import SkippedLine, read_jsonl_lines


@dataclass
class SplitSummary:
    sft: int = 0
    rl: int = 0
    videos: tuple[int, int] = (0, 0)
    refused: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        lines = [f"sft.jsonl: {self.sft} records ({self.videos[0]} videos); "
                 f"rl.jsonl: {self.rl} records ({self.videos[1]} videos); refused lines: {len(self.refused)}"]
        return "\n".join(lines + [f"  {r}" for r in self.refused[:20]])


def split_release(source: Path, out: Path, sft_share: float = 1 / 3, seed: int = 0) -> SplitSummary:
    if not 0.0 < sft_share < 1.0:
        raise ValueError(f"--sft-share must be in (0, 1), got {sft_share}")
    if not source.is_file():
        raise FileNotFoundError(f"{source} does not exist")
    by_video: dict[str, list[str]] = defaultdict(list)
    refused: list[SkippedLine] = []
    for line, rec in read_jsonl_lines(source, skipped=refused):  # the recipes' own reading
        video = os.path.normpath(rec.videos[0]) if rec.videos else f"<no video: {rec.problem_id}>"
        by_video[video].append(line)
    summary = SplitSummary(refused=[f"{r.path}:{r.line}: {r.reason}" for r in refused])
    if not by_video:
        raise ValueError(f"{source} holds no readable records")
    videos = sorted(by_video)
    order = np.random.default_rng(seed).permutation(len(videos))
    total = sum(len(v) for v in by_video.values())
    sft: list[str] = []
    rl: list[str] = []
    n_sft_videos = 0
    for i in order:
        lines = by_video[videos[i]]
        if len(sft) < sft_share * total:
            sft += lines
            n_sft_videos += 1
        else:
            rl += lines
    out.mkdir(parents=True, exist_ok=True)
    for name, lines in (("sft.jsonl", sft), ("rl.jsonl", rl)):
        tmp = out / f"{name}.tmp"
        tmp.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
        os.replace(tmp, out / name)
    summary.sft, summary.rl = len(sft), len(rl)
    summary.videos = (n_sft_videos, len(videos) - n_sft_videos)
    return summary
