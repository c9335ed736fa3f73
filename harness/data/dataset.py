"""Video QA datasets for the recipes: records from a jsonl split, the prompt and target
text of each, a resumable shuffled order, and a ledger of what was skipped and why.

Prompt format (ours, in the spirit of the authors' reasoning template): the question with
its options, then an instruction to reason inside <think></think> and answer with the
option letter inside <answer></answer> (for other problem types: the answer itself). CoT-SFT targets are
`<think>{reasoning}</think><answer>{letter}</answer>`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from harness.data.records import Record, SkippedLine, read_jsonl, video_recipe_problem
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


def question_text(record: Record) -> str:
    multiple_choice = record.problem_type == "multiple choice"
    return f"{record.problem}\n{REASONING_INSTRUCTION if multiple_choice else FREE_FORM_INSTRUCTION}"


def sft_target(record: Record) -> str:
    return f"<think>{record.reasoning}</think>{record.answer}"


class SkipBudgetExceeded(HarnessError, RuntimeError):
    """More records were skipped than the run allows; the message lists them."""


@dataclass
class SkipLedger:
    """What was skipped (malformed lines, unreadable videos) and why, and the share of video
    decodes that failed.

    A split whose malformed lines exceed `max_fraction` is refused when it is read
    (`VideoQADataset`). `check()` raises once more than `max_fraction` of the decodes
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
            raise SkipBudgetExceeded(f"{failed} of {attempted} video decodes failed{over} "
                                     f"(> {self.max_fraction:.0%} allowed):\n{self.listing()}")

    def listing(self) -> str:
        return "\n".join(f"  {w}: {y}" for w, y in self.skipped[:50])


class VideoQADataset:
    """Records of one jsonl split; videos are decoded on demand (`load_frames`)."""

    def __init__(self, path: str | Path, num_frames: int, ledger: SkipLedger,
                 video_dir: str | Path | None = None, sampler: str = "uniform", fps: float | None = None):
        """`video_dir`: where the records' video paths are relative to (the released
        LongVideo-Reason keeps its videos apart from its jsonl files); default the split's
        own folder. `sampler`: which frames (`harness.data.video.load_video`); `fps`: at
        this rate with `num_frames` as the cap, else `num_frames` spread over the video."""
        self.path = Path(path)
        if not self.path.exists():
            raise FileNotFoundError(f"dataset split {self.path} does not exist")
        self.root = Path(video_dir) if video_dir else self.path.parent
        if not self.root.is_dir():
            raise FileNotFoundError(f"video folder {self.root} does not exist (data.video_dir / data.eval_video_dir)")
        self.num_frames = num_frames
        self.sampler = sampler
        self.fps = fps
        self.ledger = ledger
        bad: list[SkippedLine] = []
        self.records: list[Record] = list(read_jsonl(self.path, skipped=bad, usable=video_recipe_problem))
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
