"""`harness data split`: the paper's CoT-SFT / RL split of a one-file release.

The paper gives about one third of LongVideo-Reason to CoT-SFT and two thirds to RL (the
authors confirm the shares in NVlabs/Long-RL issue #1; which rows went where was not
released). This splits a records file by video, so no video's questions are in both
stages, with a seeded shuffle of the videos: `sft.jsonl` then takes the first whole videos
of that order whose records come closest to `sft_share` of all, `rl.jsonl` the rest; each
stage gets at least one video. Lines are copied as they are (the released field types
stay as published); a line the recipes would refuse when reading it is left out and listed.
Existing files are never replaced: the input, or a split written before, stops the command.
"""

from __future__ import annotations

import os
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from harness.data.records import SkippedLine, read_jsonl_lines, video_recipe_problem

OUTPUTS = ("sft.jsonl", "rl.jsonl")


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
    _check_paths(source, out)
    by_video: dict[str, list[str]] = defaultdict(list)
    refused: list[SkippedLine] = []
    # The recipes' own reading: what they would refuse (a text record, several videos) stays out.
    for line, rec in read_jsonl_lines(source, skipped=refused, usable=video_recipe_problem):
        by_video[os.path.normpath(rec.videos[0])].append(line)
    summary = SplitSummary(refused=[f"{r.path}:{r.line}: {r.reason}" for r in refused])
    if not by_video:
        raise ValueError(f"{source} holds no readable records")
    if len(by_video) < 2:
        raise ValueError(f"{source}: all its records are about one video ({next(iter(by_video))}); the split "
                         "gives whole videos to each stage, so it needs records of at least 2 videos")
    videos = sorted(by_video)
    order = [videos[i] for i in np.random.default_rng(seed).permutation(len(videos))]
    k = sft_video_count([len(by_video[v]) for v in order], sft_share)
    sft = [line for v in order[:k] for line in by_video[v]]
    rl = [line for v in order[k:] for line in by_video[v]]
    out.mkdir(parents=True, exist_ok=True)
    for name, lines in zip(OUTPUTS, (sft, rl), strict=True):
        tmp = out / f"{name}.tmp"
        tmp.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
        os.replace(tmp, out / name)
    summary.sft, summary.rl = len(sft), len(rl)
    summary.videos = (k, len(videos) - k)
    return summary


def sft_video_count(sizes: list[int], share: float) -> int:
    """How many of the shuffled videos (their record counts `sizes`, at least 2) go to SFT:
    the prefix whose records come closest to `share` of all (the earlier one on a tie),
    leaving at least one video to each stage."""
    target = share * sum(sizes)
    totals = np.cumsum(sizes)[:-1]  # records in SFT when it takes the first 1, 2, ... n-1 videos
    return int(np.argmin(np.abs(totals - target))) + 1


def _check_paths(source: Path, out: Path) -> None:
    """Before anything is read: the input is a file, and no output would replace a file."""
    if source.is_dir():
        raise IsADirectoryError(f"--input {source} is a folder; give the records file itself, e.g. {source}/train.jsonl")
    if not source.is_file():
        raise FileNotFoundError(f"--input {source} does not exist")
    for name in OUTPUTS:
        target = out / name
        if target.exists() and target.resolve() == source.resolve():
            raise FileExistsError(f"--out {out} would overwrite the input {source} with its {name}; "
                                  "choose another --out")
        if target.exists():
            raise FileExistsError(f"{target} already exists (an earlier split?); choose another --out, "
                                  "or remove it first to split again")
