"""Synthetic tasks whose answers are in the audio, written as real media files.

Kinds (what is asked; the answer type):
- count  (audio): how many short beeps play in 4 s of noise floor (1-5); numerical, "<answer>3</answer>".
- order  (audio): a low (200-350 Hz) and a high (1-2 kHz) tone play one after the other;
  which came first; multiple choice "A. the low tone" / "B. the high tone" (option order
  drawn per question).
- onset  (audio): a 1 s tone starts at a whole or half second in 0.5-4.5 s of a 6 s clip;
  when did it start; multiple choice over four times at least 1 s apart ("at 2.5 seconds").
  Multiple choice, not numerical: the numerical reward compares numbers exactly
  (`harness.algos.rewards.numeric_accuracy`), and "2.4" for a tone at 2.5 s is not wrong
  enough to score 0.
- screen (video+audio): a 4 s mp4 (64x64, 8 fps, an AAC track) shows four solid colours for
  1 s each; a tone plays during one of them; which colour was on screen when it sounded;
  multiple choice over the four colours (in an order drawn per question, not screen order).
  Every option is on screen at some point, so the frames alone cannot answer it.

Files and records. `write_audio_split(out_dir, n, seed, kinds)` writes `audios/<id>.wav`
(16 kHz mono PCM) and `audio.jsonl`; `write_video_audio_split(out_dir, n, seed)` writes
`videos/<id>.mp4` and `video_audio.jsonl`. Records have the training record's fields
(harness.data.records: problem_id, data_type, problem, problem_type, answer, reasoning,
options for multiple choice, duration) with data_type "audio" and `audios: [path]`, or
"video+audio" and `videos: [path]` (paths relative to the jsonl's folder), plus `task` (the
kind). Item i has kind kinds[i % len(kinds)] and its own random stream (seed, kind, i), so
the first items do not change when n grows; the jsonl is a function of the arguments.

Oracles. `oracle_answer(record, root)` recovers the answer from the media file alone (and
the option texts of the question), with plain DSP on `load_audio`'s samples: an energy
envelope finds the tones (count, onset, when the tone sounded), an FFT their pitch (order);
for screen it also decodes the frame shown at the tone's middle. The tests check that it
answers every generated question right, which proves the information is in the files.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np

from harness.data.audio import AudioClip, load_audio
from harness.data.records import answer_key as answer_text  # one reading of the key
from harness.data.synthetic.render import pick_codec
from harness.data.synthetic.scene import COLOURS

SAMPLE_RATE = 16000
AUDIO_KINDS = ("count", "order", "onset")
VIDEO_AUDIO_KINDS = ("screen",)
LETTERS = "ABCD"
# spawn keys of the per-item random streams: fixed per kind, so adding a kind moves no other
_KIND_KEYS = {"count": 1, "order": 2, "onset": 3, "screen": 4}

NOISE_STD = 0.002  # the noise floor between tones (about -54 dBFS): "silence" that is not zeros
TONE_AMP = (0.3, 0.6)  # tone peak amplitudes are drawn in this range
FADE_S = 0.01  # raised-cosine fade in/out: no clicks, which would smear the pitch

COUNT_SECONDS, BEEP_S, BEEP_GAP_S, EDGE_S, MAX_BEEPS = 4.0, 0.15, 0.25, 0.2, 5
ORDER_SECONDS = 3.0
LOW_HZ, HIGH_HZ = (200.0, 350.0), (1000.0, 2000.0)
ORDER_OPTIONS = ("the low tone", "the high tone")
ONSET_SECONDS, ONSET_TONE_S, ONSET_GRID, ONSET_SPACING = 6.0, 1.0, (0.5, 4.5, 0.5), 1.0

SCREEN_COLOURS = ("red", "green", "blue", "yellow", "white", "magenta")  # scene.COLOURS keys
SCREEN_SEGMENTS, SCREEN_SEGMENT_S, SCREEN_FPS, SCREEN_SIZE = 4, 1.0, 8, 64
SCREEN_TONE_S = 0.4

# The oracle's envelope: RMS over 10 ms frames; a frame is "sounding" above this fraction of
# the loudest frame (tones are >= 0.3 peak, i.e. >= 0.21 RMS; the floor is 0.002 RMS).
ENVELOPE_FRAME_S = 0.01
ENVELOPE_REL_THRESHOLD = 0.3
ENVELOPE_MIN_RMS = 0.02  # below this the whole clip is taken for silence
MIN_SEGMENT_S, MERGE_GAP_S = 0.03, 0.03


@dataclass(frozen=True, eq=False)
class AudioTask:
    """One generated question and the audio that answers it.

    samples: float32 [round(duration * SAMPLE_RATE)] mono. `answer` is the answer text (a
    number for numerical questions, a letter for multiple choice); `tones` are the
    (start, end) seconds of every tone played, kept for reasoning and tests, never read by
    the oracle. For "screen", `colours` are the colours shown, one per segment.
    """

    kind: str
    samples: np.ndarray  # [N] float32
    duration: float
    question: str  # the question sentence, without options
    options: tuple[str, ...] | None  # option texts (multiple choice), None for numerical
    answer: str
    reasoning: str
    tones: tuple[tuple[float, float], ...]
    colours: tuple[str, ...] = ()

    @property
    def problem_type(self) -> str:
        return "numerical" if self.options is None else "multiple choice"

    @property
    def problem(self) -> str:
        """The question as the model sees it: the sentence and, if any, one "A. ..." line per option."""
        if self.options is None:
            return self.question
        return "\n".join([self.question, *(f"{LETTERS[i]}. {o}" for i, o in enumerate(self.options))])


# ----------------------------------------------------------------------------- synthesis


def _tone(freq: float, seconds: float, amp: float) -> np.ndarray:
    """float32 [round(seconds * SAMPLE_RATE)]: a sine with raised-cosine fades at both ends."""
    n = int(round(seconds * SAMPLE_RATE))
    t = np.arange(n) / SAMPLE_RATE
    wave = amp * np.sin(2 * np.pi * freq * t)
    fade = min(int(FADE_S * SAMPLE_RATE), n // 2)
    ramp = 0.5 - 0.5 * np.cos(np.pi * np.arange(fade) / fade)  # [fade], 0 -> 1
    wave[:fade] *= ramp
    wave[n - fade:] *= ramp[::-1]
    return wave.astype(np.float32)


def _noise_floor(rng: np.random.Generator, seconds: float) -> np.ndarray:
    return rng.normal(0.0, NOISE_STD, int(round(seconds * SAMPLE_RATE))).astype(np.float32)


def _mix(track: np.ndarray, start: float, sound: np.ndarray) -> None:
    """Add `sound` into `track` from `start` seconds on (in place)."""
    i = int(round(start * SAMPLE_RATE))
    track[i:i + len(sound)] += sound[: len(track) - i]


def _amp(rng: np.random.Generator) -> float:
    return float(rng.uniform(*TONE_AMP))


def _seconds(t: float) -> str:
    return f"{t:.1f} s"


def _spread(rng: np.random.Generator, n: int, length: float, gap: float, span: tuple[float, float]) -> list[float]:
    """Start times of n sounds of `length` s within `span`, at least `gap` s apart: the spare
    time is cut into n + 1 random pieces that go before, between and after them."""
    spare = (span[1] - span[0]) - n * length - (n - 1) * gap
    pieces = rng.dirichlet(np.ones(n + 1)) * spare  # [n + 1]
    return [span[0] + float(pieces[: k + 1].sum()) + k * (length + gap) for k in range(n)]


def _and(items: Sequence[str]) -> str:
    """"a", "a and b", "a, b and c"."""
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} and {items[-1]}"


def _letter(options: Sequence[str], text: str) -> str:
    return LETTERS[list(options).index(text)]


def make_count_task(rng: np.random.Generator) -> AudioTask:
    """1-5 beeps of BEEP_S at 500-2000 Hz, at least BEEP_GAP_S apart, in COUNT_SECONDS."""
    n = int(rng.integers(1, MAX_BEEPS + 1))
    starts = _spread(rng, n, BEEP_S, BEEP_GAP_S, (EDGE_S, COUNT_SECONDS - EDGE_S))
    track = _noise_floor(rng, COUNT_SECONDS)
    for s in starts:
        _mix(track, s, _tone(float(rng.uniform(500, 2000)), BEEP_S, _amp(rng)))
    times = _and([_seconds(s) for s in starts])
    if n == 1:
        reasoning = (f"Listening through the clip, I hear a single short beep, at about {times}, and only "
                     "faint noise otherwise. So there is 1 beep.")
    else:
        reasoning = (f"Listening through the clip, I hear short beeps starting at about {times}, "
                     f"separated by quiet. Counting them gives {n} beeps.")
    return AudioTask(
        kind="count", samples=np.clip(track, -1, 1), duration=COUNT_SECONDS,
        question="Listen to the audio. How many beeps do you hear? Answer with a number.",
        options=None, answer=str(n), reasoning=reasoning,
        tones=tuple((s, s + BEEP_S) for s in starts),
    )


def make_order_task(rng: np.random.Generator) -> AudioTask:
    """A low and a high tone, in random order, each 0.4-0.6 s, 0.3-0.6 s apart."""
    low_first = bool(rng.random() < 0.5)
    freqs = {"low": float(rng.uniform(*LOW_HZ)), "high": float(rng.uniform(*HIGH_HZ))}
    lengths = rng.uniform(0.4, 0.6, 2)
    first_start = float(rng.uniform(0.2, 0.6))
    second_start = first_start + float(lengths[0]) + float(rng.uniform(0.3, 0.6))
    order = ("low", "high") if low_first else ("high", "low")
    track = _noise_floor(rng, ORDER_SECONDS)
    starts = (first_start, second_start)
    for which, start, length in zip(order, starts, lengths, strict=True):
        _mix(track, start, _tone(freqs[which], float(length), _amp(rng)))
    options = tuple(ORDER_OPTIONS[i] for i in rng.permutation(2))
    letter = _letter(options, f"the {order[0]} tone")
    reasoning = (f"The first tone starts at about {_seconds(starts[0])} and is {order[0]}-pitched; the second "
                 f"starts at about {_seconds(starts[1])} and is {order[1]}-pitched. So the {order[0]} tone "
                 f"came first, which is option {letter}.")
    return AudioTask(
        kind="order", samples=np.clip(track, -1, 1), duration=ORDER_SECONDS,
        question="Two tones play in this audio, one low-pitched and one high-pitched. Which tone came first?",
        options=options, answer=letter, reasoning=reasoning,
        tones=tuple((s, s + float(ln)) for s, ln in zip(starts, lengths, strict=True)),
    )


def _onset_options(rng: np.random.Generator, truth: float) -> list[float]:
    """The truth and three other grid times, all pairwise >= ONSET_SPACING apart, ascending."""
    lo, hi, step = ONSET_GRID
    grid = [lo + k * step for k in range(int(round((hi - lo) / step)) + 1)]
    while True:  # greedy over a random order; a few tries at most (always feasible on this grid)
        chosen = [truth]
        for t in rng.permutation(grid):
            if all(abs(float(t) - c) >= ONSET_SPACING - 1e-9 for c in chosen):
                chosen.append(float(t))
            if len(chosen) == len(LETTERS):
                return sorted(chosen)


def _onset_text(t: float) -> str:
    return f"at {t:g} seconds"


def make_onset_task(rng: np.random.Generator) -> AudioTask:
    """One ONSET_TONE_S tone at 300-1500 Hz starting on the ONSET_GRID, in ONSET_SECONDS."""
    lo, hi, step = ONSET_GRID
    onset = lo + step * int(rng.integers(0, int(round((hi - lo) / step)) + 1))
    track = _noise_floor(rng, ONSET_SECONDS)
    _mix(track, onset, _tone(float(rng.uniform(300, 1500)), ONSET_TONE_S, _amp(rng)))
    options = tuple(_onset_text(t) for t in _onset_options(rng, onset))
    letter = _letter(options, _onset_text(onset))
    reasoning = (f"The clip is quiet at first; a steady tone begins at about {_seconds(onset)} and lasts about a "
                 f"second. Of the options, '{_onset_text(onset)}' matches, so the answer is {letter}.")
    return AudioTask(
        kind="onset", samples=np.clip(track, -1, 1), duration=ONSET_SECONDS,
        question="Listen to the audio. When did the sound start?",
        options=options, answer=letter, reasoning=reasoning, tones=((onset, onset + ONSET_TONE_S),),
    )


def make_screen_task(rng: np.random.Generator) -> AudioTask:
    """SCREEN_SEGMENTS distinct colours, SCREEN_SEGMENT_S each; a tone inside one of them."""
    colours = tuple(str(c) for c in rng.choice(SCREEN_COLOURS, SCREEN_SEGMENTS, replace=False))
    duration = SCREEN_SEGMENTS * SCREEN_SEGMENT_S
    k = int(rng.integers(0, SCREEN_SEGMENTS))
    # starts 0.2-0.4 s into the segment: it ends >= 0.2 s before the colour changes
    start = k * SCREEN_SEGMENT_S + float(rng.uniform(0.2, 0.4))
    track = _noise_floor(rng, duration)
    _mix(track, start, _tone(float(rng.uniform(500, 1500)), SCREEN_TONE_S, _amp(rng)))
    options = tuple(colours[i] for i in rng.permutation(SCREEN_SEGMENTS))
    letter = _letter(options, colours[k])
    shown = ", then ".join(colours)
    reasoning = (f"The screen shows {shown}, about one second each. The tone plays from about "
                 f"{_seconds(start)} to {_seconds(start + SCREEN_TONE_S)}, while the screen is {colours[k]}. "
                 f"So the answer is {letter}.")
    return AudioTask(
        kind="screen", samples=np.clip(track, -1, 1), duration=duration,
        question="A tone sounds once during this video. What colour was the screen when the tone sounded?",
        options=options, answer=letter, reasoning=reasoning,
        tones=((start, start + SCREEN_TONE_S),), colours=colours,
    )


MAKERS = {"count": make_count_task, "order": make_order_task, "onset": make_onset_task,
          "screen": make_screen_task}


def item_rng(seed: int, kind: str, i: int, split: int = 0) -> np.random.Generator:
    """The random stream of item i of `kind` (independent of n and of the other kinds);
    `split`: a split's number, so the splits of one seed draw different items."""
    key = (_KIND_KEYS[kind], i) if split == 0 else (_KIND_KEYS[kind], i, split)
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=key))


SPLIT_KEYS = {"": 0, "sft": 1, "rl": 2, "test": 3}  # `split` names the writers take


# ----------------------------------------------------------------------------- files


def write_wav(path: Path, samples: np.ndarray, sample_rate: int = SAMPLE_RATE) -> None:
    """16-bit PCM mono WAV of float32 [N] samples in [-1, 1]; written under a temporary
    name, then renamed, so a crash leaves no truncated file under the final name."""
    tmp = path.with_name(path.name + ".tmp")
    with av.open(str(tmp), mode="w", format="wav") as container:
        stream = container.add_stream("pcm_s16le", rate=sample_rate, layout="mono")
        _encode_mono(container, stream, samples, sample_rate)
    os.replace(tmp, path)


def _encode_mono(container: av.container.OutputContainer, stream: av.audio.stream.AudioStream,
                 samples: np.ndarray, sample_rate: int) -> None:
    """Encode float32 [N] as one frame (PyAV re-chunks it to the codec's frame size), flush."""
    frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(samples[None, :], dtype=np.float32),
                                       format="fltp", layout="mono")
    frame.sample_rate, frame.pts = sample_rate, 0
    for packet in stream.encode(frame):
        container.mux(packet)
    for packet in stream.encode():
        container.mux(packet)


def _screen_frames(colours: Sequence[str]) -> np.ndarray:
    """uint8 [SCREEN_SEGMENTS * frames per segment, H, W, 3]: each colour, full frame, in turn."""
    per_segment = int(round(SCREEN_SEGMENT_S * SCREEN_FPS))
    rgb = np.array([COLOURS[c] for c in colours], dtype=np.uint8)  # [S, 3]
    frames = np.repeat(rgb, per_segment, axis=0)  # [T, 3]
    return np.broadcast_to(frames[:, None, None, :], (len(frames), SCREEN_SIZE, SCREEN_SIZE, 3))


def write_av_mp4(path: Path, frames: np.ndarray, fps: float, samples: np.ndarray,
                 sample_rate: int = SAMPLE_RATE) -> None:
    """An mp4 with a video track (uint8 RGB [T, H, W, 3], yuv420p, codec and settings as
    render.write_mp4) and an AAC mono track of float32 [N] samples, both starting at 0."""
    height, width = frames.shape[1:3]
    codec = pick_codec()
    tmp = path.with_name(path.name + ".tmp")
    with av.open(str(tmp), mode="w", format="mp4") as container:
        video = container.add_stream(codec, rate=Fraction(fps).limit_denominator(1000))
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        if codec == "libx264":
            video.options = {"crf": "12", "preset": "veryfast"}
        else:
            video.bit_rate = 4_000_000
        audio = container.add_stream("aac", rate=sample_rate, layout="mono")
        for img in frames:
            for packet in video.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24")):
                container.mux(packet)
        for packet in video.encode():
            container.mux(packet)
        _encode_mono(container, audio, samples, sample_rate)
    os.replace(tmp, path)


def _record(task: AudioTask, pid: str, media_key: str, rel_path: str, data_type: str) -> dict[str, Any]:
    rec: dict[str, Any] = {
        "problem_id": pid, "data_type": data_type, media_key: [rel_path], "problem": task.problem,
        "problem_type": task.problem_type, "answer": f"<answer>{task.answer}</answer>",
        "reasoning": task.reasoning,
    }
    if task.options is not None:
        rec["options"] = list(task.options)
    rec.update(duration=task.duration, task=task.kind)
    return rec


def _write_jsonl(path: Path, records: Sequence[Mapping[str, Any]]) -> None:
    """One JSON object per line; temporary name, then rename (readers never see half a file)."""
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", encoding="utf-8") as f:
        for rec in records:
            f.write(json.dumps(rec, ensure_ascii=False) + "\n")
    os.replace(tmp, path)


def _check_split_args(n: object, seed: object, kinds: Sequence[str], allowed: Sequence[str]) -> None:
    def is_int(x: object) -> bool:
        return isinstance(x, int | np.integer) and not isinstance(x, bool)

    if not is_int(n) or n < 1:
        raise ValueError(f"n must be an integer >= 1, got {n!r}")
    if not is_int(seed) or seed < 0:
        raise ValueError(f"seed must be an integer >= 0, got {seed!r}")
    if isinstance(kinds, str) or not kinds or any(k not in allowed for k in kinds) or len(set(kinds)) != len(kinds):
        raise ValueError(f"kinds must be distinct names from {tuple(allowed)}, got {kinds!r}")


def write_audio_split(out_dir: str | Path, n: int, seed: int,
                      kinds: Sequence[str] = AUDIO_KINDS, filename: str = "audio.jsonl", split: str = "") -> Path:
    """n audio questions (kinds in turn) as `out_dir/audios/<id>.wav` and `out_dir/<filename>`;
    returns the jsonl's path. `split` (one of SPLIT_KEYS): its items are drawn apart from
    the other splits' and its ids carry its name, so splits can share one folder."""
    _check_split_args(n, seed, kinds, AUDIO_KINDS)
    tag = f"{split}-" if split else ""
    out = Path(out_dir)
    (out / "audios").mkdir(parents=True, exist_ok=True)
    records = []
    for i in range(n):
        kind = kinds[i % len(kinds)]
        task = MAKERS[kind](item_rng(seed, kind, i, SPLIT_KEYS[split]))
        pid = f"audio-{tag}{kind}-{i:05d}"
        rel = f"audios/{pid}.wav"
        write_wav(out / rel, task.samples)
        records.append(_record(task, pid, "audios", rel, "audio"))
    path = out / filename
    _write_jsonl(path, records)
    return path


def write_video_audio_split(out_dir: str | Path, n: int, seed: int, filename: str = "video_audio.jsonl",
                            split: str = "") -> Path:
    """n "screen" questions as `out_dir/videos/<id>.mp4` (video + audio) and
    `out_dir/<filename>`; returns the jsonl's path. `split`: as for `write_audio_split`."""
    _check_split_args(n, seed, VIDEO_AUDIO_KINDS, VIDEO_AUDIO_KINDS)
    tag = f"{split}-" if split else ""
    out = Path(out_dir)
    (out / "videos").mkdir(parents=True, exist_ok=True)
    records = []
    for i in range(n):
        task = make_screen_task(item_rng(seed, "screen", i, SPLIT_KEYS[split]))
        pid = f"va-{tag}screen-{i:05d}"
        rel = f"videos/{pid}.mp4"
        write_av_mp4(out / rel, _screen_frames(task.colours), SCREEN_FPS, task.samples)
        rec = _record(task, pid, "videos", rel, "video+audio")
        rec["video_id"] = pid
        records.append(rec)
    path = out / filename
    _write_jsonl(path, records)
    return path


# ----------------------------------------------------------------------------- oracle


def tone_segments(clip: AudioClip) -> list[tuple[float, float]]:
    """(start, end) seconds on the file's timeline of every stretch louder than the noise
    floor: RMS over 10 ms frames above ENVELOPE_REL_THRESHOLD of the loudest frame; gaps
    under MERGE_GAP_S are bridged and stretches under MIN_SEGMENT_S dropped."""
    hop = max(1, int(round(ENVELOPE_FRAME_S * clip.sample_rate)))
    n_frames = len(clip.samples) // hop
    if n_frames == 0:
        return []
    frames = clip.samples[: n_frames * hop].reshape(n_frames, hop).astype(np.float64)  # [F, hop]
    rms = np.sqrt((frames**2).mean(axis=1))  # [F]
    if rms.max() < ENVELOPE_MIN_RMS:
        return []
    loud = rms > ENVELOPE_REL_THRESHOLD * rms.max()  # [F] bool
    edges = np.diff(np.concatenate([[0], loud.astype(np.int8), [0]]))  # [F + 1]: +1 rise, -1 fall
    runs = list(zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1), strict=True))  # frame [start, end)
    merged: list[list[int]] = []
    for a, b in runs:
        if merged and (a - merged[-1][1]) * ENVELOPE_FRAME_S < MERGE_GAP_S:
            merged[-1][1] = b
        else:
            merged.append([a, b])
    step = hop / clip.sample_rate
    return [(clip.start + a * step, clip.start + b * step) for a, b in merged if (b - a) * step >= MIN_SEGMENT_S]


def segment_pitch(clip: AudioClip, segment: tuple[float, float]) -> float:
    """The dominant frequency (Hz) of the middle 80 % of a segment (Hann-windowed FFT)."""
    a, b = segment
    margin = 0.1 * (b - a)
    i, j = (int(round((t - clip.start) * clip.sample_rate)) for t in (a + margin, b - margin))
    part = clip.samples[i:j].astype(np.float64)  # [n]
    spectrum = np.abs(np.fft.rfft(part * np.hanning(len(part))))  # [n // 2 + 1]
    return float(np.fft.rfftfreq(len(part), 1 / clip.sample_rate)[np.argmax(spectrum)])


def count_beeps(clip: AudioClip) -> int:
    return len(tone_segments(clip))


def first_tone(clip: AudioClip) -> str:
    """"low" or "high": the pitch of the first of the clip's two tones relative to the second."""
    segments = tone_segments(clip)
    if len(segments) != 2:
        raise ValueError(f"expected two tones, found {len(segments)}")
    first, second = (segment_pitch(clip, s) for s in segments)
    return "low" if first < second else "high"


def sound_onset(clip: AudioClip) -> float:
    """Seconds at which the first sound starts."""
    segments = tone_segments(clip)
    if not segments:
        raise ValueError("no sound found")
    return segments[0][0]


def _frame_colour(frame: np.ndarray, names: Sequence[str]) -> str:
    """The name in `names` whose RGB is nearest the frame's mean colour."""
    mean = frame.reshape(-1, 3).mean(axis=0)  # [3]
    return min(names, key=lambda c: float(np.sum((np.array(COLOURS[c], dtype=np.float64) - mean) ** 2)))


def screen_colour_during_tone(path: str | Path, names: Sequence[str] = SCREEN_COLOURS) -> str:
    """The colour (one of `names`) on screen at the middle of the video's only tone."""
    from harness.data.video import load_video, probe_video

    segments = tone_segments(load_audio(path))
    if len(segments) != 1:
        raise ValueError(f"expected one tone, found {len(segments)}")
    middle = 0.5 * (segments[0][0] + segments[0][1])
    info = probe_video(path)
    clip = load_video(path, info.total_frames)  # every frame; timestamps = index / fps
    # frame i is on screen during [i / fps, (i + 1) / fps)
    idx = int(np.clip(np.searchsorted(clip.timestamps, middle, side="right") - 1, 0, len(clip.frames) - 1))
    return _frame_colour(clip.frames[idx], names)


def _onset_of_option(text: str) -> float:
    m = re.fullmatch(r"at ([0-9.]+) seconds", text)
    if not m:
        raise ValueError(f"not an onset option: {text!r}")
    return float(m.group(1))


def oracle_answer(record: Mapping[str, Any], root: str | Path) -> str:
    """The answer (a number or a letter) recovered from the record's media file alone and
    its option texts; `root` is the folder the record's paths are relative to."""
    kind = record["task"]
    options = record.get("options") or []
    if kind == "screen":
        return _letter(options, screen_colour_during_tone(Path(root) / record["videos"][0], options))
    clip = load_audio(Path(root) / record["audios"][0], sample_rate=SAMPLE_RATE)
    if kind == "count":
        return str(count_beeps(clip))
    if kind == "order":
        return _letter(options, f"the {first_tone(clip)} tone")
    if kind == "onset":
        heard = sound_onset(clip)
        return _letter(options, min(options, key=lambda o: abs(_onset_of_option(o) - heard)))
    raise ValueError(f"record {record.get('problem_id')!r}: unknown task {kind!r}")


def oracle_accuracy(jsonl: str | Path) -> float:
    """Share of a split's records whose key the oracle recovers from the files."""
    path = Path(jsonl)
    records = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    right = sum(oracle_answer(r, path.parent) == answer_text(r) for r in records)
    return right / len(records) if records else math.nan
