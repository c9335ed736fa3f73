"""Qwen2.5-Omni thinker prompts: how placeholders expand, and their 3-D M-RoPE positions.

A prompt holds images, videos and audios as placeholder spans. Text advances all three
position axes together; an image or video gets (time, row, column) indices from the
position after the text before it (time = int(grid * seconds_per_grid * 25), 25 position
ids per second); an audio's tokens are 40 ms each and advance all three axes by one per
token, so audio and video share one time scale. Text after a medium resumes at its
maximum + 1. With `use_audio_in_video`, a video and its audio track are one span,
`<|vision_bos|><|audio_bos|>` + time chunks + `<|audio_eos|><|vision_eos|>`: each chunk is
the video tokens of `seconds_per_chunk` seconds followed by that chunk's audio tokens.

Two implementations disagree (docs/omni-notes.md has the details):

* `rule="vllm"`: vLLM 0.32's `Qwen2_5OmniThinkerForConditionalGeneration.
  get_mrope_input_positions` and the layout of its processor
  (`omni_get_updates_use_audio_in_video`). The rollout engine computes these, so the
  trainer must use them for prompts vLLM samples from. For a video with audio, vLLM
  anchors the interleaved block at `<|audio_bos|>` (its placeholder's first token) yet
  counts only the video and audio tokens, so the whole block sits one token early: the
  audio_bos takes the first video token's position, the last audio token and both eos
  tokens continue as text after the block's maximum. Its processor lays the span out in
  2-s buckets of the video's time indices, each bucket's video tokens followed by up to
  2 s of audio (the rest of the audio after the last bucket); its positions skip empty
  buckets, so once a temporal grid spans more than 2 s (under one frame pair per 2 s,
  i.e. long videos) they follow another token order than the prompt's.
* `rule="transformers"`: transformers 5.19 `get_rope_index` with the layout of
  `Qwen2_5OmniProcessor.replace_multimodal_special_tokens` (the Qwen team's reference code;
  vLLM matched it until 0.32, vllm-project/vllm#16878). The bos pair share one position and
  so do the eos pair, which resume after the *last chunk's* maximum; chunks come from
  `get_chunked_index`, which splits a video whose time step exceeds a chunk (fewer than
  1 frame pair per 2 s) into extra one-token chunks so that every audio chunk stays 2 s.

Images, audio alone and videos without audio get the same positions under both rules
(up to float rounding of the time index, reproduced here as each implementation rounds).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

RULES = ("vllm", "transformers")


# The released tokenizer's names for them (Qwen2.5-Omni added_tokens.json / chat template)
TOKEN_NAMES = {"image": "<|IMAGE|>", "video": "<|VIDEO|>", "audio": "<|AUDIO|>",
               "vision_bos": "<|vision_bos|>", "vision_eos": "<|vision_eos|>",
               "audio_bos": "<|audio_bos|>", "audio_eos": "<|audio_eos|>"}


@dataclass(frozen=True)
class OmniTokenIds:
    """Ids of the released tokenizer's media tokens (`<|IMAGE|>`, `<|VIDEO|>`, `<|AUDIO|>`,
    `<|vision_bos|>`, `<|vision_eos|>`, `<|audio_bos|>`, `<|audio_eos|>`)."""

    image: int
    video: int
    audio: int
    vision_bos: int
    vision_eos: int
    audio_bos: int
    audio_eos: int

    @classmethod
    def from_tokenizer(cls, tokenizer) -> OmniTokenIds:
        """From a tokenizer that has the released names (TOKEN_NAMES) as single tokens."""
        ids = {k: tokenizer.convert_tokens_to_ids(v) for k, v in TOKEN_NAMES.items()}
        unknown = [TOKEN_NAMES[k] for k, v in ids.items() if v is None or v == tokenizer.unk_token_id]
        if unknown:
            raise ValueError(f"the tokenizer lacks {unknown}")
        return cls(**ids)

    @classmethod
    def from_config(cls, config) -> OmniTokenIds:
        """From a `Qwen2_5OmniThinkerConfig` (the names its `get_rope_index` reads)."""
        return cls(image=config.image_token_id, video=config.video_token_id,
                   audio=config.audio_token_id, vision_bos=config.vision_start_token_id,
                   vision_eos=config.vision_end_token_id, audio_bos=config.audio_start_token_id,
                   audio_eos=config.audio_end_token_id)


@dataclass(frozen=True)
class OmniTiming:
    """The thinker config values that place media in time. vLLM reads the rate from
    `vision_config.tokens_per_second` (25 when absent), transformers from the thinker's
    `position_id_per_seconds`; a config must give both the same value."""

    position_id_per_seconds: float = 25
    seconds_per_chunk: float = 2  # an int in the config class
    spatial_merge_size: int = 2

    @property
    def tokens_per_chunk(self) -> int:
        n = int(self.position_id_per_seconds * self.seconds_per_chunk)
        if n < 1:
            raise ValueError(f"position_id_per_seconds * seconds_per_chunk must be >= 1, got {n}")
        return n

    @classmethod
    def from_config(cls, config) -> OmniTiming:
        return cls(position_id_per_seconds=config.position_id_per_seconds,
                   seconds_per_chunk=config.seconds_per_chunk,
                   spatial_merge_size=config.vision_config.spatial_merge_size)


DEFAULT_TIMING = OmniTiming()  # the released thinker's values


def audio_token_count(feature_frames: int) -> int:
    """Audio tokens of `feature_frames` log-mel frames (10 ms each): the tower's stride-2
    conv then its stride-2 average pool (transformers `_get_feat_extract_output_lengths`,
    the processor's expansion, vLLM `_compute_audio_token_count`): 25 tokens per second."""
    after_conv = (feature_frames - 1) // 2 + 1
    return (after_conv - 2) // 2 + 1


def _check_rule(rule: str) -> None:
    if rule not in RULES:
        raise ValueError(f"unknown position rule {rule!r}; choose one of {RULES}")


def _time_index(grid_t: int, seconds: float, rate: float, arith: str) -> np.ndarray:
    """Temporal position of each temporal grid [grid_t], rounded as each caller does: the
    values differ near integers (e.g. 2/3 s per grid at t=3: 49.99.. in float64, 50.00.. in
    float32), and that decides a token's chunk."""
    if arith == "f64_factor":
        # vLLM positions: arange * (seconds * rate) in float64, `seconds` read with .item()
        # from its float32 `second_per_grid_ts` tensor (as its processor and our rollout
        # requests build it), so the float32 value of `seconds`
        return (np.arange(grid_t) * (float(np.float32(seconds)) * rate)).astype(np.int64)
    if arith == "f64":  # transformers' processor: (arange * seconds) * rate, float64
        return np.floor(np.arange(grid_t) * float(seconds) * rate).astype(np.int64)
    # vLLM's processor and transformers' get_rope_index: a torch float32 product
    return (torch.arange(grid_t) * torch.tensor(float(seconds), dtype=torch.float32) * rate).long().numpy()


def _chunk_bounds(values: np.ndarray, per_chunk: int) -> list[tuple[int, int]]:
    """transformers' `get_chunked_index`: [start, end) slices of the non-decreasing `values`,
    a new slice where a value reaches the next multiple of `per_chunk`. The threshold moves
    one chunk per token, so a jump over several chunks yields one-token slices until it has
    caught up: time gaps are filled with single tokens, not skipped."""
    bounds, start, chunk = [], 0, 1
    for i, v in enumerate(values.tolist()):
        if v >= chunk * per_chunk:
            bounds.append((start, i))
            start, chunk = i, chunk + 1
    bounds.append((start, len(values)))
    return bounds


def video_audio_chunks(
    grid_thw: Sequence[int],
    seconds_per_grid: float,
    audio_tokens: int,
    timing: OmniTiming = DEFAULT_TIMING,
    rule: str = "vllm",
) -> list[tuple[str, int, int]]:
    """The order of a video's and its audio's tokens inside a `use_audio_in_video` span:
    ("video", a, b) / ("audio", a, b) slices of the video's rows (temporal-grid major, as
    the vision tower emits them after the merge) and of the audio's rows, in sequence order.
    Concatenating those rows gives the span's embeddings between `<|audio_bos|>` and
    `<|audio_eos|>`. `grid_thw`: the video_grid_thw row (patches, before the merge)."""
    _check_rule(rule)
    t, h, w = (int(x) for x in grid_thw)
    m = timing.spatial_merge_size
    per_grid = (h // m) * (w // m)  # video tokens per temporal grid
    per_chunk = timing.tokens_per_chunk
    out: list[tuple[str, int, int]] = []
    if rule == "vllm":
        # omni_get_updates_use_audio_in_video: bucket the grids by time // chunk; after each
        # bucket, empty ones included, up to one chunk of audio; the rest of the audio at
        # the end. (Its positions skip the empty buckets: see _vllm_interleaved.)
        tidx = _time_index(t, seconds_per_grid, timing.position_id_per_seconds, "f32")
        grid, used = 0, 0
        for count in np.bincount(tidx // per_chunk).tolist():  # grids per bucket
            if count:
                out.append(("video", grid * per_grid, (grid + count) * per_grid))
                grid += count
            take = min(per_chunk, audio_tokens - used)
            if take > 0:
                out.append(("audio", used, used + take))
                used += take
        if used < audio_tokens:
            out.append(("audio", used, audio_tokens))
        return out
    # replace_multimodal_special_tokens: chunk video tokens by their time value and audio
    # tokens by their index; pair chunk j of each, video first.
    tidx = _time_index(t, seconds_per_grid, timing.position_id_per_seconds, "f64")
    video = _chunk_bounds(np.repeat(tidx, per_grid), per_chunk)
    audio = _chunk_bounds(np.arange(audio_tokens), per_chunk)
    for j in range(max(len(video), len(audio))):
        for kind, bounds in (("video", video), ("audio", audio)):
            if j < len(bounds) and bounds[j][1] > bounds[j][0]:
                out.append((kind, *bounds[j]))
    return out


def video_with_audio_ids(
    tokens: OmniTokenIds,
    grid_thw: Sequence[int],
    seconds_per_grid: float,
    audio_tokens: int,
    timing: OmniTiming = DEFAULT_TIMING,
    rule: str = "vllm",
) -> list[int]:
    """Token ids of a video-with-audio span: `<|vision_bos|><|audio_bos|>`, the chunks of
    `video_audio_chunks`, `<|audio_eos|><|vision_eos|>` (both processors' order)."""
    ids = [tokens.vision_bos, tokens.audio_bos]
    for kind, a, b in video_audio_chunks(grid_thw, seconds_per_grid, audio_tokens, timing, rule):
        ids += [tokens.video if kind == "video" else tokens.audio] * (b - a)
    return ids + [tokens.audio_eos, tokens.vision_eos]


def _grid_tokens(grid_thw: Sequence[int], merge: int) -> int:
    t, h, w = (int(x) for x in grid_thw)
    return t * (h // merge) * (w // merge)


def expand_placeholders(
    input_ids: torch.Tensor,
    tokens: OmniTokenIds,
    image_grid_thw: Sequence[Sequence[int]] = (),
    video_grid_thw: Sequence[Sequence[int]] = (),
    video_seconds_per_grid: Sequence[float] = (),
    audio_tokens: Sequence[int] = (),
    use_audio_in_video: bool = False,
    timing: OmniTiming = DEFAULT_TIMING,
    rule: str = "vllm",
) -> torch.Tensor:
    """Expand a rendered prompt [L] whose media are single placeholders
    (`<|vision_bos|><|IMAGE|><|vision_eos|>`, `<|vision_bos|><|VIDEO|><|vision_eos|>`,
    `<|audio_bos|><|AUDIO|><|audio_eos|>`) to their token counts, as the processors do:
    [L']. `audio_tokens`: per audio in prompt order, a video's own track counted where the
    video is when `use_audio_in_video` (every video then has one)."""
    _check_rule(rule)
    ids = input_ids.tolist()
    m = timing.spatial_merge_size
    images, videos = iter(image_grid_thw), iter(video_grid_thw)
    seconds, audios = iter(video_seconds_per_grid), iter(audio_tokens)
    out: list[int] = []
    for i, tok in enumerate(ids):
        if tok == tokens.image:
            out += [tok] * _grid_tokens(_next(images, "image_grid_thw"), m)
        elif tok == tokens.audio:
            out += [tok] * _next(audios, "audio_tokens")
        elif tok == tokens.video and not use_audio_in_video:
            out += [tok] * _grid_tokens(_next(videos, "video_grid_thw"), m)
        elif tok == tokens.video:
            if ids[i - 1 : i + 2] != [tokens.vision_bos, tok, tokens.vision_eos]:
                raise ValueError(f"video placeholder at {i} is not <|vision_bos|><|VIDEO|><|vision_eos|>")
            grid, sec = _next(videos, "video_grid_thw"), _next(seconds, "video_seconds_per_grid")
            span = video_with_audio_ids(tokens, grid, sec, _next(audios, "audio_tokens"), timing, rule)
            out += span[1:-1]  # the vision markers are already in the prompt
        else:
            out.append(tok)
    for name, rest in (("image_grid_thw", images), ("video_grid_thw", videos), ("audio_tokens", audios)):
        if next(rest, None) is not None:
            raise ValueError(f"more {name} entries than placeholders in the prompt")
    return torch.tensor(out, dtype=torch.long)


def _next(items, name: str):
    item = next(items, None)
    if item is None:
        raise ValueError(f"the prompt has more placeholders than {name} entries")
    return item


def _linear(n: int, start: int) -> torch.Tensor:
    return (torch.arange(n) + start).expand(3, -1)  # [3, n]


def _grid_positions(tidx: np.ndarray, h: int, w: int, start: int) -> torch.Tensor:
    """(time, row, column) + start of every token of a t x h x w grid, t-major: [3, t*h*w]."""
    tt = torch.from_numpy(np.ascontiguousarray(tidx)).view(-1, 1, 1).expand(-1, h, w)
    hh = torch.arange(h).view(1, -1, 1).expand(len(tidx), -1, w)
    ww = torch.arange(w).view(1, 1, -1).expand(len(tidx), h, -1)
    return torch.stack([tt, hh, ww]).reshape(3, -1) + start


class _Positions:
    """Positions appended part by part, as both implementations build them: text resumes at
    the last appended part's maximum + 1."""

    def __init__(self) -> None:
        self.parts: list[torch.Tensor] = []  # [3, n] each, in sequence order
        self.next = 0  # position of the next text token
        self.placed = 0  # tokens placed so far

    def add(self, part: torch.Tensor) -> None:
        """Append the positions [3, n] of the next n tokens."""
        if part.shape[1]:
            self.parts.append(part)
            self.next = int(part.max()) + 1
            self.placed += part.shape[1]

    def text_until(self, index: int) -> None:
        self.add(_linear(index - self.placed, self.next))

    def result(self) -> torch.Tensor:
        return torch.cat(self.parts, dim=1) if self.parts else torch.zeros(3, 0, dtype=torch.long)


def omni_mrope_positions(
    input_ids: torch.Tensor,
    tokens: OmniTokenIds,
    image_grid_thw: Sequence[Sequence[int]] = (),
    video_grid_thw: Sequence[Sequence[int]] = (),
    video_seconds_per_grid: Sequence[float] = (),
    audio_tokens: Sequence[int] = (),
    use_audio_in_video: bool = False,
    timing: OmniTiming = DEFAULT_TIMING,
    rule: str = "vllm",
) -> torch.Tensor:
    """3-D positions [3, L] of one expanded prompt `input_ids` [L] (placeholders already at
    their token counts, e.g. by `expand_placeholders` with the same arguments). Media are
    matched to the grids / counts in prompt order; `audio_tokens` lists every audio, a
    video's own track where the video is when `use_audio_in_video`. Raises if a span's
    tokens do not match its grid or, for a video with audio, the rule's layout."""
    _check_rule(rule)
    ids = input_ids.tolist()
    m = timing.spatial_merge_size
    images, videos = iter(image_grid_thw), iter(video_grid_thw)
    seconds, audios = iter(video_seconds_per_grid), iter(audio_tokens)
    pos = _Positions()

    def expect(start: int, expected: list[int], what: str) -> None:
        if start < 0 or ids[start : start + len(expected)] != expected:
            raise ValueError(f"the {what} at token {max(start, 0)} does not match its grid / audio "
                             f"length and layout ({len(expected)} tokens expected)")

    i = 0
    while i < len(ids):
        tok = ids[i]
        if tok == tokens.image or (tok == tokens.video and not use_audio_in_video):
            kind = "image" if tok == tokens.image else "video"
            t, h, w = (int(x) for x in _next(images if kind == "image" else videos, f"{kind}_grid_thw"))
            h, w = h // m, w // m
            sec = 1.0 if kind == "image" else _next(seconds, "video_seconds_per_grid")
            expect(i, [tok] * (t * h * w), kind)
            pos.text_until(i)
            tidx = _time_index(t, sec, timing.position_id_per_seconds,
                               "f64_factor" if rule == "vllm" else "f32")
            pos.add(_grid_positions(tidx, h, w, pos.next))
        elif tok == tokens.audio:
            n = _next(audios, "audio_tokens")
            expect(i, [tok] * n, "audio")
            pos.text_until(i)
            pos.add(_linear(n, pos.next))
        elif tok == tokens.video:
            grid = [int(x) for x in _next(videos, "video_grid_thw")]
            sec = _next(seconds, "video_seconds_per_grid")
            n_audio = _next(audios, "audio_tokens")
            bos = i - 2  # the span starts at <|vision_bos|><|audio_bos|>
            span = video_with_audio_ids(tokens, grid, sec, n_audio, timing, rule)
            expect(bos, span, "video with audio")
            interleave = _vllm_interleaved if rule == "vllm" else _hf_interleaved
            interleave(pos, bos, grid, sec, n_audio, timing)
            i = bos + len(span)  # vLLM leaves the span's last tokens to the text after it
            continue
        else:
            i += 1
            continue
        i = pos.placed
    pos.text_until(len(ids))
    for name, rest in (("image_grid_thw", images), ("video_grid_thw", videos), ("audio_tokens", audios)):
        if next(rest, None) is not None:
            raise ValueError(f"more {name} entries than media in the prompt")
    return pos.result()  # [3, L]


def _vllm_interleaved(pos: _Positions, bos: int, grid, sec: float, n_audio: int, timing: OmniTiming) -> None:
    """vLLM 0.32 `_compute_interleaved_positions`, placed where its `get_mrope_input_positions`
    places it: from the placeholder's first token (the audio_bos, `bos + 1`), over as many
    tokens as there are video + audio tokens; text resumes at the last audio token. Unlike
    its processor's layout, it skips the empty time buckets (more than 2 s per grid), so
    there the positions follow another token order than the prompt's."""
    t, h, w = grid
    h, w = h // timing.spatial_merge_size, w // timing.spatial_merge_size
    per_chunk = timing.tokens_per_chunk
    pos.text_until(bos + 1)  # the text before, <|vision_bos|> included
    start = pos.next
    tidx = _time_index(t, sec, timing.position_id_per_seconds, "f64_factor")
    block, audio_next, used = [], start, 0
    for bucket in np.unique(tidx // per_chunk).tolist():  # the non-empty buckets, in order
        block.append(_grid_positions(tidx[tidx // per_chunk == bucket], h, w, start))
        take = min(per_chunk, n_audio - used)
        if take > 0:
            block.append(_linear(take, audio_next))
            audio_next, used = audio_next + take, used + take
    if used < n_audio:
        block.append(_linear(n_audio - used, audio_next))
    pos.add(torch.cat(block, dim=1))  # [3, t*h*w + n_audio], one token early


def _hf_interleaved(pos: _Positions, bos: int, grid, sec: float, n_audio: int, timing: OmniTiming) -> None:
    """transformers 5.19 `get_rope_index`, its use_audio_in_video branch."""
    t, h, w = grid
    h, w = h // timing.spatial_merge_size, w // timing.spatial_merge_size
    per_chunk = timing.tokens_per_chunk
    pos.text_until(bos)
    pos.add(_linear(1, pos.next).expand(3, 2))  # <|vision_bos|><|audio_bos|>: one position
    base = pos.next
    tidx = _time_index(t, sec, timing.position_id_per_seconds, "f32")
    video = _grid_positions(tidx, h, w, base)  # [3, t*h*w]
    audio = _linear(n_audio, base)  # [3, n_audio]
    vb = _chunk_bounds(np.repeat(tidx, h * w), per_chunk)
    ab = _chunk_bounds(np.arange(n_audio), per_chunk)
    for j in range(max(len(vb), len(ab))):
        if j < len(vb):
            pos.add(video[:, vb[j][0] : vb[j][1]])
        if j < len(ab):
            pos.add(audio[:, ab[j][0] : ab[j][1]])
    # <|audio_eos|><|vision_eos|>: one position, after the last chunk's maximum (which
    # need not be the span's)
    pos.add(_linear(1, pos.next).expand(3, 2))
