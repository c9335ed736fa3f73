"""Cut a video into clips of a set length and decode a few frames of each clip.

A clip is a time span [start, end); the last clip ends with the video. A tail shorter than
half a clip joins the clip before it: a one-second stub gives the captioner too little to
describe. Frames are spread evenly inside each clip (centres of equal sub-spans), so two
neighbouring clips never share a frame.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from harness.data.build.state import ItemError
from harness.data.video import VideoDecodeError, _decode, _open_reader  # the checked decode path


@dataclass(frozen=True)
class Clip:
    index: int
    start: float  # seconds
    end: float

    @property
    def key(self) -> str:
        return f"{self.start:.3f}-{self.end:.3f}"


def plan_clips(duration: float, clip_seconds: float) -> list[Clip]:
    """Clips covering [0, duration); ValueError for a non-positive length or duration."""
    if not (math.isfinite(clip_seconds) and clip_seconds > 0):
        raise ValueError(f"clip length must be > 0 seconds, got {clip_seconds}")
    if not (math.isfinite(duration) and duration > 0):
        raise ValueError(f"video duration must be > 0 seconds, got {duration}")
    n = max(1, math.ceil(duration / clip_seconds - 1e-9))
    bounds = [min(i * clip_seconds, duration) for i in range(n)] + [duration]
    if n > 1 and bounds[-1] - bounds[-2] < clip_seconds / 2:
        del bounds[-2]
    return [Clip(i, float(bounds[i]), float(bounds[i + 1])) for i in range(len(bounds) - 1)]


def clip_frame_indices(clip: Clip, fps: float, total_frames: int, n: int) -> np.ndarray:
    """int64 [n] frame indices at the centres of n equal sub-spans of the clip."""
    times = clip.start + (np.arange(n) + 0.5) * (clip.end - clip.start) / n  # [n] seconds
    return np.clip(np.floor(times * fps), 0, total_frames - 1).astype(np.int64)


class ClipDecoder:
    """Decodes clips video by video, keeping one video open (decord scans a whole file on
    open, so reopening it per clip would cost a full pass per clip)."""

    def __init__(self) -> None:
        self._path: str | None = None
        self._reader = None

    def frames(self, path: str, clip: Clip, n: int) -> tuple[np.ndarray, np.ndarray]:
        """(uint8 [n, H, W, 3], timestamps float64 [n]); ItemError naming the file if it
        cannot be decoded."""
        try:
            if self._path != path:
                self._reader, self._path = _open_reader(path), path
            fps = float(self._reader.get_avg_fps())
            idx = clip_frame_indices(clip, fps, len(self._reader), n)  # [n]
            return _decode(self._reader, path, idx), idx / fps
        except VideoDecodeError as err:
            self._path = self._reader = None
            raise ItemError(str(err)) from err
