"""Find the videos under a folder and check that each one decodes.

Files are matched by extension (case-insensitive), recursively, hidden files and folders
left out. Each candidate is probed with decord (open + first frame); one that cannot be
read (a symlink that is broken or loops included) is skipped with the reason, and AVI files
are skipped outright because decord 0.6 seeks them wrongly (harness/data/video.py): remux
them to mp4 first. Probe results are cached in the build's work folder keyed by path, size
and mtime, so a rerun over thousands of videos does not open them all again.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from harness.data.build.state import StageState, input_sha
from harness.data.video import VideoDecodeError, probe_video, unreachable_reason

VIDEO_EXTENSIONS = {".mp4", ".mkv", ".mov", ".webm", ".m4v", ".ts", ".mpg", ".mpeg", ".flv"}
REFUSED_EXTENSIONS = {".avi": "AVI: decord 0.6 seeks AVI files wrongly; remux to mp4 (ffmpeg -i x.avi -c copy x.mp4)"}


@dataclass(frozen=True)
class VideoEntry:
    video_id: str  # from the relative path: "trips/day1.mp4" -> "trips__day1"
    path: Path  # absolute
    rel: str  # relative to the videos folder
    fps: float
    total_frames: int
    duration: float  # seconds
    fingerprint: str  # size + mtime: changes when the file does


@dataclass
class ScanResult:
    videos: list[VideoEntry]
    skipped: dict[str, str]  # relative path -> reason
    ignored: int  # files with other extensions (not videos)


def _video_id(rel: Path, taken: set[str]) -> str:
    vid = re.sub(r"[^A-Za-z0-9._-]+", "_", "__".join(rel.with_suffix("").parts))
    if vid in taken:  # a.mp4 next to a.mkv
        vid = re.sub(r"[^A-Za-z0-9._-]+", "_", "__".join(rel.parts))
    return vid


def _candidates(root: Path) -> tuple[list[Path], int]:
    found, ignored = [], 0
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root)
        # A link that leads nowhere (broken, or a loop) stays a candidate: the scan says why it is skipped.
        leads_nowhere = p.is_symlink() and not p.exists()
        if any(part.startswith(".") for part in rel.parts) or not (p.is_file() or leads_nowhere):
            continue
        if p.suffix.lower() in VIDEO_EXTENSIONS or p.suffix.lower() in REFUSED_EXTENSIONS:
            found.append(p)
        else:
            ignored += 1
    return found, ignored


def scan_videos(root: str | Path, state: StageState, *, progress: bool = True) -> ScanResult:
    """Every decodable video under `root`, sorted by relative path; FileNotFoundError if
    `root` is not a folder."""
    root = Path(root).resolve()
    if not root.is_dir():
        raise FileNotFoundError(f"videos folder {root} does not exist")
    paths, ignored = _candidates(root)
    result = ScanResult([], {}, ignored)
    taken: set[str] = set()
    for p in tqdm(paths, desc="scan", unit="video", disable=not progress):
        rel = p.relative_to(root)
        if p.suffix.lower() in REFUSED_EXTENSIONS:
            result.skipped[str(rel)] = REFUSED_EXTENSIONS[p.suffix.lower()]
            continue
        try:
            st = p.stat()
        except OSError as err:
            result.skipped[str(rel)] = unreachable_reason(p, err)
            continue
        fingerprint = f"{st.st_size}-{st.st_mtime_ns}"
        sha = input_sha("probe", fingerprint)
        info = state.get(str(rel), sha)
        if info is None:
            try:
                v = probe_video(p)
                info = {"fps": v.fps, "total_frames": v.total_frames, "duration": v.duration}
            except VideoDecodeError as err:
                info = {"error": err.reason}
            state.record(str(rel), sha, info)
        if "error" in info:
            result.skipped[str(rel)] = info["error"]
            continue
        vid = _video_id(rel, taken)
        taken.add(vid)
        result.videos.append(VideoEntry(vid, p, str(rel), info["fps"], info["total_frames"],
                                        info["duration"], fingerprint))
    return result
