"""Write a split in the official Video-MME local layout, so the VideoMME adapter runs on it.

Layout under `root` (as the lmms-eval / Video-MME loaders expect):
  test-00000-of-00001.parquet  columns video_id, duration, domain, sub_category, url,
                               videoID, question_id, task_type, question, options, answer
  videos/<videoID>.mp4         hard links to the synthetic videos (copies across devices)
  subtitle/<videoID>.srt       one cue per event: its narration, shown from the event's
                               time for up to 2 s (until the next event if that is sooner)

Deviations from the real benchmark: `duration` is by terciles of the requested minutes
range (short: the shortest third of [a, b] minutes, medium, long) instead of <2 / 4-15 /
30-60 minutes; `domain` is "Synthetic", `sub_category` our reasoning category, `url` a
synthetic:// name; subtitles narrate the events instead of transcribing speech.
"""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from harness.data.synthetic.questions import LETTERS, Question
from harness.data.synthetic.scene import Scene

PARQUET_NAME = "test-00000-of-00001.parquet"
CUE_SECONDS = 2.0
SCHEMA = pa.schema([
    ("video_id", pa.string()), ("duration", pa.string()), ("domain", pa.string()),
    ("sub_category", pa.string()), ("url", pa.string()), ("videoID", pa.string()),
    ("question_id", pa.string()), ("task_type", pa.string()), ("question", pa.string()),
    ("options", pa.list_(pa.string())), ("answer", pa.string()),
])
# Real Video-MME task types that fit each kind of question.
TASK_TYPES = {
    "appear_order": "Temporal Reasoning", "count_colour": "Counting Problem",
    "heading": "Action Reasoning", "consequence": "Object Reasoning", "cause": "Object Reasoning",
    "before_leave": "Spatial Reasoning", "appear_region": "Spatial Reasoning",
}
SUB_CATEGORIES = {
    "temporal": "Temporal", "goal": "Goal and Purpose", "plot": "Plot and Narrative",
    "spatial": "Spatial",
}


@dataclass
class VideoItem:
    scene: Scene
    questions: list[Question]
    mp4: Path


def duration_class(seconds: float, minutes: tuple[float, float]) -> str:
    """short / medium / long by which third of the minutes range the length falls in."""
    lo, hi = minutes[0] * 60, minutes[1] * 60
    if hi <= lo:
        return "short"
    third = (hi - lo) / 3
    return "short" if seconds < lo + third else "medium" if seconds < lo + 2 * third else "long"


def srt_time(t: float) -> str:
    ms = int(round(t * 1000))
    h, rest = divmod(ms, 3_600_000)
    m, rest = divmod(rest, 60_000)
    s, ms = divmod(rest, 1000)
    return f"{h:02d}:{m:02d}:{s:02d},{ms:03d}"


def srt_text(scene: Scene) -> str:
    cues = []
    for i, e in enumerate(scene.events):
        nxt = scene.events[i + 1].time if i + 1 < len(scene.events) else scene.duration
        end = min(e.time + CUE_SECONDS, nxt)
        cues.append(f"{i + 1}\n{srt_time(e.time)} --> {srt_time(end)}\n{e.text}\n")
    return "\n".join(cues)


_CUE = re.compile(r"(\d+)\n(\d\d):(\d\d):(\d\d),(\d{3}) --> (\d\d):(\d\d):(\d\d),(\d{3})\n(.+?)(?:\n\n|\n?$)", re.S)


def parse_srt(text: str) -> list[tuple[float, float, str]]:
    """(start s, end s, text) per cue; ValueError if the text is not a sequence of cues."""
    blocks = [b for b in text.strip().split("\n\n") if b.strip()]
    cues = []
    for b in blocks:
        m = _CUE.fullmatch(b.strip())
        if not m:
            raise ValueError(f"malformed SRT cue: {b!r}")
        g = [int(x) for x in m.groups()[1:9]]
        start = g[0] * 3600 + g[1] * 60 + g[2] + g[3] / 1000
        end = g[4] * 3600 + g[5] * 60 + g[6] + g[7] / 1000
        cues.append((start, end, m.group(10)))
    return cues


def write_videomme(root: Path, items: list[VideoItem], minutes: tuple[float, float]) -> Path:
    """Write the layout above for `items` (one numbered video each); returns the parquet path."""
    (root / "videos").mkdir(parents=True, exist_ok=True)
    (root / "subtitle").mkdir(parents=True, exist_ok=True)
    rows: dict[str, list] = {name: [] for name in SCHEMA.names}
    for n, item in enumerate(items, start=1):
        sc, vid = item.scene, f"{n:03d}"
        _link(item.mp4, root / "videos" / f"{sc.video_id}.mp4")
        (root / "subtitle" / f"{sc.video_id}.srt").write_text(srt_text(sc), encoding="utf-8")
        for j, q in enumerate(item.questions, start=1):
            row = {
                "video_id": vid, "duration": duration_class(sc.duration, minutes),
                "domain": "Synthetic", "sub_category": SUB_CATEGORIES[q.category],
                "url": f"synthetic://{sc.video_id}", "videoID": sc.video_id,
                "question_id": f"{vid}-{j}", "task_type": TASK_TYPES[q.kind], "question": q.text,
                "options": [f"{LETTERS[i]}. {o}" for i, o in enumerate(q.options)],
                "answer": q.letter,
            }
            for k, v in row.items():
                rows[k].append(v)
    path = root / PARQUET_NAME
    pq.write_table(pa.table(rows, schema=SCHEMA), path)
    return path


def _link(src: Path, dst: Path) -> None:
    """Hard link (no extra disk); a copy where the filesystem cannot link across devices."""
    dst.unlink(missing_ok=True)
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)
