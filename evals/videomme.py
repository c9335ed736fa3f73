"""Video-MME (900 videos, 2,700 four-option questions; short / medium / long).

Data: the official release (github.com/MME-Benchmarks/Video-MME, or the Hugging Face
dataset lmms-lab/Video-MME), laid out under one folder:

    <root>/videomme/test-00000-of-00001.parquet   (or <root>/*.parquet, or a .json list: flat
                                  rows, or the owners' one object per video with `questions`)
    <root>/data/<videoID>.mp4  or  <root>/videos/<videoID>.mp4   (.MP4 and .mkv too: the
                                  release's zips hold all three, as lmms-eval's loader knows)
    <root>/subtitle/<videoID>.srt                 (744 of 900 videos have one)

Question fields: video_id, duration, domain, sub_category, url, videoID, question_id,
task_type, question, options (already "A. ..." lines), answer (a letter).
`harness data synth --format videomme` writes this layout with synthetic videos.

Prompt (the Video-MME repo's, as docs/reference.md quotes it); with subtitles the block lists
only the cues covering the sampled frames (evals/subtitles.py), or "No subtitles available"
when the video has no .srt (counted as `no_subtitles`). Scores: accuracy overall and by
duration, domain and task type.
"""

from __future__ import annotations

import json
from pathlib import Path

from evals.base import Benchmark, Item, find_video, need, read_parquet

INSTRUCTION = (
    "Select the best answer to the following multiple-choice question based on the video. "
    "Respond with only the letter (A, B, C, or D) of the correct option."
)
SUBTITLE_HEAD = "This video's subtitles are listed below:"
POST = "The best answer is:"


class VideoMME(Benchmark):
    name = "videomme"
    version = "videomme-v1"
    source = "lmms-lab/Video-MME: videomme/*.parquet, data/ or videos/<videoID>.mp4, subtitle/<videoID>.srt"
    breakdowns = ("duration", "domain", "task_type")
    supports_subtitles = True

    def load(self, root: Path) -> list[Item]:
        root = Path(root)
        rows = _read_questions(root)
        video_dirs = [root / d for d in ("data", "videos") if (root / d).is_dir()] or [root / "videos"]
        items = []
        for r in rows:
            where = f"{root} question {r.get('question_id')!r}"
            vid = str(need(r, "videoID", where))
            options = [str(o) for o in need(r, "options", where)]
            items.append(Item(
                qid=str(need(r, "question_id", where)), video=find_video(video_dirs, vid, (".mp4", ".MP4", ".mkv")),
                question=str(need(r, "question", where)), options=options,
                answer=str(need(r, "answer", where)).strip(),
                fields={k: str(r.get(k, "unknown")) for k in self.breakdowns},
                subtitle=root / "subtitle" / f"{vid}.srt",
            ))
        return items

    def prompt(self, item: Item, subtitles: str | None = None) -> str:
        head = f"{SUBTITLE_HEAD}\n{subtitles}\n" if subtitles is not None else ""
        options = "\n".join(item.options)  # already lettered in the release
        return f"{head}{INSTRUCTION}\n{item.question}\n{options}\n{POST}"

    def probe_item(self) -> Item:
        item = super().probe_item()
        item.options = [f"{chr(65 + i)}. {o}" for i, o in enumerate(item.options)]
        return item


def _read_questions(root: Path) -> list[dict]:
    if not root.is_dir():
        raise FileNotFoundError(f"Video-MME folder {root} does not exist")
    files = sorted(root.glob("*.parquet")) + sorted(root.glob("videomme/*.parquet"))
    if files:
        return read_parquet(files)
    files = sorted(root.glob("*.json")) + sorted(root.glob("videomme/*.json"))
    if files:
        return [q for f in files for r in json.loads(f.read_text(encoding="utf-8")) for q in _flat(r)]
    raise FileNotFoundError(
        f"no Video-MME questions under {root}: expected videomme/test-00000-of-00001.parquet "
        f"(or *.parquet / *.json at the top)"
    )


def _flat(entry: dict) -> list[dict]:
    """The owners' own JSON (BradyFU/Video-MME README) holds one object per video, with
    `duration_category`, `video_category`, `video_sub_category`, `url` and its `questions`
    ({question_id, task_type, question, choices, answer}); rows of the lmms-lab release
    are flat already. Choices without their "A. " labels get them."""
    if "questions" not in entry:
        return [entry]
    url = str(entry.get("url", ""))
    vid = url.split("v=", 1)[1].split("&", 1)[0] if "v=" in url else str(entry.get("videoID") or entry.get("video_id"))
    rows = []
    for q in entry["questions"]:
        choices = [str(c) for c in (q.get("options") or q.get("choices") or [])]
        labelled = [c if c[:3] == f"{chr(65 + i)}. " else f"{chr(65 + i)}. {c}" for i, c in enumerate(choices)]
        rows.append({
            "video_id": entry.get("video_id"), "videoID": vid, "url": url,
            "duration": entry.get("duration_category", entry.get("duration")),
            "domain": entry.get("video_category", entry.get("domain")),
            "sub_category": entry.get("video_sub_category", entry.get("sub_category")),
            "question_id": q.get("question_id"), "task_type": q.get("task_type"),
            "question": q.get("question"), "options": labelled, "answer": q.get("answer"),
        })
    return rows
