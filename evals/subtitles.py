"""Subtitles for the frames a model sees (Video-MME "w/ subs" protocol).

Only the cues that cover a sampled frame are given to the model, never the whole file:
a frame index i (of the video's own frame grid) is covered by a cue when
`int(start * fps) <= i < int(end * fps)`, the rule of lmms-eval's `extract_subtitles`
(cue times truncated to frame numbers). Each cue appears once, in time order (lmms-eval
collects them through a `set`, whose order is only incidentally sorted).

Real Video-MME `.srt` files wrap each line in `<font color="white" size=".72c">...</font>`;
lmms-eval keeps the text inside the first font tag. Here every tag is stripped and a cue's
lines are joined by a space, which gives the same text for those files and also reads plain
SRT (like the synthetic layout's). The parser accepts a BOM, CRLF line ends, "." as the
millisecond separator and missing cue numbers; blocks without a time line are skipped.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

NO_SUBTITLES = "No subtitles available"

_TIME = r"(\d+):(\d{1,2}):(\d{1,2})[,.](\d{1,3})"
_TIME_LINE = re.compile(rf"^\s*{_TIME}\s*-->\s*{_TIME}")
_TAG = re.compile(r"<[^>]+>")


@dataclass(frozen=True)
class Cue:
    start: float  # seconds
    end: float
    text: str


def _seconds(h: str, m: str, s: str, ms: str) -> float:
    return int(h) * 3600 + int(m) * 60 + int(s) + int(ms.ljust(3, "0")) / 1000


def parse_srt(text: str) -> list[Cue]:
    """Cues of an SRT document, in file order (empty-text cues dropped)."""
    text = text.lstrip("\ufeff").replace("\r\n", "\n").replace("\r", "\n")
    cues = []
    for block in re.split(r"\n\s*\n", text):
        lines = [ln for ln in block.split("\n") if ln.strip()]
        for k, line in enumerate(lines):
            m = _TIME_LINE.match(line)
            if m:
                g = m.groups()
                body = " ".join(_TAG.sub("", ln).strip() for ln in lines[k + 1 :]).strip()
                if body:
                    cues.append(Cue(_seconds(*g[:4]), _seconds(*g[4:]), body))
                break
    return cues


def read_srt(path: str | Path) -> list[Cue] | None:
    """Cues of a subtitle file, or None if the video has no subtitle file."""
    path = Path(path)
    if not path.is_file():
        return None
    return parse_srt(path.read_text(encoding="utf-8", errors="replace"))


def cues_for_frames(cues: list[Cue], frame_indices, video_fps: float) -> list[str]:
    """Texts of the cues covering any of the frame indices, each once, in time order."""
    frames = sorted({int(i) for i in frame_indices})
    picked = []
    for cue in sorted(cues, key=lambda c: (c.start, c.end)):
        lo, hi = int(cue.start * video_fps), int(cue.end * video_fps)
        if any(lo <= i < hi for i in frames):
            picked.append(cue.text)
    return picked


def subtitle_block(cues: list[Cue] | None, frame_indices, video_fps: float) -> str:
    """The text put in the prompt: selected cue texts one per line, or NO_SUBTITLES when the
    video has no subtitle file (lmms-eval's fallback). A file whose cues cover none of the
    frames gives an empty block, as in lmms-eval."""
    if cues is None:
        return NO_SUBTITLES
    return "\n".join(cues_for_frames(cues, frame_indices, video_fps))
