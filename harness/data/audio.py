"""Audio decoding and Qwen2.5-Omni style log-mel features.

Contract:
- `load_audio(path)` decodes the file's own audio track with PyAV (.wav, .mp3, .m4a/.aac, the
  audio stream of an .mp4/.mkv video, ...), downmixes it to mono and resamples it with
  `av.AudioResampler` to float32 at `sample_rate` (16 kHz, what Qwen2.5-Omni's audio tower
  takes). A missing, empty or undecodable file, a file without an audio track and a track
  that decodes to nothing raise `AudioDecodeError` naming the path and the reason; there is
  no fallback to silence (a silent clip would train the model on a wrong premise, as black
  frames did for video: docs/reference.md pitfall 5).
- `log_mel_features(clip)` turns a clip into the 128-bin log-mel frames that transformers'
  `WhisperFeatureExtractor` computes for Qwen2.5-Omni (`omni_feature_extractor`), only the
  clip's own frames (ceil(samples / 160), at most 30000 = 300 s), not the padding.
- `audio_token_count(frames)` is the number of audio tokens those frames become in the
  language model (25 per second of audio).

Time axis: `AudioClip.start` is the time of the first decoded sample on the file's timeline
(PyAV's `frame.time`); sample i lies at `start + i / sample_rate`. It is 0 for WAV, for AAC
in mp4/m4a (the muxer's edit list already drops the encoder's priming samples) and for the
videos the harness writes, so audio times match the video timestamps of
`harness.data.video` (index / fps). MP3 files report their encoder delay there (about
0.025 s) although the decoder has already removed it: treat `start` of an MP3 as 0.
"""

from __future__ import annotations

import functools
import math
import stat
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
from transformers import WhisperFeatureExtractor

from harness.data.video import unreachable_reason
from harness.errors import HarnessError

SAMPLE_RATE = 16000  # Qwen2.5-Omni's audio tower (and Whisper's) sample rate

# The released Qwen2.5-Omni feature extractor (preprocessor_config.json of
# Qwen/Qwen2.5-Omni-7B: "feature_extractor_type": "WhisperFeatureExtractor", feature_size 128,
# sampling_rate 16000, hop_length 160, n_fft 400, chunk_length 300 (n_samples 4800000,
# nb_max_frames 30000), padding_value 0.0, padding_side "right", dither 0.0,
# return_attention_mask true).
OMNI_FEATURE_SIZE = 128
OMNI_HOP_LENGTH = 160  # 10 ms at 16 kHz: 100 feature frames per second
OMNI_N_FFT = 400  # 25 ms window
OMNI_CHUNK_LENGTH = 300  # seconds; longer audio is truncated by the extractor
# 100 frames/s, halved by the encoder's stride-2 conv, then by its 2x pooling.
AUDIO_TOKENS_PER_SECOND = 25

# Options of libswresample (through PyAV's aresample filter; PyAV 18 takes them).
# `rematrix_maxval` 1.0 normalises the downmix matrix: by default a float downmix of stereo
# is (L + R) / sqrt(2), which lifts an identical-channel signal by 3 dB and can leave
# [-1, 1]; normalised it is (L + R) / 2.
_RESAMPLER_OPTIONS = {"rematrix_maxval": "1.0"}
# Most decoded audio past a stream's declared end taken for encoder padding (AAC pads less
# than one 1024-sample frame: 0.023 s at 44.1 kHz, 0.128 s at 8 kHz).
_MAX_END_PADDING_S = 0.15


class AudioDecodeError(HarnessError, RuntimeError):
    """An audio track could not be read. The message names the path and the reason."""

    def __init__(self, path: str | Path, reason: str) -> None:
        super().__init__(f"cannot decode audio {str(path)!r}: {reason}")
        self.path = str(path)
        self.reason = reason


@dataclass(frozen=True, eq=False)  # eq=False: numpy fields make dataclass equality ambiguous
class AudioClip:
    """Decoded mono audio of one file.

    samples: float32 [N] in [-1, 1]; sample i lies at `start + i / sample_rate` seconds on the
    file's timeline. `duration` is the source stream's length in seconds (from the file's
    metadata; the decoded length when the file has none), which is longer than the clip when
    `load_audio` stopped at `max_seconds`.
    """

    samples: np.ndarray  # [N] float32
    sample_rate: int
    start: float
    duration: float

    @property
    def seconds(self) -> float:
        """Length of the decoded clip in seconds."""
        return len(self.samples) / self.sample_rate

    def times(self) -> np.ndarray:
        """float64 [N]: the time of every sample on the file's timeline, in seconds."""
        return self.start + np.arange(len(self.samples)) / self.sample_rate


# ----------------------------------------------------------------------------- decoding


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def _check_file(path: str | Path) -> None:
    """AudioDecodeError unless `path` is a non-empty regular file."""
    p = Path(path)
    try:
        st = p.stat()
    except OSError as err:
        raise AudioDecodeError(path, unreachable_reason(p, err)) from None
    if not stat.S_ISREG(st.st_mode):
        raise AudioDecodeError(path, "not a regular file")
    if st.st_size == 0:
        raise AudioDecodeError(path, "file is empty (0 bytes)")


def _check_args(sample_rate: object, max_seconds: object) -> None:
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, (int, np.integer)) or sample_rate <= 0:
        raise ValueError(f"sample_rate must be a positive int (Hz), got {sample_rate!r}")
    if max_seconds is not None:
        ok = isinstance(max_seconds, (int, float, np.integer, np.floating)) and not isinstance(max_seconds, bool)
        if not (ok and math.isfinite(max_seconds) and max_seconds > 0):
            raise ValueError(f"max_seconds must be None or a finite number > 0, got {max_seconds!r}")


def _stream_duration(stream: av.audio.stream.AudioStream) -> float | None:
    """Seconds of the audio stream from its own metadata; None when the file has none."""
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    return None


def _container_duration(container: av.container.InputContainer) -> float | None:
    """Seconds of the whole file (its longest stream); None when unknown."""
    return container.duration / av.time_base if container.duration is not None else None


def _stream_end(stream: av.audio.stream.AudioStream) -> float | None:
    """Where the stream ends on the file's timeline (start_time + duration), in seconds."""
    duration = _stream_duration(stream)
    if duration is None:
        return None
    offset = float(stream.start_time * stream.time_base) if stream.start_time is not None else 0.0
    return offset + duration


def _new_resampler(sample_rate: int) -> av.AudioResampler:
    """A resampler to planar float at `sample_rate` that downmixes to mono with a normalised
    matrix. Older PyAV releases without its `options` argument keep the source's
    channels instead; `_mono` then averages them, which is the same downmix for stereo."""
    try:
        return av.AudioResampler(format="fltp", layout="mono", rate=sample_rate, options=_RESAMPLER_OPTIONS)
    except TypeError:
        return av.AudioResampler(format="fltp", layout=None, rate=sample_rate)


def _mono(frame: av.AudioFrame) -> np.ndarray:
    """float32 [n] from a planar float frame [C, n] (C = 1 unless `_new_resampler` fell back)."""
    planes = frame.to_ndarray()  # [C, n]
    return planes[0] if planes.shape[0] == 1 else planes.mean(axis=0, dtype=np.float32)


def _flush(resampler: av.AudioResampler | None) -> list[np.ndarray]:
    return [] if resampler is None else [_mono(out) for out in resampler.resample(None)]


def _resample_mono(frames: Iterable[av.AudioFrame], sample_rate: int,
                   limit: int | None) -> tuple[list[np.ndarray], float | None]:
    """Mono float32 chunks ([n] each) at `sample_rate` from decoded frames, and the time of
    the first frame (None when it has no timestamp); stops once `limit` samples are in hand.

    One AudioResampler takes one input format, layout and rate; a stream that changes them
    midway (broadcast recordings switching stereo and 5.1) gets a new resampler from there on.
    """
    chunks: list[np.ndarray] = []
    have, start = 0, None
    resampler, source = None, None
    for i, frame in enumerate(frames):
        if i == 0:
            start = frame.time
        if (frame.format.name, frame.layout.name, frame.sample_rate) != source:
            chunks.extend(_flush(resampler))
            resampler = _new_resampler(sample_rate)
            source = (frame.format.name, frame.layout.name, frame.sample_rate)
        for out in resampler.resample(frame):
            chunks.append(_mono(out))
            have += len(chunks[-1])
        if limit is not None and have >= limit:
            return chunks, start  # enough: the resampler's buffered tail is not needed
    chunks.extend(_flush(resampler))
    return chunks, start


def _decode_mono(container: av.container.InputContainer, stream: av.audio.stream.AudioStream,
                 path: str | Path, sample_rate: int, limit: int | None) -> tuple[list[np.ndarray], float]:
    """`_resample_mono` over the stream's decoded frames; decoder errors name the file."""
    try:
        chunks, start = _resample_mono(container.decode(stream), sample_rate, limit)
    except av.error.FFmpegError as err:
        raise AudioDecodeError(path, f"decoding the audio track failed ({_first_line(err)}); "
                                     "truncated or corrupt file?") from err
    return chunks, float(start) if start is not None else 0.0


def _drop_end_padding(samples: np.ndarray, start: float, end: float | None, sample_rate: int) -> np.ndarray:
    """samples [N] -> [M <= N]: without the samples past the stream's declared end.

    AAC decoders emit their last frame whole, so an m4a/mp4 track decodes up to 1024
    samples of encoder padding past its length (the edit list trims only the start). A
    larger excess means the metadata is wrong (streamed WAV, remuxed files), and the
    decoded audio is kept.
    """
    if end is None:
        return samples
    keep = math.ceil(round((end - start) * sample_rate, 6))
    if 0 < keep < len(samples) and len(samples) - keep <= _MAX_END_PADDING_S * sample_rate:
        return samples[:keep]
    return samples


def load_audio(path: str | Path, sample_rate: int = SAMPLE_RATE, max_seconds: float | None = None) -> AudioClip:
    """Decode the audio track of `path` to mono float32 at `sample_rate` Hz.

    The track is the container's best audio stream (FFmpeg's choice: the default one when a
    file has several). `max_seconds` keeps only the first seconds and stops decoding there
    (for long videos). Samples are clipped to [-1, 1]: lossy decoders and resampling
    overshoot full-scale signals slightly. Raises ValueError for bad arguments and
    AudioDecodeError for a file that cannot give any audio.
    """
    _check_args(sample_rate, max_seconds)
    sample_rate = int(sample_rate)
    _check_file(path)
    limit = None if max_seconds is None else max(1, int(round(max_seconds * sample_rate)))
    try:
        container = av.open(str(path), mode="r")
    except av.error.FFmpegError as err:
        raise AudioDecodeError(path, f"PyAV could not open it ({_first_line(err)})") from err
    with container:
        if not container.streams.audio:
            raise AudioDecodeError(path, "the file has no audio track")
        stream = container.streams.best("audio") or container.streams.audio[0]
        chunks, start = _decode_mono(container, stream, path, sample_rate, limit)
        duration = _stream_duration(stream) or _container_duration(container)
        end = _stream_end(stream)
    samples = np.concatenate(chunks).astype(np.float32, copy=False) if chunks else np.zeros(0, np.float32)  # [N]
    samples = _drop_end_padding(samples, start, end, sample_rate)
    if limit is not None:
        samples = samples[:limit]
    if len(samples) == 0:
        raise AudioDecodeError(path, "the audio track decoded to zero samples")
    np.clip(samples, -1.0, 1.0, out=samples)
    if duration is None:
        duration = len(samples) / sample_rate
    return AudioClip(samples=samples, sample_rate=sample_rate, start=start, duration=duration)


# ----------------------------------------------------------------------------- features


def omni_feature_extractor() -> WhisperFeatureExtractor:
    """A new `WhisperFeatureExtractor` set up as the released Qwen2.5-Omni one (see the
    OMNI_* constants): 128 mel bins at 16 kHz, 25 ms windows every 10 ms, up to 300 s."""
    return WhisperFeatureExtractor(
        feature_size=OMNI_FEATURE_SIZE,
        sampling_rate=SAMPLE_RATE,
        hop_length=OMNI_HOP_LENGTH,
        chunk_length=OMNI_CHUNK_LENGTH,
        n_fft=OMNI_N_FFT,
        padding_value=0.0,
        dither=0.0,
        return_attention_mask=True,
        padding_side="right",
    )


@functools.lru_cache(maxsize=1)
def _default_extractor() -> WhisperFeatureExtractor:
    return omni_feature_extractor()


def log_mel_features(clip: AudioClip, feature_extractor: WhisperFeatureExtractor | None = None) -> np.ndarray:
    """float32 [n_mels, frames]: the log-mel frames Qwen2.5-Omni's audio tower reads for `clip`.

    Qwen2_5OmniProcessor calls the extractor with sampling_rate=16000,
    padding="max_length" (to 300 s) and return_attention_mask=True, truncation left at the
    extractor's default (on); the model then keeps the frames the mask marks
    (`Qwen2_5OmniThinkerForConditionalGeneration.get_audio_features`): ceil(samples / hop_length) frames, at most
    nb_max_frames. We pad only n_fft * 2 zeros past the clip instead of up to 300 s: every
    frame that touches the clip sees the same zeros, the padding frames are all at the
    floor, so the valid frames are the same numbers (tested bit for bit) at a fraction of
    the cost. Audio longer than chunk_length is truncated, as the processor does; give such
    audio in windows of at most 300 s.
    """
    fe = feature_extractor if feature_extractor is not None else _default_extractor()
    if clip.sample_rate != fe.sampling_rate:
        raise ValueError(f"clip is at {clip.sample_rate} Hz but the feature extractor takes {fe.sampling_rate} Hz; "
                         f"load it with load_audio(path, sample_rate={fe.sampling_rate})")
    samples = np.asarray(clip.samples, dtype=np.float32)[: fe.n_samples]  # [N]
    if len(samples) == 0:
        raise ValueError("clip has no samples")
    padded = min(fe.n_samples, _round_up(len(samples) + 2 * fe.n_fft, fe.hop_length))
    out = fe(samples, sampling_rate=fe.sampling_rate, padding="max_length", max_length=padded,
             truncation=True, return_attention_mask=True, return_tensors="np")
    valid = int(out["attention_mask"][0].sum())
    return np.ascontiguousarray(out["input_features"][0, :, :valid], dtype=np.float32)  # [n_mels, valid]


def _round_up(n: int, step: int) -> int:
    return -(-n // step) * step


def audio_token_count(num_feature_frames: int) -> int:
    """Audio tokens the language model gets for `num_feature_frames` log-mel frames.

    transformers `Qwen2_5OmniAudioEncoder._get_feat_extract_output_lengths` (and the same
    expression in `Qwen2_5OmniProcessor.__call__`): the stride-2 conv gives
    (n - 1) // 2 + 1 frames, the 2x average pooling (n' - 2) // 2 + 1 tokens: 25 per second.
    """
    if isinstance(num_feature_frames, bool) or not isinstance(num_feature_frames, (int, np.integer)):
        raise ValueError(f"num_feature_frames must be an int, got {num_feature_frames!r}")
    if num_feature_frames < 0:
        raise ValueError(f"num_feature_frames must be >= 0, got {num_feature_frames}")
    after_conv = (int(num_feature_frames) - 1) // 2 + 1
    return (after_conv - 2) // 2 + 1
