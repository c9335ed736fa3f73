"""Split the kept questions by video into CoT-SFT / RL / eval record files.

By video, so no video's questions leak from training into eval. The paper puts about one
third of LongVideo-Reason into CoT-SFT and two thirds into RL and evaluates on a separate
1K-question set; the default here (0.3 / 0.6 / 0.1) keeps that ratio and holds out an
eval split from the same videos pool. Records follow harness.data.records (validated on
write); `videos` are paths relative to the output folder, as the record format wants.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from harness.data.build.filters import Candidate
from harness.data.build.parse import LETTERS
from harness.data.build.scan import VideoEntry
from harness.data.records import Record, write_jsonl
from harness.data.synthetic.dataset import split_videos

SPLITS = ("sft", "rl", "eval")


def parse_fractions(text: str) -> tuple[float, float, float]:
    """"0.3,0.6,0.1" -> (0.3, 0.6, 0.1); ValueError unless 3 fractions in [0, 1] summing to 1."""
    try:
        parts = tuple(float(p) for p in text.split(","))
    except ValueError:
        parts = ()
    if len(parts) != 3 or any(not 0 <= p <= 1 for p in parts) or abs(sum(parts) - 1) > 1e-6:
        raise ValueError(f"--split must be three fractions sft,rl,eval summing to 1, got {text!r}")
    return parts  # type: ignore[return-value]


def to_record(c: Candidate, video: VideoEntry, out_dir: Path, meta: dict[str, Any]) -> Record:
    q = c.question
    lines = [q.question] + [f"{LETTERS[i]}. {o}" for i, o in enumerate(q.options)]
    return Record(
        problem_id=c.problem_id, data_type="video",
        videos=[os.path.relpath(video.path, out_dir)], problem="\n".join(lines),
        problem_type="multiple choice", answer=f"<answer>{q.letter}</answer>",
        reasoning=q.reasoning, category=q.category, options=list(q.options),
        video_id=video.video_id, duration=round(video.duration, 3),
        extra={"build": {**meta, "repairs": list(q.repairs)}},
    )


def write_splits(cands: list[Candidate], videos: dict[str, VideoEntry], out_dir: Path,
                 fractions: tuple[float, float, float], seed: int,
                 meta: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Write sft.jsonl / rl.jsonl / eval.jsonl; returns per split its path, videos and
    questions. Videos without any kept question take no part in the split."""
    with_questions = sorted({c.video_id for c in cands})
    members = split_videos(len(with_questions), seed, fractions) if with_questions else [[], [], []]
    out: dict[str, dict[str, Any]] = {}
    for name, idx in zip(SPLITS, members, strict=True):
        chosen = {with_questions[i] for i in idx}
        recs = [to_record(c, videos[c.video_id], out_dir, meta)
                for c in sorted(cands, key=lambda c: c.problem_id) if c.video_id in chosen]
        path = out_dir / f"{name}.jsonl"
        write_jsonl(path, recs)
        out[name] = {"path": str(path), "videos": len(chosen), "questions": len(recs)}
    return out
