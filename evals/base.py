"""What every benchmark adapter provides, and the shared multiple-choice scoring.

An adapter (one file per benchmark) reads its benchmark's published local layout into
`Item`s, renders the benchmark's own prompt for an item, and scores a response. The runner
(`evals/runner.py`) does the rest: decoding, batching, resuming, counting, writing.

A prompt change must show: `prompt_hash` renders a fixed probe item (with and without
subtitles) and hashes it; every results file records it, and tests/evals pins it.
"""

from __future__ import annotations

import hashlib
import logging
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from evals.extract import extract_choice, option_letters

log = logging.getLogger(__name__)

# Video file endings the releases use: Video-MME's zips hold .mp4, .MP4 and .mkv files (the
# lmms-eval loader tries them in this order); ActivityNet and LongVideo-Reason add .webm.
VIDEO_EXTS = (".mp4", ".MP4", ".mkv", ".webm")


def read_parquet(files: list[Path]) -> list[dict]:
    """Every row of the given parquet files, in order, as dicts (the lmms-eval / HF layouts)."""
    import pyarrow.parquet as pq

    return [row for f in files for row in pq.read_table(f).to_pylist()]


def find_video(folders: list[Path], stem: str, exts: tuple[str, ...] = VIDEO_EXTS) -> Path:
    """The first `folder/stem+ext` that exists; else the first candidate, which the runner
    then reports as a missing video (with its path)."""
    candidates = [Path(f) / f"{stem}{e}" for f in folders for e in exts]
    return next((c for c in candidates if c.is_file()), candidates[0])


@dataclass
class Item:
    qid: str
    video: Path
    question: str
    options: list[str]  # option texts without their letters ([] for open questions)
    answer: str  # the correct letter (multiple choice) or the reference text (open)
    fields: dict[str, str] = field(default_factory=dict)  # breakdown keys (duration, ...)
    subtitle: Path | None = None  # where this video's subtitles would be

    @property
    def letters(self) -> str:
        return option_letters(len(self.options))


class Benchmark:
    """Base: subclasses set the class attributes and implement `load` and `prompt`."""

    name = ""
    version = ""  # bump when the items read, the prompt or the scoring change
    source = ""  # where the data comes from and how to lay it out (shown in docs/errors)
    breakdowns: tuple[str, ...] = ()  # Item.fields keys reported as per-group accuracy
    supports_subtitles = False
    needs_judge = False  # open answers scored by an LLM judge (checked before the model loads)
    modality = "video"  # or "text": items name no video, prompts hold the question alone

    def __init__(self) -> None:
        self.dropped: list[dict] = []  # records `load` could not use: where and why

    def drop(self, where: str, reason: str) -> None:
        """Leave out a record that cannot be scored, counted and listed in the results."""
        log.warning("%s: dropped: %s", where, reason)
        self.dropped.append({"where": where, "reason": reason})

    def load(self, root: Path) -> list[Item]:
        raise NotImplementedError

    def prompt(self, item: Item, subtitles: str | None = None) -> str:
        """The text after the video. `subtitles` is the selected subtitle block, or None
        when the run is without subtitles."""
        raise NotImplementedError

    def score(self, item: Item, response: str) -> dict:
        """Per-question result: `pred`, `correct` (bool), `unparsed` (bool)."""
        pred = extract_choice(response, item.letters)
        return {"pred": pred, "correct": pred == item.answer, "unparsed": pred == ""}

    def aggregate(self, rows: list[dict]) -> dict:
        """Scores of the answered questions: accuracy overall and per breakdown group."""
        scores: dict = {"accuracy": mean_correct(rows)}
        for key in self.breakdowns:
            scores[f"by_{key}"] = group_accuracy(rows, key)
        return scores

    def probe_item(self) -> Item:
        """Fixed record used for the prompt hash (four options, a subtitle file)."""
        return Item(
            qid="probe-1", video=Path("probe.mp4"), question="What happens first?",
            options=["A red cube appears.", "A blue ball rolls.", "Nothing moves.", "It rains."],
            answer="A", fields={}, subtitle=Path("probe.srt"),
        )

    def prompt_hash(self, subtitles: bool) -> str:
        text = self.prompt(self.probe_item(), "Probe subtitle line." if subtitles else None)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def describe_source(self) -> str:
        return f"{self.name}: {self.source}"


def mean_correct(rows: list[dict]) -> float | None:
    return sum(bool(r["correct"]) for r in rows) / len(rows) if rows else None


def group_accuracy(rows: list[dict], key: str) -> dict[str, dict]:
    groups: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        groups[str(r["fields"].get(key, "unknown"))].append(r)
    return {g: {"accuracy": mean_correct(rs), "n": len(rs)} for g, rs in sorted(groups.items())}


def lettered(options: list[str], style: str = "{letter}. {text}") -> str:
    """Options one per line, each with its letter."""
    return "\n".join(style.format(letter=chr(65 + i), text=o) for i, o in enumerate(options))


def letter_of(index: int, n_options: int, where: str) -> str:
    if not 0 <= index < n_options:
        raise ValueError(f"{where}: answer index {index} outside {n_options} options")
    return chr(65 + index)


def need(record: dict, key: str, where: str):
    """record[key], or a ValueError naming the file and the missing field."""
    if key not in record or record[key] is None:
        raise ValueError(f"{where}: missing field {key!r} (found {sorted(record)})")
    return record[key]
