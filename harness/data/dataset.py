"""QA datasets for the recipes: records from a jsonl split (text, image, video, audio or
video with its audio track), the prompt and target text of each, each record's media decoded
on demand, a resumable shuffled order, and a ledger of what was skipped and why.

Prompt format (ours, in the spirit of the authors' reasoning template): the media, the
question with its options, then an instruction to reason inside <think></think> and answer
with the option letter inside <answer></answer> (for other problem types: the answer
itself). An EasyR1-style question that marks where its images go ("<image>" once per image)
keeps them there. CoT-SFT targets are `<think>{reasoning}</think><answer>{letter}</answer>`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from harness.data.audio import AudioDecodeError, load_audio
from harness.data.image import ImageDecodeError, load_image
from harness.data.records import Record, SkippedLine, media_problem, read_jsonl, record_media_kinds
from harness.data.video import VideoClip, VideoDecodeError, load_video
from harness.errors import HarnessError

log = logging.getLogger(__name__)

REASONING_INSTRUCTION = (
    "Think step by step inside <think> </think> tags, then give only the option letter "
    "inside <answer> </answer> tags."
)
FREE_FORM_INSTRUCTION = (
    "Think step by step inside <think> </think> tags, then give only the answer, a word or "
    "a short phrase, inside <answer> </answer> tags."
)
NUMBER_INSTRUCTION = (
    "Think step by step inside <think> </think> tags, then give only the final answer, a "
    "number or an expression, inside <answer> </answer> tags."
)
IMAGE_MARKER = "<image>"  # EasyR1 / Long-RL: where each image goes in the question


def question_text(record: Record) -> str:
    instruction = {"multiple choice": REASONING_INSTRUCTION, "numerical": NUMBER_INSTRUCTION,
                   "math": NUMBER_INSTRUCTION}.get(record.problem_type, FREE_FORM_INSTRUCTION)
    return f"{record.problem}\n{instruction}"


def prompt_content(record: Record) -> tuple[str | list[dict], list[str]]:
    """What `VideoLM.chat_prompt_ids(question, media=kinds)` takes for a record: (the
    question text, its media kinds placed before it), or, for a question marking its images'
    places, (the user content as a list of text and image items, [])."""
    kinds = record_media_kinds(record)
    text = question_text(record)
    if record.data_type != "image" or text.count(IMAGE_MARKER) != len(kinds):
        return text.replace(IMAGE_MARKER, "") if record.data_type == "image" else text, kinds
    content: list[dict] = []
    for i, piece in enumerate(text.split(IMAGE_MARKER)):
        if i:
            content.append({"type": "image"})
        if piece:
            content.append({"type": "text", "text": piece})
    return content, []


def prompt_ids(model, record: Record, media: list[Medium] | None = None):
    """The chat prompt token ids [L] of a record for `model` (a `VideoLM`); `media`, the
    record's loaded media, give each image's size (vila's tiling makes its text depend on it)."""
    question, kinds = prompt_content(record)
    sizes = [tuple(m.data.shape[:2]) for m in media or () if m.kind == "image" and m.data is not None]
    return model.chat_prompt_ids(question, media=kinds, image_sizes=sizes or None)


def sft_target(record: Record) -> str:
    return f"<think>{record.reasoning}</think>{record.answer}"


class SkipBudgetExceeded(HarnessError, RuntimeError):
    """More records were skipped than the run allows; the message lists them."""


@dataclass
class SkipLedger:
    """What was skipped (malformed lines, unreadable videos) and why, and the share of video
    decodes that failed.

    A split whose malformed lines exceed `max_fraction` is refused when it is read
    (`QADataset`). `check()` raises once more than `max_fraction` of the decodes
    attempted failed, listing what was skipped, so a run on broken data stops early instead
    of training on a fraction of it. Data-parallel ranks decode only their own share of the
    videos: `check(reduce=...)` sums the tally over the ranks first, so every rank judges the
    same global share and all of them stop together; for that, a ledger must count only
    decodes every rank of a data-parallel group counts alike (the training split's, not the
    rank-0-only evaluation's: give a held-out split its own ledger). The tally covers this
    process's lifetime: a resumed run starts it afresh.
    """

    max_fraction: float
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (what, why), this process's
    decodes: list[int] = field(default_factory=lambda: [0, 0])  # [failed, attempted], this process's
    totals: list[int] = field(default_factory=lambda: [0, 0])  # [failed, attempted] over the ranks at the last check()

    def skip(self, what: str, why: str, *, logged: bool = False) -> None:
        """Record a skip; `logged`: its warning was already written (by the record reader)."""
        if not logged:
            log.warning("skipping %s: %s", what, why)
        self.skipped.append((what, why))

    def decoded(self, failure: tuple[str, str] | None = None) -> None:
        """Count one decode attempt; `failure` = (what, why) when it failed."""
        self.decodes[1] += 1
        if failure is not None:
            self.decodes[0] += 1
            self.skip(*failure)

    def check(self, reduce: Callable[[list[int]], list[int]] | None = None) -> None:
        """Raise `SkipBudgetExceeded` past the budget. `reduce` (a collective: every rank
        must call it) sums `[failed, attempted]` over the data-parallel ranks."""
        self.totals = reduce(list(self.decodes)) if reduce is not None else list(self.decodes)
        failed, attempted = self.totals
        if attempted and failed / attempted > self.max_fraction:
            over = "" if reduce is None else " over all data-parallel ranks (this rank's skips listed)"
            raise SkipBudgetExceeded(f"{failed} of {attempted} media decodes failed{over} "
                                     f"(> {self.max_fraction:.0%} allowed):\n{self.listing()}")

    def listing(self) -> str:
        return "\n".join(f"  {w}: {y}" for w, y in self.skipped[:50])


@dataclass
class Medium:
    """One medium of a record, as its prompt takes it."""

    kind: str  # "image" | "video" | "audio"
    path: Path
    data: object = None  # VideoClip | [H, W, 3] uint8 | AudioClip; None until loaded (or on disk cache)


class QADataset:
    """Records of one jsonl split; media are decoded on demand (`load_medium`)."""

    def __init__(self, path: str | Path, num_frames: int, ledger: SkipLedger,
                 video_dir: str | Path | None = None, sampler: str = "uniform", fps: float | None = None,
                 media_kinds: tuple[str, ...] = ("video",), audio_rate: int = 16000, audio_in_video: bool = False):
        """`video_dir`: where the records' media paths are relative to (the released
        LongVideo-Reason keeps its videos apart from its jsonl files); default the split's
        own folder. `sampler`: which frames (`harness.data.video.load_video`); `fps`: at
        this rate with `num_frames` as the cap, else `num_frames` spread over the video.
        `media_kinds`: what the model takes; records needing other media are refused when
        read (counted as malformed lines). `audio_rate`: samples per second audio is
        resampled to (the model's feature extractor's). `audio_in_video`: every video record
        is read as video+audio (its own audio track too)."""
        if audio_in_video and "audio" not in media_kinds:
            raise ValueError("data.audio_in_video needs a model that takes audio (model.family qwen2_5_omni)")
        self.path = Path(path)
        if not self.path.exists():
            raise FileNotFoundError(f"dataset split {self.path} does not exist")
        self.root = Path(video_dir) if video_dir else self.path.parent
        if not self.root.is_dir():
            raise FileNotFoundError(f"video folder {self.root} does not exist (data.video_dir / data.eval_video_dir)")
        self.num_frames = num_frames
        self.sampler = sampler
        self.fps = fps
        self.audio_rate = audio_rate
        self.ledger = ledger
        bad: list[SkippedLine] = []
        self.records: list[Record] = list(read_jsonl(self.path, skipped=bad, usable=media_problem(media_kinds)))
        for rec in self.records if audio_in_video else ():
            if rec.data_type == "video":
                rec.data_type = "video+audio"
        self.malformed = len(bad)  # lines refused when read (logged in the metrics too)
        for line in bad:
            ledger.skip(f"{self.path}:{line.line}", line.reason, logged=True)
        if not self.records:
            raise ValueError(f"dataset split {self.path} holds no valid records")
        read = len(self.records) + len(bad)
        if len(bad) / read > ledger.max_fraction:  # judged per split: every rank reads it alike
            raise SkipBudgetExceeded(f"{len(bad)} of {read} lines of {self.path} malformed "
                                     f"(> {ledger.max_fraction:.0%} allowed):\n{ledger.listing()}")

    def __len__(self) -> int:
        return len(self.records)

    def video_path(self, record: Record) -> Path:
        return self.root / record.videos[0]  # its only video: others are refused when read

    def counters(self) -> dict[str, float]:
        """The split's tallies for a step's metrics: decode failures (all DP ranks, this run)
        and lines refused when the split was read."""
        return {"data/decode_failures": float(self.ledger.totals[0]), "data/malformed_lines": float(self.malformed)}

    def media(self, record: Record) -> list[Medium]:
        """The record's media in prompt order, not yet loaded (video+audio: the video file's
        frames, then its own audio track)."""
        paths = [self.root / p for p in record.media_paths]
        if record.data_type == "video+audio":
            paths = paths[:1] * 2
        return [Medium(kind, path) for kind, path in zip(record_media_kinds(record), paths, strict=True)]

    def load_medium(self, record: Record, medium: Medium, num_frames: int | None = None) -> bool:
        """Decode `medium` into `medium.data`; False (recorded in the ledger) when it cannot
        be decoded. A video: the dataset's frame sampling (`num_frames` as in `load_frames`)."""
        if medium.kind == "video":
            medium.data = self.load_frames(record, num_frames)
            return medium.data is not None
        try:
            if medium.kind == "image":
                medium.data = load_image(medium.path)
            else:
                medium.data = load_audio(medium.path, sample_rate=self.audio_rate)
        except (ImageDecodeError, AudioDecodeError) as err:
            self.ledger.decoded(failure=(f"{record.problem_id} ({medium.path})", str(err)))
            return False
        self.ledger.decoded()
        return True

    def load_frames(self, record: Record, num_frames: int | None = None) -> VideoClip | None:
        """Decode the record's sampled frames (`num_frames`, default the dataset's: the count,
        or the cap when sampling at `fps`), or None
        (recorded in the ledger) when the video cannot be decoded."""
        try:
            clip = load_video(self.video_path(record), num_frames or self.num_frames, sample_fps=self.fps,
                              sampler=self.sampler)
        except VideoDecodeError as err:
            self.ledger.decoded(failure=(f"{record.problem_id} ({self.video_path(record)})", str(err)))
            return None
        self.ledger.decoded()
        return clip


class EpochSampler:
    """A shuffled pass over `n` items per epoch, seeded per epoch, resumable from
    (epoch, position): `state()` / `load_state()` are what checkpoints store."""

    def __init__(self, n: int, seed: int, shuffle: bool = True):
        self.n, self.seed, self.shuffle = n, seed, shuffle
        self.epoch, self.pos = 0, 0
        self._order = self._permutation(0)

    def _permutation(self, epoch: int) -> np.ndarray:
        if not self.shuffle:
            return np.arange(self.n)
        return np.random.default_rng([self.seed, epoch]).permutation(self.n)

    def take(self, k: int) -> list[int]:
        out: list[int] = []
        while len(out) < k:
            if self.pos == self.n:
                self.epoch, self.pos = self.epoch + 1, 0
                self._order = self._permutation(self.epoch)
            step = min(k - len(out), self.n - self.pos)
            out.extend(int(i) for i in self._order[self.pos : self.pos + step])
            self.pos += step
        return out

    def state(self) -> dict[str, int]:
        return {"epoch": self.epoch, "pos": self.pos, "seed": self.seed, "n": self.n}

    def load_state(self, state: dict[str, int]) -> None:
        if state["n"] != self.n or state["seed"] != self.seed:
            raise ValueError(f"sampler state {state} does not match this dataset (n={self.n}, seed={self.seed})")
        self.epoch, self.pos = state["epoch"], state["pos"]
        self._order = self._permutation(self.epoch)
