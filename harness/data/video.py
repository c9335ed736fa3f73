"""Video decoding, frame sampling, resizing and patchifying for both model families.

Contract:
- `sample_frame_indices` picks frame indices (uniform N, or at a given fps) and never touches a file.
- `load_video` / `probe_video` decode with decord on the CPU. A missing, empty, truncated or
  undecodable file raises `VideoDecodeError` naming the path and the reason; there is no
  fallback to black or repeated frames (the authors' code silently turned failed reads into a
  black video, docs/reference.md pitfall 5).
- `preprocess_siglip` (VILA family) and `patchify_qwen` (Qwen2-VL / Qwen2.5-VL family) turn
  uint8 frames into the float tensors the vision towers take, using torch only (no torchvision:
  its registry builds break CPU torch, docs/design.md, "This machine kind").

Known decord limitation (0.6.0): random access into AVI files returns wrong frames (seeking
lands near the start). MP4, MKV and MPEG-TS seek correctly. Remux AVI to MP4 before use.
"""

from __future__ import annotations

import errno
import math
import os
import stat
from dataclasses import dataclass
from pathlib import Path

import decord
import numpy as np
import torch
import torch.nn.functional as F

from harness.errors import HarnessError

MAX_FRAMES = 8192  # the paper's inference limit; also the largest N the sampler accepts

# OpenAI CLIP statistics, used by Qwen2-VL's image processor.
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
# Qwen2-VL image processor defaults (transformers: size shortest_edge / longest_edge).
QWEN_MIN_PIXELS = 56 * 56
QWEN_MAX_PIXELS = 28 * 28 * 1280

# Frames are resized in chunks so that the float copy of full-resolution frames stays small
# (8192 frames of 720p as float32 would be ~90 GB at once).
_RESIZE_CHUNK = 32


class TooFewFrames(ValueError):
    """A video shorter than the frames a sampler must take from it."""


class VideoDecodeError(HarnessError, RuntimeError):
    """A video could not be read. The message names the path and the reason."""

    def __init__(self, path: str | Path, reason: str) -> None:
        super().__init__(f"cannot decode video {str(path)!r}: {reason}")
        self.path = str(path)
        self.reason = reason


@dataclass(frozen=True)
class VideoInfo:
    """Container-level facts about a video (`duration` = total_frames / fps, in seconds)."""

    path: str
    fps: float
    total_frames: int
    duration: float
    width: int
    height: int


@dataclass(frozen=True, eq=False)  # eq=False: numpy fields make dataclass equality ambiguous
class VideoClip:
    """Decoded frames of one video and where they came from.

    frames: uint8 RGB [N, H, W, 3]; indices: int64 [N] (sorted, may repeat when N > total);
    timestamps: float64 seconds [N] = indices / video_fps (the nominal time; for variable frame
    rate files this is still the convention eval adapters use to map frames to subtitles).
    """

    frames: np.ndarray  # [N, H, W, 3] uint8
    indices: np.ndarray  # [N] int64
    timestamps: np.ndarray  # [N] float64
    video_fps: float
    total_frames: int
    duration: float
    path: str

    @property
    def frame_seconds(self) -> float:
        """Seconds of video each sampled frame stands for (duration / frames): the spacing
        Qwen's video pipeline gives the model's time axis (qwen-vl-utils: temporal patch /
        sample fps, with sample fps = frames / total frames x video fps)."""
        return self.duration / len(self.frames)


# ----------------------------------------------------------------------------- sampling


def _check_count(name: str, value: object, upper: int = MAX_FRAMES) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be an int, got {value!r}")
    if not 1 <= int(value) <= upper:
        raise ValueError(f"{name} must be in [1, {upper}], got {value}")
    return int(value)


def _check_rate(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
        raise ValueError(f"{name} must be a number, got {value!r}")
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be finite and > 0, got {value}")
    return float(value)


def _uniform_indices(total: int, n: int) -> np.ndarray:
    if n > total:
        # More frames asked than exist: the model's token budget is fixed at N frames, so we
        # still return N, repeating each frame floor(N/total) or ceil(N/total) times, in order.
        return (np.arange(n, dtype=np.int64) * total) // n
    # lmms-eval (Video-MME adapter and its decord loaders) uses exactly this expression,
    # i.e. truncation toward zero, so subtitles chosen from these indices match theirs.
    idx = np.linspace(0, total - 1, n, dtype=np.int64)
    # With n <= total the step is >= 1 so the values are distinct in exact arithmetic; guard
    # against float rounding anyway.
    return _separate(idx, total)


def _separate(idx: np.ndarray, total: int) -> np.ndarray:
    """Sorted int64 [n] in [0, total), n <= total -> strictly increasing, each moved minimally.

    idx is strictly increasing iff idx - k is non-decreasing: push collisions forward (running
    max), then cap so the last index stays below total.
    """
    k = np.arange(len(idx), dtype=np.int64)
    shifted = np.minimum(np.maximum.accumulate(idx - k), total - len(idx))  # [n]
    return shifted + k


def sample_frame_indices(
    total_frames: int,
    num_frames: int | None = None,
    *,
    video_fps: float | None = None,
    sample_fps: float | None = None,
) -> np.ndarray:
    """Frame indices to decode, int64 [N], sorted, all in [0, total_frames).

    Uniform mode (`sample_fps` is None): exactly `num_frames` indices,
    `np.linspace(0, total_frames - 1, num_frames, dtype=int)` as lmms-eval computes them
    (truncation, not rounding), unique whenever num_frames <= total_frames; when
    num_frames > total_frames every frame is repeated evenly (fixed token budget).

    Fps mode (`sample_fps` given, `video_fps` required): one index per time k / sample_fps
    inside the video, index = floor(time * video_fps). `num_frames`, if given, caps the count:
    when more times fall inside the video, `num_frames` of them are taken uniformly.
    Sampling faster than the video's own fps repeats frames.

    Raises ValueError for total_frames < 1, num_frames outside [1, 8192], rates <= 0.
    """
    if isinstance(total_frames, bool) or not isinstance(total_frames, (int, np.integer)):
        raise ValueError(f"total_frames must be an int, got {total_frames!r}")
    if total_frames < 1:
        raise ValueError(f"total_frames must be >= 1, got {total_frames}")
    total = int(total_frames)

    if sample_fps is None:
        if num_frames is None:
            raise ValueError("give num_frames (uniform sampling) or sample_fps (fps sampling)")
        return _uniform_indices(total, _check_count("num_frames", num_frames))

    sample_fps = _check_rate("sample_fps", sample_fps)
    if video_fps is None:
        raise ValueError("fps sampling needs video_fps (the video's own frame rate)")
    video_fps = _check_rate("video_fps", video_fps)
    cap = MAX_FRAMES if num_frames is None else _check_count("num_frames", num_frames)

    # Times k / sample_fps strictly before the end (total / video_fps seconds).
    count = max(1, math.ceil(total * sample_fps / video_fps - 1e-9))
    k = np.arange(count, dtype=np.float64)
    # The tiny epsilon keeps exact multiples (e.g. 30 / 0.3 = 99.999...) on the right frame.
    idx = np.floor(k * video_fps / sample_fps + 1e-6).astype(np.int64)
    idx = np.clip(idx, 0, total - 1)
    if count > cap:
        idx = idx[_uniform_indices(count, cap)]
    return idx


# qwen-vl-utils' video frame count (QwenLM/Qwen2.5-VL qwen-vl-utils vision_process.py)
QWEN_FPS = 2.0
QWEN_MIN_FRAMES = 4
QWEN_MAX_FRAMES = 768
QWEN_FRAME_FACTOR = 2
SAMPLERS = ("uniform", "qwen")


def qwen_frame_indices(total_frames: int, video_fps: float, *, nframes: int | None = None,
                       fps: float | None = None, max_frames: int = QWEN_MAX_FRAMES) -> np.ndarray:
    """Frame indices as qwen-vl-utils' `smart_nframes` + its readers pick them.

    With `nframes`: that count rounded to a multiple of 2. Else `fps` (default 2.0) times
    the duration, clamped to [4, min(max_frames, total)] and floored to a multiple of 2.
    Indices `linspace(0, total - 1, n)` rounded (not truncated, unlike lmms-eval's).
    Raises ValueError when the count is below 2 (a setting) and TooFewFrames when it is above
    `total_frames` (the video), as qwen-vl-utils refuses both.
    """
    f = QWEN_FRAME_FACTOR
    if nframes is not None:
        n = round(nframes / f) * f
    else:
        rate = QWEN_FPS if fps is None else _check_rate("fps", fps)
        lo = math.ceil(QWEN_MIN_FRAMES / f) * f
        hi = math.floor(min(max_frames, total_frames) / f) * f
        n = min(max(total_frames / video_fps * rate, lo), hi, total_frames)
        n = math.floor(n / f) * f
    if n < f:
        raise ValueError(f"qwen frame sampling needs at least {f} frames, got {n}")
    if n > total_frames:
        raise TooFewFrames(f"the video has {total_frames} frames; qwen frame sampling takes {n}")
    return torch.linspace(0, total_frames - 1, n).round().long().numpy()


# ----------------------------------------------------------------------------- decoding


def _open_reader(path: str | Path) -> decord.VideoReader:
    p = Path(path)
    try:
        st = p.stat()
    except OSError as err:
        raise VideoDecodeError(path, unreachable_reason(p, err)) from None
    if not stat.S_ISREG(st.st_mode):
        raise VideoDecodeError(path, "not a regular file")
    if st.st_size == 0:
        raise VideoDecodeError(path, "file is empty (0 bytes)")
    try:
        # decord scans every packet on open, so most truncations already fail here.
        reader = decord.VideoReader(str(p), ctx=decord.cpu(0))
    except (RuntimeError, decord.DECORDError) as err:  # DECORDError is not a RuntimeError
        raise VideoDecodeError(path, f"decord could not open it ({_first_line(err)})") from err
    if len(reader) < 1:
        raise VideoDecodeError(path, "no video frames")
    fps = reader.get_avg_fps()
    if not (math.isfinite(fps) and fps > 0):
        raise VideoDecodeError(path, f"invalid frame rate {fps!r}")
    return reader


def unreachable_reason(p: Path, err: OSError) -> str:
    """Why a video path leads to no file, said as it is: a link that points nowhere or in a
    circle is not a missing file, and the fix differs."""
    if err.errno == errno.ELOOP:
        return "a symlink loop (too many levels of symbolic links); point the link at the video file"
    if err.errno == errno.ENOENT and p.is_symlink():
        return f"a broken symlink: its target {os.readlink(p)} does not exist"
    if err.errno in (errno.ENOENT, errno.ENOTDIR):
        return "file not found"
    return f"cannot be read ({err.strerror})"


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def _decode(reader: decord.VideoReader, path: str | Path, indices: np.ndarray) -> np.ndarray:
    """uint8 [len(indices), H, W, 3] for the given sorted indices; decodes each frame once."""
    unique, inverse = np.unique(indices, return_inverse=True)
    try:
        batch = reader.get_batch(unique.tolist())
    except (RuntimeError, IndexError, decord.DECORDError) as err:
        raise VideoDecodeError(
            path, f"decoding frames failed ({_first_line(err)}); truncated or corrupt file?"
        ) from err
    # Another part of a program may have switched decord's global bridge to torch.
    frames = batch.numpy() if isinstance(batch, torch.Tensor) else batch.asnumpy()
    if (
        frames.dtype != np.uint8
        or frames.ndim != 4
        or frames.shape[0] != len(unique)
        or frames.shape[3] != 3
    ):
        raise VideoDecodeError(
            path,
            f"decoder returned {frames.dtype} {tuple(frames.shape)}, expected uint8 "
            f"[{len(unique)}, H, W, 3]; truncated or corrupt file?",
        )
    if frames.shape[1] < 1 or frames.shape[2] < 1:
        raise VideoDecodeError(path, f"decoder returned empty frames {tuple(frames.shape)}")
    return frames[inverse]  # [N, H, W, 3]


def probe_video(path: str | Path) -> VideoInfo:
    """fps, frame count, duration and size of a video; decodes its first frame as a check."""
    reader = _open_reader(path)
    first = _decode(reader, path, np.zeros(1, dtype=np.int64))  # [1, H, W, 3]
    fps = float(reader.get_avg_fps())
    total = len(reader)
    return VideoInfo(
        path=str(path),
        fps=fps,
        total_frames=total,
        duration=total / fps,
        width=int(first.shape[2]),
        height=int(first.shape[1]),
    )


def load_video(
    path: str | Path,
    num_frames: int | None = None,
    *,
    sample_fps: float | None = None,
    max_frames: int = MAX_FRAMES,
    sampler: str = "uniform",
) -> VideoClip:
    """Decode the sampled frames of a video (see `sample_frame_indices` for the two modes).

    Uniform mode: `num_frames` frames (num_frames <= max_frames). Fps mode: frames at
    `sample_fps`, at most `num_frames` if given, else at most `max_frames`.
    `sampler="qwen"` picks them as Qwen's video pipeline does (`qwen_frame_indices`:
    `num_frames` rounded to even, or `sample_fps` with `num_frames` as the cap).
    Raises ValueError for bad arguments (before opening the file) and VideoDecodeError for
    any file that cannot be decoded completely.
    """
    max_frames = _check_count("max_frames", max_frames)
    if num_frames is not None and _check_count("num_frames", num_frames) > max_frames:
        raise ValueError(f"num_frames={num_frames} exceeds max_frames={max_frames}")
    if sample_fps is None and num_frames is None:
        raise ValueError("give num_frames (uniform sampling) or sample_fps (fps sampling)")
    if sample_fps is not None:
        _check_rate("sample_fps", sample_fps)
    if sampler not in SAMPLERS:
        raise ValueError(f"frame sampler {sampler!r} is not one of {SAMPLERS}")

    reader = _open_reader(path)
    fps = float(reader.get_avg_fps())
    total = len(reader)
    if sampler == "qwen":
        cap = QWEN_MAX_FRAMES if num_frames is None else num_frames
        try:
            indices = (qwen_frame_indices(total, fps, nframes=num_frames) if sample_fps is None
                       else qwen_frame_indices(total, fps, fps=sample_fps, max_frames=cap))
        except TooFewFrames as err:  # the video's fault: a counted skip, like an unreadable one
            raise VideoDecodeError(path, str(err)) from None
    elif sample_fps is None:
        indices = sample_frame_indices(total, num_frames)
    else:
        cap = max_frames if num_frames is None else num_frames
        indices = sample_frame_indices(total, cap, video_fps=fps, sample_fps=sample_fps)
    frames = _decode(reader, path, indices)  # [N, H, W, 3]
    return VideoClip(
        frames=frames,
        indices=indices,
        timestamps=indices.astype(np.float64) / fps,  # [N]
        video_fps=fps,
        total_frames=total,
        duration=total / fps,
        path=str(path),
    )


# ----------------------------------------------------------------------------- resizing


def _as_uint8_frames(frames: np.ndarray | torch.Tensor) -> torch.Tensor:
    src = torch.as_tensor(frames)
    if src.dtype != torch.uint8 or src.ndim != 4 or src.shape[-1] != 3 or 0 in src.shape:
        raise ValueError(f"expected uint8 frames [N, H, W, 3], got {src.dtype} {tuple(src.shape)}")
    return src


def resize_uint8(frames: np.ndarray | torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Bicubic antialiased resize of uint8 [N, H, W, 3] to float [N, 3, height, width] in [0, 255].

    The result is clamped and rounded to integers: the reference processors (PIL, and
    torchvision on uint8) resize uint8 images and produce uint8, so we match their grid.
    """
    src = _as_uint8_frames(frames)  # [N, H, W, 3]
    n, h, w, _ = src.shape
    out = torch.empty(n, 3, height, width, dtype=torch.float32)  # [N, 3, height, width]
    for start in range(0, n, _RESIZE_CHUNK):
        chunk = src[start : start + _RESIZE_CHUNK].permute(0, 3, 1, 2).float()  # [n, 3, H, W]
        if (h, w) != (height, width):
            chunk = (
                F.interpolate(
                    chunk, size=(height, width), mode="bicubic", align_corners=False, antialias=True
                )
                .clamp_(0, 255)
                .round_()
            )  # [n, 3, height, width]
        out[start : start + len(chunk)] = chunk
    return out


def normalize_pixels(x: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...]) -> torch.Tensor:
    """[N, 3, H, W] in [0, 255] -> (x / 255 - mean) / std per channel."""
    m = torch.tensor(mean, dtype=x.dtype).view(1, -1, 1, 1)
    s = torch.tensor(std, dtype=x.dtype).view(1, -1, 1, 1)
    return (x / 255.0 - m) / s


def pad_to_square(frames: np.ndarray | torch.Tensor, fill: tuple[int, int, int]) -> torch.Tensor:
    """uint8 [N, H, W, 3] -> uint8 [N, M, M, 3], M = max(H, W): the frame centred on a
    `fill`-coloured square, offset (M - side) // 2 (VILA's `expand2square`, mm_utils.py)."""
    src = _as_uint8_frames(frames)  # [N, H, W, 3]
    n, h, w, _ = src.shape
    m = max(h, w)
    out = torch.empty(n, m, m, 3, dtype=torch.uint8)
    out[:] = torch.tensor(fill, dtype=torch.uint8)
    top, left = (m - h) // 2, (m - w) // 2
    out[:, top : top + h, left : left + w] = src
    return out


def preprocess_siglip(
    frames: np.ndarray | torch.Tensor,
    image_size: int,
    mean: tuple[float, ...] = (0.5, 0.5, 0.5),
    std: tuple[float, ...] = (0.5, 0.5, 0.5),
    pad_square: bool = False,
) -> torch.Tensor:
    """uint8 [N, H, W, 3] -> float32 [N, 3, S, S] as SigLIP's image processor does.

    Resize to S x S ignoring aspect ratio (bicubic), rescale by 1/255, normalise with the
    processor's mean and std (SigLIP: 0.5 and 0.5, i.e. values in [-1, 1]). `pad_square`
    first centres the frame on a square filled with the mean colour (VILA's "pad").
    """
    if image_size < 1:
        raise ValueError(f"image_size must be >= 1, got {image_size}")
    if pad_square:
        frames = pad_to_square(frames, tuple(int(m * 255) for m in mean))  # [N, M, M, 3]
    x = resize_uint8(frames, image_size, image_size)  # [N, 3, S, S]
    return normalize_pixels(x, tuple(mean), tuple(std))  # [N, 3, S, S]


def smart_resize(
    height: int,
    width: int,
    factor: int = 28,
    min_pixels: int = QWEN_MIN_PIXELS,
    max_pixels: int = QWEN_MAX_PIXELS,
) -> tuple[int, int]:
    """Qwen2-VL's target size (identical to transformers' `smart_resize`).

    Each side is rounded to a multiple of `factor`; if the area leaves [min_pixels, max_pixels]
    both sides are scaled by a common factor (keeping the aspect ratio as closely as multiples
    of `factor` allow). Like the reference, extreme aspect ratios with tight bounds can land
    outside the range; results must stay identical to the model's processor because they set
    the number of vision tokens. Raises ValueError for an aspect ratio above 200.
    """
    if height < 1 or width < 1:
        raise ValueError(f"height and width must be >= 1, got {height}x{width}")
    if max(height, width) / min(height, width) > 200:
        raise ValueError(
            f"absolute aspect ratio must be smaller than 200, got {max(height, width) / min(height, width)}"
        )
    h_bar = round(height / factor) * factor
    w_bar = round(width / factor) * factor
    if h_bar * w_bar > max_pixels:
        beta = math.sqrt((height * width) / max_pixels)
        h_bar = max(factor, math.floor(height / beta / factor) * factor)
        w_bar = max(factor, math.floor(width / beta / factor) * factor)
    elif h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h_bar = math.ceil(height * beta / factor) * factor
        w_bar = math.ceil(width * beta / factor) * factor
    return h_bar, w_bar


# Axis order of Qwen2-VL's flattening. Source layout after the first reshape:
# (grid_t, tps, C, gh/ms, ms, ps, gw/ms, ms, ps); target: (grid_t, gh/ms, gw/ms, ms, ms, C, tps, ps, ps).
_QWEN_PERM = (0, 3, 6, 4, 7, 2, 1, 5, 8)
_QWEN_INV_PERM = tuple(_QWEN_PERM.index(i) for i in range(9))


def patchify_qwen(
    frames: np.ndarray | torch.Tensor,
    *,
    patch_size: int = 14,
    temporal_patch_size: int = 2,
    merge_size: int = 2,
    min_pixels: int = QWEN_MIN_PIXELS,
    max_pixels: int = QWEN_MAX_PIXELS,
    mean: tuple[float, float, float] = CLIP_MEAN,
    std: tuple[float, float, float] = CLIP_STD,
) -> tuple[torch.Tensor, tuple[int, int, int]]:
    """uint8 [T, H, W, 3] -> (pixel_values [grid_t*grid_h*grid_w, 3*tps*ps*ps], (grid_t, grid_h, grid_w)).

    Resize to `smart_resize(H, W, patch_size * merge_size, ...)`, rescale, normalise, pad T to
    a multiple of `temporal_patch_size` by repeating the last frame, then flatten in the exact
    order of Qwen2-VL's processor: rows are patches grouped by merge window (merge_size^2
    consecutive rows merge into one LLM token), each row is (C, tps, ps, ps) flattened.
    """
    src = _as_uint8_frames(frames)  # [T, H, W, 3]
    t, h, w, _ = src.shape
    rh, rw = smart_resize(h, w, patch_size * merge_size, min_pixels, max_pixels)
    x = normalize_pixels(resize_uint8(src, rh, rw), mean, std)  # [T, 3, rh, rw]
    pad = (-t) % temporal_patch_size
    if pad:
        x = torch.cat([x, x[-1:].expand(pad, -1, -1, -1)], dim=0)  # [T', 3, rh, rw]
    c = x.shape[1]
    grid_t, grid_h, grid_w = x.shape[0] // temporal_patch_size, rh // patch_size, rw // patch_size
    x = x.reshape(
        grid_t,
        temporal_patch_size,
        c,
        grid_h // merge_size,
        merge_size,
        patch_size,
        grid_w // merge_size,
        merge_size,
        patch_size,
    )
    x = x.permute(*_QWEN_PERM)  # [gt, gh/ms, gw/ms, ms, ms, C, tps, ps, ps]
    pixel_values = x.reshape(
        grid_t * grid_h * grid_w, c * temporal_patch_size * patch_size * patch_size
    )  # [gt*gh*gw, C*tps*ps*ps]
    return pixel_values, (grid_t, grid_h, grid_w)


def unpatchify_qwen(
    pixel_values: torch.Tensor,
    grid_thw: tuple[int, int, int],
    *,
    patch_size: int = 14,
    temporal_patch_size: int = 2,
    merge_size: int = 2,
) -> torch.Tensor:
    """Inverse of `patchify_qwen`'s flattening: -> normalised float [grid_t*tps, 3, H, W]."""
    grid_t, grid_h, grid_w = (int(v) for v in grid_thw)
    per_patch = temporal_patch_size * patch_size * patch_size
    if pixel_values.shape[-1] % per_patch or pixel_values.shape[0] != grid_t * grid_h * grid_w:
        raise ValueError(
            f"pixel_values {tuple(pixel_values.shape)} do not match grid {grid_thw} "
            f"with tps={temporal_patch_size}, ps={patch_size}"
        )
    c = pixel_values.shape[-1] // per_patch
    x = pixel_values.reshape(
        grid_t,
        grid_h // merge_size,
        grid_w // merge_size,
        merge_size,
        merge_size,
        c,
        temporal_patch_size,
        patch_size,
        patch_size,
    )
    x = x.permute(*_QWEN_INV_PERM)  # [gt, tps, C, gh/ms, ms, ps, gw/ms, ms, ps]
    return x.reshape(
        grid_t * temporal_patch_size, c, grid_h * patch_size, grid_w * patch_size
    )  # [gt*tps, C, H, W]


def patchify(frames: torch.Tensor, patch: int) -> torch.Tensor:
    """[N, C, H, W] -> [N, (H/p)*(W/p), C*p*p]; patches row-major, each flattened as (C, p, p).

    The (C, p, p) order matches `Conv2d(C, D, p, stride=p).weight.flatten(1)`, so
    `patchify(x, p) @ weight.flatten(1).T` equals the conv patch embedding (VILA / SigLIP).
    """
    n, c, h, w = frames.shape
    if h % patch or w % patch:
        raise ValueError(f"frame size {h}x{w} is not divisible by patch size {patch}")
    x = frames.reshape(n, c, h // patch, patch, w // patch, patch)
    x = x.permute(0, 2, 4, 1, 3, 5)  # [N, H/p, W/p, C, p, p]
    return x.reshape(n, (h // patch) * (w // patch), c * patch * patch)  # [N, P, C*p*p]


def unpatchify(patches: torch.Tensor, patch: int, height: int, width: int) -> torch.Tensor:
    """Inverse of `patchify`: [N, (H/p)*(W/p), C*p*p] -> [N, C, H, W]."""
    n, num, dim = patches.shape
    if (
        height % patch
        or width % patch
        or num != (height // patch) * (width // patch)
        or dim % (patch * patch)
    ):
        raise ValueError(
            f"patches {tuple(patches.shape)} do not match a {height}x{width} frame with patch {patch}"
        )
    c = dim // (patch * patch)
    x = patches.reshape(n, height // patch, width // patch, c, patch, patch)
    x = x.permute(0, 3, 1, 4, 2, 5)  # [N, C, H/p, p, W/p, p]
    return x.reshape(n, c, height, width)  # [N, C, H, W]
