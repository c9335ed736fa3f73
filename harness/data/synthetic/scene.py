"""The toy world: objects on a 3x3 grid whose state changes at scripted events.

Contract. `simulate_scene(rng, video_id, num_frames, fps)` returns a `Scene`: a ground-truth
timeline in which every object's state (visible, colour, shape, region) is piecewise constant
between events. The renderer draws `Scene.state_at(obj, t)` and the oracle reads the same
function, so the pixels and the answers come from one source of truth.

World rules (the oracle relies on them, so the generator guarantees them):
- The scene starts and ends empty: every object appears once, later leaves once, and never
  comes back. The first and last frames alone therefore tell nothing.
- Every (colour, shape) pair belongs to one object over the whole video; an object never
  returns to a colour it had before. So "the red square" names one object unambiguously.
- Two events of the same object are at least `min_gap_s` seconds apart (also appear ->
  leave). Events of the whole scene sit on evenly spaced slots over the full duration,
  about one per SECONDS_PER_EVENT: a longer video has more events, not slower ones, so the
  number of frames needed to follow it grows with its length.
- Two objects share a region only during a "touch": the mover (role "mover") walks step
  by step to an adjacent region, each step one closer to the target's region, then steps
  into it (the touch), stays, and leaves. The target appears before the mover, stays put
  and unchanged until the mover has left, then shows the consequence (turns a new colour,
  moves to another region, or leaves), and if still there, later leaves.

Difficulty levels (`LEVELS`). "default" is the world above. "easy" is for models trained
from scratch at toy scale: a 2x2 grid (one region per vision token of the tiny tower), four
colours, three objects (mover, target, counter; the counter also moves once, so it serves
the spatial questions) and about a dozen events whatever the video's length; the world
rules are the same. "basic" is the level at which a model trained from scratch in a few
minutes of CPU learns to use the video: one object, drawn large (it fills most of its quadrant),
that appears at a random time, stays for `BASIC_VISIBLE` of the video, and leaves; questions ask for its colour, shape or region and
are answered with that word (see questions.py). Few frames often miss it, so accuracy still
grows with the number of frames.

Deviation from the real data: LongVideo-Reason's videos are real footage captioned by a
VLM; here the "captions" are exact and the visuals are big flat shapes a tiny model can see.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (255, 0, 0),
    "green": (0, 255, 0),
    "blue": (40, 100, 255),  # lighter than pure blue so it stays bright on black after yuv420p
    "yellow": (255, 255, 0),
    "white": (255, 255, 255),
    "magenta": (255, 0, 255),
}
SHAPES: tuple[str, ...] = ("square", "circle", "triangle")
GRID = 3
REGIONS: tuple[str, ...] = (
    "top left", "top center", "top right",
    "middle left", "center", "middle right",
    "bottom left", "bottom center", "bottom right",
)  # row-major: index = row * GRID + col
REGIONS_2X2: tuple[str, ...] = ("top left", "top right", "bottom left", "bottom right")
GAP_SLOTS = 2  # events of one object are at least this many slots apart
SECONDS_PER_EVENT = 1.5  # target event density: longer videos get more (filler) events
EVENT_KINDS = ("appear", "move", "recolour", "touch", "leave")


@dataclass(frozen=True)
class Level:
    """How busy a scene is: its grid, palette, cast size and event count."""

    name: str
    grid: int
    regions: tuple[str, ...]  # row-major: index = row * grid + col
    colours: tuple[str, ...]
    n_events: int | None  # None: one per SECONDS_PER_EVENT; else this many, whatever the length
    narration: str  # "clock": "At 0:12 ..."; "order": "First ..., Then ..., Finally ..."
    answers: str = "choice"  # "choice": an option letter; "text": the answer word itself
    object_scale: float = 0.25  # side of an object / short side of the frame


LEVELS: dict[str, Level] = {
    "default": Level("default", GRID, REGIONS, tuple(COLOURS), None, "clock"),
    # Frame times are not visible to a VILA-style model (1-D positions, no timestamps), but
    # the order of frames is: the easy level narrates order, not clock times.
    "easy": Level("easy", 2, REGIONS_2X2, ("red", "green", "blue", "yellow"), 12, "order"),
    # Answered with words: a model trained from scratch does not learn to map option texts
    # to letters in a CPU budget (reproduce/LOG.md), which a pretrained LLM brings along.
    "basic": Level("basic", 2, REGIONS_2X2, ("red", "green", "blue", "yellow"), 2, "order", "text", 0.4),
}
BASIC_VISIBLE = 1 / 4  # share of the video during which the basic level's object is on screen
DIFFICULTIES = tuple(LEVELS)


def region_rc(region: str, grid: int = GRID) -> tuple[int, int]:
    """(row, col) of a named region on a grid x grid board."""
    regions = REGIONS if grid == GRID else next(lv.regions for lv in LEVELS.values() if lv.grid == grid)
    return divmod(regions.index(region), grid)


def manhattan(a: str, b: str, grid: int = GRID) -> int:
    (ra, ca), (rb, cb) = region_rc(a, grid), region_rc(b, grid)
    return abs(ra - rb) + abs(ca - cb)


def describe(colour: str, shape: str) -> str:
    return f"{colour} {shape}"


@dataclass(frozen=True)
class State:
    visible: bool
    shape: str
    colour: str | None = None
    region: str | None = None


@dataclass(frozen=True)
class Event:
    time: float
    kind: str  # one of EVENT_KINDS
    obj: int
    region: str | None = None  # region after the event (for leave: the region it left from)
    colour: str | None = None  # colour after the event (for leave: the colour it left with)
    other: int | None = None  # the touched object (touch)
    text: str = ""  # narration, e.g. "The red square moves to the center."


@dataclass
class Segment:
    start: float
    end: float
    state: State


@dataclass
class Track:
    id: int
    shape: str
    segments: list[Segment]

    def state_at(self, t: float) -> State:
        starts = [s.start for s in self.segments]
        i = max(bisect_right(starts, t) - 1, 0)
        return self.segments[i].state


@dataclass
class Scene:
    video_id: str
    duration: float  # seconds = num_frames / fps
    fps: float
    num_frames: int
    min_gap_s: float  # guaranteed lower bound on the gap between two events of one object
    tracks: list[Track]
    events: list[Event]
    roles: dict[str, int]  # generator's cast (mover, target, counter, ...); the oracle ignores it
    consequence: str = ""  # what the target did after the touch: recolour | move | leave
    questions: list[dict[str, Any]] = field(default_factory=list)  # oracle specs, filled later
    difficulty: str = "default"  # a key of LEVELS

    @property
    def level(self) -> Level:
        return LEVELS[self.difficulty]

    @property
    def grid(self) -> int:
        return self.level.grid

    def state_at(self, obj: int, t: float) -> State:
        return self.tracks[obj].state_at(t)

    def frame_times(self) -> np.ndarray:
        return np.arange(self.num_frames) / self.fps

    def events_of(self, obj: int, *kinds: str) -> list[Event]:
        return [e for e in self.events if e.obj == obj and (not kinds or e.kind in kinds)]

    def initial_desc(self, obj: int) -> tuple[str, str]:
        """(colour, shape) the object had when it appeared: how questions name it."""
        first = self.events_of(obj, "appear")[0]
        return first.colour, self.tracks[obj].shape

    def to_json(self) -> dict[str, Any]:
        return {
            "video_id": self.video_id,
            "duration": self.duration,
            "fps": self.fps,
            "num_frames": self.num_frames,
            "difficulty": self.difficulty,
            "grid": [self.grid, self.grid],
            "regions": list(self.level.regions),
            "rules": {"min_gap_s": self.min_gap_s},
            "roles": self.roles,
            "consequence": self.consequence,
            "objects": [
                {
                    "id": tr.id,
                    "shape": tr.shape,
                    "segments": [
                        {"start": s.start, "end": s.end, **asdict(s.state)} for s in tr.segments
                    ],
                }
                for tr in self.tracks
            ],
            "events": [{k: v for k, v in asdict(e).items() if v is not None} for e in self.events],
            "questions": self.questions,
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Scene:
        tracks = [
            Track(
                id=o["id"],
                shape=o["shape"],
                segments=[
                    Segment(s["start"], s["end"],
                            State(s["visible"], s["shape"], s.get("colour"), s.get("region")))
                    for s in o["segments"]
                ],
            )
            for o in d["objects"]
        ]
        events = [Event(**e) for e in d["events"]]
        return cls(d["video_id"], d["duration"], d["fps"], d["num_frames"],
                   d["rules"]["min_gap_s"], tracks, events, d.get("roles", {}),
                   d.get("consequence", ""), d.get("questions", []), d.get("difficulty", "default"))


def simulate_scene(rng: np.random.Generator, video_id: str, num_frames: int, fps: float,
                   difficulty: str = "default") -> Scene:
    """Draw a cast, schedule its events on slots, and spread the slots over the video.

    Raises ValueError when the video is too short (at this fps) for the events to be at
    least one frame apart.
    """
    from harness.data.synthetic.schedule import schedule_events  # imports this module
    if difficulty not in LEVELS:
        raise ValueError(f"difficulty must be one of {DIFFICULTIES}, got {difficulty!r}")
    level = LEVELS[difficulty]
    duration = num_frames / fps
    if difficulty == "basic":
        return _basic_scene(rng, video_id, num_frames, fps)
    # Keep slots at least two frames apart at low fps.
    n_events = level.n_events or round(duration / max(SECONDS_PER_EVENT, 2.0 / fps))
    slots, shapes, roles, consequence = schedule_events(rng, n_events, level)
    n_slots = slots[-1][0] + 1
    # Slots at (k + 1) * step: nothing happens in the first or last `step` seconds, so the
    # first and last frames show an empty scene.
    step = duration / (n_slots + 1)
    if step < 1.0 / fps:
        raise ValueError(
            f"video {video_id}: {n_slots} event slots do not fit in {duration:.1f} s at {fps} fps "
            f"(need at least one frame per slot); use longer minutes or a higher fps"
        )
    events = [
        Event(time=round((k + 1) * step, 3), **ev) for k, ev in slots  # type: ignore[arg-type]
    ]
    min_gap_s = math.floor((GAP_SLOTS * step - 0.002) * 1000) / 1000  # margin for ms rounding
    tracks = [_track(i, shape, events, duration) for i, shape in enumerate(shapes)]
    return Scene(video_id, duration, fps, num_frames, min_gap_s, tracks, events, roles, consequence,
                 difficulty=difficulty)


def _basic_scene(rng: np.random.Generator, video_id: str, num_frames: int, fps: float) -> Scene:
    """One object of random shape, colour and region, on screen for BASIC_VISIBLE of the
    video at a uniformly random time (not on slots, so uniform frame sampling has no
    favoured phase); the first and last frames stay empty."""
    level = LEVELS["basic"]
    duration = num_frames / fps
    visible = duration * BASIC_VISIBLE
    margin = 1.0 / fps  # at least one empty frame before and after
    if visible < 1.0 / fps or duration - visible - 2 * margin <= 0:
        raise ValueError(f"video {video_id}: {duration:.1f} s at {fps} fps is too short for the basic level")
    shape = SHAPES[int(rng.integers(len(SHAPES)))]
    colour = level.colours[int(rng.integers(len(level.colours)))]
    region = level.regions[int(rng.integers(len(level.regions)))]
    start = round(float(rng.uniform(margin, duration - visible - margin)), 3)
    end = round(start + visible, 3)
    events = [
        Event(start, "appear", 0, region, colour, text=f"A {colour} {shape} appears in the {region}."),
        Event(end, "leave", 0, region, colour, text=f"The {colour} {shape} leaves the scene from the {region}."),
    ]
    track = _track(0, shape, events, duration)
    return Scene(video_id, duration, fps, num_frames, round(visible - 0.002, 3), [track], events, {},
                 difficulty="basic")


def _track(obj: int, shape: str, events: list[Event], duration: float) -> Track:
    state = State(False, shape)
    segments = [Segment(0.0, duration, state)]
    for e in events:
        if e.obj != obj:
            continue
        if e.kind == "leave":
            state = State(False, shape)
        else:
            state = State(True, shape, e.colour, e.region)
        segments[-1].end = e.time
        segments.append(Segment(e.time, duration, state))
    return Track(obj, shape, segments)
