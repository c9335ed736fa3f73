"""`synthesize`: the project's toy long-video reasoning benchmark, written to disk.

Layout of `out_dir`:
  videos/<video_id>.mp4          real mp4 (libx264 if available, else mpeg4), yuv420p
  videos/<video_id>.events.json  ground truth: per-object state segments, events, rules, and
                                 the question specs the oracle reads
  sft.jsonl, rl.jsonl, test.jsonl  records (see harness.data.records), disjoint by video;
                                 with `teacher` confusions, sft.jsonl is what an imperfect
                                 teacher wrote (see teacher.py), the others the truth
  videomme/                      only with "videomme" in formats: the test split in the
                                 Video-MME layout (see videomme.py)

Determinism: everything but the mp4 bytes is a function of the arguments. Video i uses its
own random stream (seed, i), so the first k videos do not change when n_videos grows;
correct letters come from shuffled A-D blocks over the dataset's questions in video order,
so letters are balanced within one (4 questions per video: within every video).
Deviation from LongVideo-Reason: about one third SFT / two thirds RL as in the paper, but
we hold out a test split too (the paper evaluates on a separate 1K-question set).
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from harness.data.records import Record, write_jsonl
from harness.data.synthetic.questions import (
    LETTERS,
    MAX_QUESTIONS_PER_VIDEO,
    Question,
    build_questions,
)
from harness.data.synthetic.render import check_decodable, pick_codec, render_frames, write_mp4
from harness.data.synthetic.scene import DIFFICULTIES, LEVELS, Scene, simulate_scene
from harness.data.synthetic.teacher import ColourConfusion, check_confusions, teacher_view
from harness.data.synthetic.videomme import VideoItem, write_videomme

SPLITS = ("sft", "rl", "test")
FORMATS = ("harness", "videomme")
MIN_SIDE = 24


@dataclass
class SynthSummary:
    out_dir: Path
    codec: str
    n_videos: int
    n_questions: int
    splits: dict[str, Path]  # split name -> jsonl path
    split_videos: dict[str, int]
    split_questions: dict[str, int]
    videomme_dir: Path | None = None
    seconds: float = 0.0
    video_seconds: list[float] = field(default_factory=list)
    teacher: tuple[ColourConfusion, ...] = ()
    teacher_misnamed: int = 0  # SFT videos whose colour the teacher misnamed

    def __str__(self) -> str:
        parts = ", ".join(f"{s} {self.split_videos[s]} videos / {self.split_questions[s]} questions"
                          for s in SPLITS)
        lines = [
            f"wrote {self.n_videos} videos ({self.codec}) and {self.n_questions} questions "
            f"to {self.out_dir} in {self.seconds:.1f} s",
            f"splits: {parts}",
        ]
        if self.videomme_dir is not None:
            lines.append(f"videomme layout: {self.videomme_dir}")
        if self.teacher:
            lines.append(f"imperfect SFT teacher ({', '.join(map(str, self.teacher))}): colour misnamed in "
                         f"{self.teacher_misnamed} of {self.split_videos['sft']} SFT videos")
        return "\n".join(lines)


def parse_minutes(text: str) -> tuple[float, float]:
    """"0.5-2" -> (0.5, 2.0); "1" -> (1.0, 1.0). ValueError naming the argument otherwise."""
    parts = text.strip().split("-")
    try:
        lo, hi = (float(parts[0]), float(parts[-1])) if len(parts) in (1, 2) else (None, None)
    except ValueError:
        lo = hi = None
    if lo is None or not (0 < lo <= hi < math.inf):
        raise ValueError(f"--minutes must look like A-B with 0 < A <= B (minutes), got {text!r}")
    return lo, hi


def parse_size(text: str) -> tuple[int, int]:
    """"64x48" -> (64, 48) as (width, height). ValueError naming the argument otherwise."""
    parts = text.strip().lower().split("x")
    if len(parts) != 2 or not all(p.isdigit() for p in parts):
        raise ValueError(f"--size must look like WxH, e.g. 64x64, got {text!r}")
    size = (int(parts[0]), int(parts[1]))
    _check_size(size, "--size")
    return size


def _check_size(size: tuple[int, int], name: str) -> None:
    if len(size) != 2 or any(not isinstance(s, int) or s < MIN_SIDE or s % 2 for s in size):
        raise ValueError(f"{name} must be two even integers >= {MIN_SIDE} (yuv420p needs even sides), got {size!r}")


def synthesize(
    out_dir: Path,
    n_videos: int,
    *,
    seed: int = 0,
    minutes: tuple[float, float] = (0.5, 1.0),
    fps: float = 4.0,
    size: tuple[int, int] = (64, 64),
    questions_per_video: int = 4,
    formats: tuple[str, ...] = ("harness",),
    split_fractions: tuple[float, float, float] = (1 / 3, 1 / 2, 1 / 6),
    difficulty: str = "default",
    teacher: tuple[ColourConfusion, ...] = (),
    progress: bool = True,
) -> SynthSummary:
    """Write `n_videos` synthetic videos with questions and splits under `out_dir`.

    minutes: video length range (uniform); size: (width, height); questions cycle through
    the categories temporal, goal, plot, spatial; formats: "harness" (always written) and
    optionally "videomme"; split_fractions: (sft, rl, test), each split with a positive
    fraction gets at least one video (n_videos below their number is refused); difficulty: "default", "easy"
    (a 2x2 grid, 3 objects, ~12 events, reasoning by order) or "basic" (one object, answered
    with a word, at most 3 questions per video, no Video-MME layout): see scene.LEVELS; the
    last two are for models trained from scratch; teacher: colour confusions of a simulated
    imperfect CoT teacher applied to the SFT split (basic level only, see teacher.py).
    ValueError on bad arguments; FileExistsError when `out_dir` already holds a dataset.
    """
    t0 = time.perf_counter()
    _check_args(n_videos, seed, minutes, fps, size, questions_per_video, formats, split_fractions)
    if difficulty not in DIFFICULTIES:
        raise ValueError(f"difficulty must be one of {DIFFICULTIES}, got {difficulty!r}")
    if "videomme" in formats and LEVELS[difficulty].answers != "choice":
        raise ValueError(f"the {difficulty} level's questions are free-form; the Video-MME layout "
                         "needs multiple choice (use formats=('harness',))")
    teacher = tuple(teacher)
    check_confusions(teacher, difficulty)
    out_dir = Path(out_dir)
    _check_out_dir(out_dir)
    codec = pick_codec()
    check_decodable(size, fps, codec)  # before any video is rendered

    scenes: list[Scene] = []
    questions: list[list[Question]] = []
    for i in range(n_videos):
        rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(0, i)))
        seconds = rng.uniform(*minutes) * 60
        scene = simulate_scene(rng, f"v{i:04d}", max(1, round(seconds * fps)), fps, difficulty)
        answers = [_answer_index(seed, i * questions_per_video + j) for j in range(questions_per_video)]
        qs = build_questions(scene, rng, answers)
        scene.questions = [{"problem_id": _pid(scene, j), **q.spec} for j, q in enumerate(qs)]
        scenes.append(scene)
        questions.append(qs)

    # Only now touch the disk: a video too short for its events fails above, before any file.
    (out_dir / "videos").mkdir(parents=True, exist_ok=True)
    for scene in tqdm(scenes, desc="synth videos", unit="video", disable=not progress):
        mp4 = out_dir / "videos" / f"{scene.video_id}.mp4"
        write_mp4(mp4, render_frames(scene, size), fps, size, codec)
        (out_dir / "videos" / f"{scene.video_id}.events.json").write_text(
            json.dumps(scene.to_json(), indent=1), encoding="utf-8")

    members = split_videos(n_videos, seed, split_fractions)
    misnamed = 0
    if teacher:
        for i in members[SPLITS.index("sft")]:
            # Its own stream per video (seed, 3, i): the truth's streams above stay untouched.
            rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(3, i)))
            questions[i], wrong = teacher_view(scenes[i], questions[i], teacher, rng)
            misnamed += wrong
    paths, n_q = {}, {}
    for name, idx in zip(SPLITS, members, strict=True):
        paths[name] = out_dir / f"{name}.jsonl"
        n_q[name] = write_jsonl(paths[name], (_record(scenes[i], j, q) for i in idx
                                             for j, q in enumerate(questions[i])))

    mme_dir = None
    if "videomme" in formats:
        mme_dir = out_dir / "videomme"
        items = [VideoItem(scenes[i], questions[i], out_dir / "videos" / f"{scenes[i].video_id}.mp4")
                 for i in members[SPLITS.index("test")]]
        write_videomme(mme_dir, items, minutes)

    return SynthSummary(
        out_dir=out_dir, codec=codec, n_videos=n_videos, n_questions=sum(n_q.values()),
        splits=paths, split_videos={s: len(m) for s, m in zip(SPLITS, members, strict=True)},
        split_questions=n_q, videomme_dir=mme_dir, seconds=time.perf_counter() - t0,
        video_seconds=[s.duration for s in scenes], teacher=teacher, teacher_misnamed=misnamed,
    )


def split_videos(n: int, seed: int, fractions: tuple[float, float, float]) -> list[list[int]]:
    """Video indices of each split (sorted), a seeded shuffle cut by `fractions`."""
    counts = [math.floor(n * f) for f in fractions]
    by_remainder = sorted(range(3), key=lambda k: (n * fractions[k] - counts[k], -k), reverse=True)
    for k in by_remainder[: n - sum(counts)]:
        counts[k] += 1
    if n >= sum(f > 0 for f in fractions):
        # Tiny datasets: every wanted split still gets a video, taken from the largest one.
        for k in range(3):
            if fractions[k] > 0 and counts[k] == 0:
                counts[counts.index(max(counts))] -= 1
                counts[k] = 1
    order = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(2,))).permutation(n)
    cuts = np.cumsum([0, *counts])
    return [sorted(int(i) for i in order[cuts[k]:cuts[k + 1]]) for k in range(3)]


def _answer_index(seed: int, g: int) -> int:
    """Correct option of the dataset's g-th question: blocks of 4 are shuffled A-D."""
    block = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(1, g // 4))).permutation(4)
    return int(block[g % 4])


def _pid(scene: Scene, j: int) -> str:
    return f"{scene.video_id}-q{j + 1}"


def _record(scene: Scene, j: int, q: Question) -> Record:
    if scene.level.answers == "text":  # the answer is the word itself; options stay hidden
        return Record(
            problem_id=_pid(scene, j), data_type="video", videos=[f"videos/{scene.video_id}.mp4"],
            problem=q.text, problem_type="free-form", answer=f"<answer>{q.options[q.answer]}</answer>",
            reasoning=q.reasoning, category=q.category, options=list(q.options),
            video_id=scene.video_id, duration=scene.duration,
        )
    options = "\n".join(f"{LETTERS[i]}. {o}" for i, o in enumerate(q.options))
    return Record(
        problem_id=_pid(scene, j), data_type="video", videos=[f"videos/{scene.video_id}.mp4"],
        problem=f"{q.text}\n{options}", problem_type="multiple choice",
        answer=f"<answer>{q.letter}</answer>", reasoning=q.reasoning, category=q.category,
        options=list(q.options), video_id=scene.video_id, duration=scene.duration,
    )


def _check_args(n_videos, seed, minutes, fps, size, questions_per_video, formats, split_fractions) -> None:
    def is_int(x) -> bool:
        return isinstance(x, int | np.integer) and not isinstance(x, bool)

    if not is_int(n_videos) or n_videos < 1:
        raise ValueError(f"n_videos must be an integer >= 1, got {n_videos!r}")
    if not is_int(seed) or seed < 0:
        raise ValueError(f"seed must be an integer >= 0, got {seed!r}")
    if len(minutes) != 2 or not 0 < minutes[0] <= minutes[1] < math.inf:
        raise ValueError(f"minutes must be (A, B) with 0 < A <= B, got {minutes!r}")
    if not (isinstance(fps, int | float) and 0 < fps < math.inf):
        raise ValueError(f"fps must be a positive number, got {fps!r}")
    _check_size(tuple(size), "size")
    if not is_int(questions_per_video) or not 1 <= questions_per_video <= MAX_QUESTIONS_PER_VIDEO:
        raise ValueError(f"questions_per_video must be in 1..{MAX_QUESTIONS_PER_VIDEO}, got {questions_per_video!r}")
    if not formats or any(f not in FORMATS for f in formats):
        raise ValueError(f"formats must be a non-empty subset of {FORMATS}, got {formats!r}")
    fr = tuple(split_fractions)
    if len(fr) != 3 or any(not 0 <= f <= 1 for f in fr) or abs(sum(fr) - 1) > 1e-6:
        raise ValueError(f"split_fractions must be 3 fractions (sft, rl, test) summing to 1, got {split_fractions!r}")
    wanted = [name for name, f in zip(SPLITS, fr, strict=True) if f > 0]
    if n_videos < len(wanted):
        # A split without a video is an empty file that every config reading it then refuses.
        raise ValueError(f"n_videos (--videos) must be at least {len(wanted)}, one for each split "
                         f"({', '.join(wanted)}), got {n_videos}")


def _check_out_dir(out_dir: Path) -> None:
    """Refuse a folder that already holds a dataset: re-rendering would give its videos other
    content under the same names (runs trained on them would point at other videos), and
    files a smaller dataset does not write would stay behind as stale ones."""
    found = [name for name in (*(f"{s}.jsonl" for s in SPLITS), "videos", "videomme")
             if (out_dir / name).is_file() or ((out_dir / name).is_dir() and any((out_dir / name).iterdir()))]
    if found:
        raise FileExistsError(f"{out_dir} already holds a dataset ({', '.join(found)}); choose another folder "
                              "(--out), or remove this one first to synthesise again")
