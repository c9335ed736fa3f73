"""Draw a `Scene` with numpy and write it as a real mp4 with PyAV.

Objects are flat shapes, a quarter of the frame's short side, centred in their region of the
scene's grid (3x3; 2x2 at the easy level), on black. Two objects that share a region (only during a touch) are drawn half size
side by side, so both stay visible. The codec is libx264 (crf 12: colours survive yuv420p
well within +-40 per channel) when this PyAV build has it, else mpeg4 at a high bit rate.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from harness.data.synthetic.scene import COLOURS, GRID, Scene, region_rc

BACKGROUND = (0, 0, 0)
OBJECT_SCALE = 0.25  # side of an object / short side of the frame


def pick_codec() -> str:
    """libx264 when this PyAV build has it, else mpeg4; RuntimeError when it has neither."""
    for codec in ("libx264", "mpeg4"):
        if codec in av.codecs_available:
            return codec
    raise RuntimeError("this PyAV build has neither the libx264 nor the mpeg4 encoder")


def shape_mask(shape: str, side: int) -> np.ndarray:
    """Boolean [side, side] mask of a filled square, circle or upward triangle."""
    yy, xx = np.mgrid[0:side, 0:side] + 0.5  # pixel centres
    if shape == "square":
        return np.ones((side, side), dtype=bool)
    if shape == "circle":
        c = side / 2
        return (xx - c) ** 2 + (yy - c) ** 2 <= c**2
    if shape == "triangle":
        return np.abs(xx - side / 2) <= yy / 2  # apex at the top, base along the bottom
    raise ValueError(f"unknown shape {shape!r}")


def object_box(region: str, size: tuple[int, int], slot: int = 0, shared: int = 1,
               grid: int = GRID, scale: float = OBJECT_SCALE) -> tuple[int, int, int]:
    """(x0, y0, side) of an object's square box; `slot` of `shared` objects in one region."""
    width, height = size
    row, col = region_rc(region, grid)
    cell_w, cell_h = width / grid, height / grid
    side = max(int(round(scale * min(width, height))), 2)
    cx, cy = (col + 0.5) * cell_w, (row + 0.5) * cell_h
    if shared > 1:
        side = max(side // 2, 2)
        cx += (slot - (shared - 1) / 2) * cell_w / shared
    return int(round(cx - side / 2)), int(round(cy - side / 2)), side


def render_frame(scene: Scene, t: float, size: tuple[int, int]) -> np.ndarray:
    """RGB uint8 [H, W, 3] picture of the scene at time t."""
    width, height = size
    frame = np.empty((height, width, 3), dtype=np.uint8)
    frame[:] = BACKGROUND
    by_region: dict[str, list[int]] = {}
    for tr in scene.tracks:
        st = tr.state_at(t)
        if st.visible:
            by_region.setdefault(st.region, []).append(tr.id)
    for region, ids in by_region.items():
        for slot, obj in enumerate(sorted(ids)):
            st = scene.state_at(obj, t)
            x0, y0, side = object_box(region, size, slot, len(ids), scene.grid, scene.level.object_scale)
            patch = frame[y0:y0 + side, x0:x0 + side]
            patch[shape_mask(st.shape, side)[: patch.shape[0], : patch.shape[1]]] = COLOURS[st.colour]
    return frame


def render_frames(scene: Scene, size: tuple[int, int]) -> Iterator[np.ndarray]:
    for t in scene.frame_times():
        yield render_frame(scene, float(t), size)


def write_mp4(path: Path, frames: Iterator[np.ndarray], fps: float, size: tuple[int, int], codec: str) -> None:
    """Encode RGB frames to `path` (yuv420p); written to a temporary name, then renamed, so a
    crash never leaves a truncated mp4 behind under the final name."""
    width, height = size
    tmp = path.with_name(path.name + ".tmp")
    with av.open(str(tmp), mode="w", format="mp4") as container:
        stream = container.add_stream(codec, rate=Fraction(fps).limit_denominator(1000))
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.gop_size = 32  # short GOP: seeking to a sampled frame decodes little
        if codec == "libx264":
            stream.options = {"crf": "12", "preset": "veryfast"}
        else:
            stream.bit_rate = 4_000_000
        for img in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    os.replace(tmp, path)


def check_decodable(size: tuple[int, int], fps: float, codec: str) -> None:
    """Write a short clip of this frame size and read it back with the harness's loader:
    some sizes encode fine but decord cannot read them (48x40 with libx264: it rejects the
    frame stride), and a dataset of unreadable videos would only fail when trained on."""
    from harness.data.video import VideoDecodeError, load_video

    width, height = size
    with tempfile.TemporaryDirectory(prefix="harness-size-probe-") as tmp:
        probe = Path(tmp) / "probe.mp4"
        write_mp4(probe, (np.zeros((height, width, 3), np.uint8) for _ in range(8)), fps, size, codec)
        try:
            load_video(probe, 4)
        except VideoDecodeError as err:
            raise ValueError(f"frame size {width}x{height} writes videos the loader (decord) cannot read "
                             f"({err.reason}); choose another --size, e.g. 64x48 or 64x64") from None
