"""Tests for harness.data.audio: decoding real audio and video files written with PyAV,
downmix and resampling, errors, Qwen2.5-Omni log-mel features and audio token counts."""

from __future__ import annotations

import math
from pathlib import Path

import av
import numpy as np
import pytest
import torch

from harness.data.audio import (
    AUDIO_TOKENS_PER_SECOND,
    AudioClip,
    AudioDecodeError,
    audio_token_count,
    load_audio,
    log_mel_features,
    omni_feature_extractor,
)
from harness.errors import HarnessError

VIDEO_CODEC = next(c for c in ("libx264", "mpeg4") if c in av.codecs_available)


# ----------------------------------------------------------------------------- writers


def tone(freq: float, seconds: float, sample_rate: int, amp: float = 0.5, onset: float = 0.0) -> np.ndarray:
    """float32 [round(seconds * sample_rate)]: a sine of `freq` Hz, silent before `onset` s."""
    t = np.arange(int(round(seconds * sample_rate))) / sample_rate
    return (amp * np.sin(2 * np.pi * freq * t) * (t >= onset)).astype(np.float32)


def _encode_audio(container: av.container.OutputContainer, stream: av.audio.stream.AudioStream,
                  channels: np.ndarray, sample_rate: int, layout: str) -> None:
    """Encode float32 [C, N] planar audio in 1000-sample frames (PyAV re-chunks them to the
    codec's frame size) and flush."""
    for i in range(0, channels.shape[1], 1000):
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(channels[:, i:i + 1000]), format="fltp", layout=layout)
        frame.sample_rate, frame.pts = sample_rate, i
        for packet in stream.encode(frame):
            container.mux(packet)
    for packet in stream.encode():
        container.mux(packet)


def write_audio(path: Path, channels: np.ndarray, sample_rate: int, codec: str, fmt: str | None = None) -> Path:
    """Write float32 [C, N] (C = 1 or 2) as an audio-only file."""
    layout = "mono" if channels.shape[0] == 1 else "stereo"
    with av.open(str(path), "w", format=fmt) as container:
        stream = container.add_stream(codec, rate=sample_rate, layout=layout)
        _encode_audio(container, stream, channels, sample_rate, layout)
    return path


def write_video(path: Path, seconds: float, fps: int = 10, audio: np.ndarray | None = None,
                sample_rate: int = 16000, size: int = 64) -> Path:
    """An mp4 of grey frames, with an AAC track of mono float32 [N] `audio` when given."""
    with av.open(str(path), "w", format="mp4") as container:
        video = container.add_stream(VIDEO_CODEC, rate=fps)
        video.width = video.height = size
        video.pix_fmt = "yuv420p"
        sound = container.add_stream("aac", rate=sample_rate, layout="mono") if audio is not None else None
        for i in range(int(round(seconds * fps))):
            img = np.full((size, size, 3), (40 + 10 * i) % 256, np.uint8)
            for packet in video.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                container.mux(packet)
        for packet in video.encode():
            container.mux(packet)
        if sound is not None:
            _encode_audio(container, sound, audio[None, :], sample_rate, "mono")
    return path


def dominant_freq(samples: np.ndarray, sample_rate: int) -> float:
    """The frequency (Hz) of the strongest FFT bin of a Hann-windowed signal."""
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))  # [N // 2 + 1]
    return float(np.fft.rfftfreq(len(samples), 1 / sample_rate)[np.argmax(spectrum)])


def amplitude_at(samples: np.ndarray, sample_rate: int, freq: float) -> float:
    """Amplitude of the `freq` component (least squares on a sine/cosine pair)."""
    t = np.arange(len(samples)) / sample_rate
    basis = np.stack([np.sin(2 * np.pi * freq * t), np.cos(2 * np.pi * freq * t)], axis=1)  # [N, 2]
    coef, *_ = np.linalg.lstsq(basis, samples.astype(np.float64), rcond=None)
    return float(np.hypot(*coef))


def onset_seconds(clip: AudioClip, threshold: float = 0.1) -> float:
    """Time of the first sample above `threshold` on the file's timeline."""
    return clip.start + int(np.argmax(np.abs(clip.samples) > threshold)) / clip.sample_rate


# ----------------------------------------------------------------------------- decoding


def test_wav_44k_stereo_resampled_to_16k_mono(tmp_path: Path) -> None:
    x = tone(1000, 1.5, 44100)
    clip = load_audio(write_audio(tmp_path / "a.wav", np.stack([x, x]), 44100, "pcm_s16le"))
    assert clip.sample_rate == 16000
    assert clip.samples.dtype == np.float32 and clip.samples.ndim == 1
    assert len(clip.samples) == 24000
    assert clip.duration == pytest.approx(1.5) and clip.start == 0.0 and clip.seconds == pytest.approx(1.5)
    assert dominant_freq(clip.samples, 16000) == pytest.approx(1000, abs=16000 / 24000)
    # identical channels keep their level: the downmix averages, it does not sum
    assert amplitude_at(clip.samples, 16000, 1000) == pytest.approx(0.5, abs=0.01)


def test_other_sample_rate(tmp_path: Path) -> None:
    path = write_audio(tmp_path / "a.wav", tone(440, 2.0, 44100)[None], 44100, "pcm_s16le")
    clip = load_audio(path, sample_rate=22050)
    assert clip.sample_rate == 22050 and len(clip.samples) == 44100
    assert dominant_freq(clip.samples, 22050) == pytest.approx(440, abs=1)


def test_downmix_averages_channels(tmp_path: Path) -> None:
    left, right = tone(440, 1.0, 44100), tone(1500, 1.0, 44100)
    clip = load_audio(write_audio(tmp_path / "lr.wav", np.stack([left, right]), 44100, "pcm_s16le"))
    assert amplitude_at(clip.samples, 16000, 440) == pytest.approx(0.25, abs=0.01)
    assert amplitude_at(clip.samples, 16000, 1500) == pytest.approx(0.25, abs=0.01)
    # opposite channels cancel: the mono track is their mean, not one channel
    opposite = load_audio(write_audio(tmp_path / "op.wav", np.stack([left, -left]), 44100, "pcm_s16le"))
    assert np.abs(opposite.samples).max() < 1e-3


def test_full_scale_stays_in_range(tmp_path: Path) -> None:
    x = tone(3000, 1.0, 44100, amp=1.0)
    for name, codec, fmt in (("f.wav", "pcm_s16le", None), ("f.m4a", "aac", "mp4")):
        clip = load_audio(write_audio(tmp_path / name, np.stack([x, x]), 44100, codec, fmt))
        assert np.abs(clip.samples).max() <= 1.0
        assert np.abs(clip.samples).max() > 0.9


def test_onset_is_sample_accurate_in_wav(tmp_path: Path) -> None:
    clip = load_audio(write_audio(tmp_path / "on.wav", tone(1000, 2.0, 44100, onset=0.5)[None], 44100, "pcm_s16le"))
    assert onset_seconds(clip) == pytest.approx(0.5, abs=1e-3)


def test_m4a_aac(tmp_path: Path) -> None:
    x = tone(1000, 2.0, 44100, onset=0.5)
    clip = load_audio(write_audio(tmp_path / "a.m4a", x[None], 44100, "aac", fmt="mp4"))
    assert clip.sample_rate == 16000 and clip.duration == pytest.approx(2.0)
    # the decoder's end padding is dropped: the clip is as long as the stream
    assert len(clip.samples) == 32000
    assert dominant_freq(clip.samples[16000:], 16000) == pytest.approx(1000, abs=1)
    # the encoder's priming samples are removed (edit list): the tone starts where it was written
    assert onset_seconds(clip) == pytest.approx(0.5, abs=0.005)


def test_mp3(tmp_path: Path) -> None:
    if "libmp3lame" not in av.codecs_available:
        pytest.skip("this PyAV build has no MP3 encoder")
    clip = load_audio(write_audio(tmp_path / "a.mp3", tone(1000, 2.0, 44100)[None], 44100, "libmp3lame"))
    assert clip.duration == pytest.approx(2.0, abs=0.05)
    assert dominant_freq(clip.samples, 16000) == pytest.approx(1000, abs=1)


def test_audio_track_of_a_video(tmp_path: Path) -> None:
    from harness.data.video import load_video

    audio = tone(1000, 3.0, 16000, onset=1.0)
    path = write_video(tmp_path / "av.mp4", 3.0, audio=audio)
    clip = load_audio(path)
    assert clip.duration == pytest.approx(3.0) and len(clip.samples) == 48000
    assert onset_seconds(clip) == pytest.approx(1.0, abs=0.005)
    assert dominant_freq(clip.samples[16000:], 16000) == pytest.approx(1000, abs=1)
    assert load_video(path, 4).frames.shape == (4, 64, 64, 3)  # the video track still reads


def test_max_seconds_stops_early(tmp_path: Path) -> None:
    path = write_video(tmp_path / "av.mp4", 3.0, audio=tone(500, 3.0, 16000))
    clip = load_audio(path, max_seconds=1.25)
    assert len(clip.samples) == 20000
    assert clip.duration == pytest.approx(3.0)  # the source's length, not the clip's


def test_video_without_audio_track(tmp_path: Path) -> None:
    path = write_video(tmp_path / "silent.mp4", 1.0)
    with pytest.raises(AudioDecodeError, match="the file has no audio track") as info:
        load_audio(path)
    assert str(path) in str(info.value) and info.value.path == str(path)
    assert isinstance(info.value, HarnessError)


def test_missing_empty_and_garbage_files(tmp_path: Path) -> None:
    with pytest.raises(AudioDecodeError, match="file not found") as info:
        load_audio(tmp_path / "nope.wav")
    assert "nope.wav" in str(info.value)
    (tmp_path / "empty.wav").write_bytes(b"")
    with pytest.raises(AudioDecodeError, match="empty"):
        load_audio(tmp_path / "empty.wav")
    (tmp_path / "junk.m4a").write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(AudioDecodeError, match="junk.m4a"):
        load_audio(tmp_path / "junk.m4a")
    with pytest.raises(AudioDecodeError, match="not a regular file"):
        load_audio(tmp_path)


def test_truncated_wav_still_gives_what_is_there_or_a_clear_error(tmp_path: Path) -> None:
    path = write_audio(tmp_path / "t.wav", tone(1000, 2.0, 16000)[None], 16000, "pcm_s16le")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    clip = load_audio(path)  # PCM has no frames to break: the first half decodes
    assert 0.9 < clip.seconds < 1.1
    path.write_bytes(data[:20])  # not even a header
    with pytest.raises(AudioDecodeError, match="t.wav"):
        load_audio(path)


@pytest.mark.parametrize("kwargs", [{"sample_rate": 0}, {"sample_rate": 16000.0}, {"sample_rate": True},
                                    {"max_seconds": 0}, {"max_seconds": math.inf}, {"max_seconds": "1"}])
def test_bad_arguments(tmp_path: Path, kwargs: dict) -> None:
    with pytest.raises(ValueError):
        load_audio(tmp_path / "whatever.wav", **kwargs)


# ----------------------------------------------------------------------------- features


def test_omni_feature_extractor_settings() -> None:
    fe = omni_feature_extractor()
    assert (fe.feature_size, fe.sampling_rate, fe.hop_length, fe.n_fft) == (128, 16000, 160, 400)
    assert (fe.chunk_length, fe.n_samples, fe.nb_max_frames) == (300, 4_800_000, 30000)
    assert fe.return_attention_mask and fe.padding_value == 0.0 and fe.dither == 0.0
    assert fe.padding_side == "right"


def _clip(samples: np.ndarray, sample_rate: int = 16000) -> AudioClip:
    return AudioClip(samples=samples.astype(np.float32), sample_rate=sample_rate, start=0.0,
                     duration=len(samples) / sample_rate)


@pytest.mark.parametrize("n", [1, 159, 160, 161, 16000, 24000, 24001])
def test_log_mel_shape_is_one_frame_per_hop(n: int) -> None:
    feats = log_mel_features(_clip(np.random.default_rng(n).uniform(-0.5, 0.5, n)))
    assert feats.dtype == np.float32 and feats.shape == (128, math.ceil(n / 160))


def _slaney_mel(freq: float) -> float:
    """Slaney's mel scale (librosa's default, which Whisper's filters use): linear below
    1 kHz at 3 / 200 mel per Hz, logarithmic above with 27 mel per factor 6.4."""
    if freq < 1000:
        return 3 * freq / 200
    return 15 + 27 * math.log(freq / 1000) / math.log(6.4)


@pytest.mark.parametrize("freq", [300.0, 1000.0, 3000.0])
def test_tone_energy_lands_in_its_mel_bin(freq: float) -> None:
    feats = log_mel_features(_clip(tone(freq, 1.0, 16000)))  # [128, 100]
    # 128 triangular filters with centres evenly spaced in mel between 0 Hz and 8 kHz
    expected = _slaney_mel(freq) / _slaney_mel(8000) * 129 - 1
    assert abs(int(np.argmax(feats.mean(axis=1))) - expected) <= 1.0


def test_equals_the_processor_call_of_the_extractor() -> None:
    """What Qwen2_5OmniProcessor does: pad to 300 s with an attention mask; the model keeps
    the frames the mask marks (Qwen2_5OmniThinkerForConditionalGeneration.get_audio_features)."""
    fe = omni_feature_extractor()
    rng = np.random.default_rng(0)
    for n in (400, 12345, 48000):
        samples = (rng.uniform(-1, 1, n) * np.linspace(0.1, 1, n)).astype(np.float32)  # loudest at the end
        out = fe(samples, sampling_rate=16000, padding="max_length", return_attention_mask=True, return_tensors="np")
        mask = out["attention_mask"][0].astype(bool)  # [30000]
        direct = out["input_features"][0][:, mask]  # [128, valid]
        ours = log_mel_features(_clip(samples), fe)
        assert ours.shape == direct.shape
        assert np.array_equal(ours, direct)


def test_longer_than_300_seconds_is_truncated_like_the_processor() -> None:
    samples = np.random.default_rng(0).uniform(-0.1, 0.1, 301 * 16000).astype(np.float32)
    assert log_mel_features(_clip(samples)).shape == (128, 30000)


def test_log_mel_refuses_another_sample_rate() -> None:
    with pytest.raises(ValueError, match="sample_rate=16000"):
        log_mel_features(_clip(tone(440, 1.0, 22050), sample_rate=22050))


def test_audio_token_count_matches_transformers() -> None:
    from transformers.models.qwen2_5_omni.modeling_qwen2_5_omni import Qwen2_5OmniAudioEncoder

    frames = torch.arange(0, 30001)
    # the method does not read `self`
    _, expected = Qwen2_5OmniAudioEncoder._get_feat_extract_output_lengths(None, frames)
    ours = torch.tensor([audio_token_count(int(n)) for n in frames])
    assert torch.equal(ours, expected)
    assert audio_token_count(100) == AUDIO_TOKENS_PER_SECOND
    assert audio_token_count(30000) == 300 * AUDIO_TOKENS_PER_SECOND


def test_audio_token_count_rejects_bad_input() -> None:
    for bad in (-1, 1.5, True, "3"):
        with pytest.raises(ValueError):
            audio_token_count(bad)


def test_audio_file_to_tokens_end_to_end(tmp_path: Path) -> None:
    clip = load_audio(write_audio(tmp_path / "a.m4a", tone(800, 2.0, 44100)[None], 44100, "aac", fmt="mp4"))
    feats = log_mel_features(clip)
    assert feats.shape == (128, 200)
    assert audio_token_count(feats.shape[1]) == 2 * AUDIO_TOKENS_PER_SECOND


# ----------------------------------------------------------------------------- resampling paths


def _frame(channels: np.ndarray, sample_rate: int, pts: int) -> av.AudioFrame:
    """A decoded-like planar float frame of float32 [C, n] with a timestamp."""
    from fractions import Fraction

    layout = "mono" if channels.shape[0] == 1 else "stereo"
    frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(channels), format="fltp", layout=layout)
    frame.sample_rate, frame.pts, frame.time_base = sample_rate, pts, Fraction(1, sample_rate)
    return frame


def test_format_change_mid_stream_gets_a_new_resampler() -> None:
    from harness.data.audio import _resample_mono

    first = tone(440, 1.0, 44100)
    second = tone(1500, 1.0, 48000)
    frames = [_frame(np.stack([first, first]), 44100, 0), _frame(second[None], 48000, 48000)]
    chunks, start = _resample_mono(frames, 16000, None)
    samples = np.concatenate(chunks)  # [~32000]
    assert start == 0.0 and abs(len(samples) - 32000) <= 2
    assert dominant_freq(samples[:15000], 16000) == pytest.approx(440, abs=2)
    assert dominant_freq(samples[17000:], 16000) == pytest.approx(1500, abs=2)


def test_pyav_without_resampler_options_averages_channels(tmp_path: Path, monkeypatch) -> None:
    """Older PyAV has no `options` argument: the channels are kept and averaged instead, which
    is the same stereo downmix."""
    left, right = tone(440, 1.0, 44100), tone(1500, 1.0, 44100)
    path = write_audio(tmp_path / "lr.wav", np.stack([left, right]), 44100, "pcm_s16le")
    reference = load_audio(path).samples
    real = av.AudioResampler

    def old_resampler(format=None, layout=None, rate=None, frame_size=None, **kwargs):
        if kwargs:
            raise TypeError("unexpected keyword argument 'options'")
        return real(format=format, layout=layout, rate=rate, frame_size=frame_size)

    monkeypatch.setattr(av, "AudioResampler", old_resampler)
    fallback = load_audio(path).samples
    assert fallback.shape == reference.shape
    assert np.abs(fallback - reference).max() < 1e-3
    assert amplitude_at(fallback, 16000, 440) == pytest.approx(0.25, abs=0.01)
