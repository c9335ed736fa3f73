"""An oracle that answers a question from the ground truth of the sampled frames only.

Contract. `oracle_answer(record, events, sampled_timestamps, rng)` is what a perfect
perception model would answer if it saw exactly those frames: for every sampled time it
knows each visible object's colour, shape and region, and it tracks object identity across
the sampled frames. It knows the world rules of `scene.py` (a model trained on this data
would learn them) and the video's `rules.min_gap_s`, but nothing between samples. It keeps
the options that some world consistent with its observations would make true, and guesses
uniformly among them. So with too few frames it is at chance, with all frames it is right.

The reasoning is sound by design: the correct option is never ruled out (tests check this
over random frame sets); `consistent_options` exposes the surviving options.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from harness.data.synthetic.questions import LETTERS
from harness.data.synthetic.scene import Scene, State, manhattan


@dataclass
class View:
    """What the oracle saw: states at the sampled times, and the world's timing rules."""

    times: list[float]  # sorted, unique
    states: dict[int, list[State]]  # object id -> state at each sampled time
    duration: float
    min_gap: float
    grid: int = 3

    @classmethod
    def of(cls, scene: Scene, timestamps: Sequence[float]) -> View:
        times = sorted({float(t) for t in timestamps})
        states = {tr.id: [tr.state_at(t) for t in times] for tr in scene.tracks}
        return cls(times, states, scene.duration, scene.min_gap_s, scene.grid)

    def seen(self, obj: int) -> list[tuple[float, State]]:
        return [(t, s) for t, s in zip(self.times, self.states[obj], strict=True) if s.visible]

    def resolve(self, desc: Sequence[str]) -> int | None:
        """The tracked object that was seen as this (colour, shape), if any."""
        for obj, sts in self.states.items():
            if any(s.visible and (s.colour, s.shape) == tuple(desc) for s in sts):
                return obj
        return None

    def before(self, t: float) -> float:
        """Latest sample before t, or 0 (nothing happens at time 0)."""
        return max((s for s in self.times if s < t), default=0.0)

    def after(self, t: float) -> float:
        """Earliest sample after t, or the video's end (every object has left by then)."""
        return min((s for s in self.times if s > t), default=self.duration)

    def dense(self) -> bool:
        """True when no state that lasts min_gap can fall between samples unseen."""
        edges = [0.0, *self.times, self.duration]
        return max(b - a for a, b in zip(edges, edges[1:], strict=False)) <= self.min_gap

    def touches(self) -> set[int]:
        """Objects seen sharing a region (in this world that only happens during a touch)."""
        out: set[int] = set()
        for i in range(len(self.times)):
            by_region: dict[str, list[int]] = {}
            for obj, sts in self.states.items():
                if sts[i].visible:
                    by_region.setdefault(sts[i].region, []).append(obj)
            out.update(o for objs in by_region.values() if len(objs) > 1 for o in objs)
        return out


def oracle_answer(record: Any, events: Mapping[str, Any] | Scene, sampled_timestamps: Sequence[float],
                  rng: np.random.Generator) -> str:
    """What the oracle answers, uniform among the options consistent with the sampled
    frames: the option's letter, or for a free-form record (basic level) its text."""
    keep = np.flatnonzero(consistent_options(record, events, sampled_timestamps))
    pick = int(rng.choice(keep))
    problem_type = record["problem_type"] if isinstance(record, Mapping) else record.problem_type
    if problem_type == "multiple choice":
        return LETTERS[pick]
    scene = events if isinstance(events, Scene) else Scene.from_json(dict(events))
    pid = record["problem_id"] if isinstance(record, Mapping) else record.problem_id
    return next(q for q in scene.questions if q["problem_id"] == pid)["values"][pick]


def consistent_options(record: Any, events: Mapping[str, Any] | Scene,
                       sampled_timestamps: Sequence[float]) -> list[bool]:
    """For each option: could it be true, given only the frames at these timestamps?"""
    scene = events if isinstance(events, Scene) else Scene.from_json(dict(events))
    pid = record["problem_id"] if isinstance(record, Mapping) else record.problem_id
    specs = [q for q in scene.questions if q["problem_id"] == pid]
    if len(specs) != 1:
        raise KeyError(f"events of video {scene.video_id} have no question spec for {pid!r}")
    spec = specs[0]
    view = View.of(scene, sampled_timestamps)
    keep = _CHECKS[spec["kind"]](view, spec["subjects"], spec["values"])
    if not any(keep):
        # The correct option can never be ruled out; if it was, the rules above are wrong.
        raise AssertionError(f"oracle ruled out every option of {pid!r}")
    return keep


def _basic_attribute(attribute: str):
    """Basic level: one object that never changes; any sighting tells the attribute."""
    def check(view: View, subjects, values) -> list[bool]:
        seen = view.seen(0)
        if not seen:
            return [True] * len(values)
        state = seen[0][1]
        return [v == getattr(state, attribute) for v in values]
    return check


def _unknown_object(view: View) -> bool:
    """An option naming an object never seen: possible unless sampling was dense."""
    return not view.dense()


def _appear_order(view: View, subjects, values) -> list[bool]:
    # Each object's appearance time lies in (L, U]: U its first sighting, L the sample before.
    bounds: dict[tuple[str, ...], tuple[float, float]] = {}
    for desc in subjects["objects"]:
        obj = view.resolve(desc)
        seen = view.seen(obj) if obj is not None else []
        bounds[tuple(desc)] = (view.before(seen[0][0]), seen[0][0]) if seen else (-math.inf, math.inf)

    def possible(order) -> bool:
        low = -math.inf  # appearance times must strictly increase along the order
        for desc in order:
            lo, hi = bounds[tuple(desc)]
            low = max(low, lo)
            if not low < hi:
                return False
        return True

    return [possible(v) for v in values]


def _count_colour(view: View, subjects, values) -> list[bool]:
    colour0 = subjects["subject"][0]
    obj = view.resolve(subjects["subject"])
    if obj is None:
        return [True] * len(values)
    seen = view.seen(obj)
    g = view.min_gap
    lo = hi = 0
    # Colours never repeat, so equal colours at two sightings mean no change in between;
    # changes are min_gap apart (also from the appearance and to the leaving).
    t1, c1 = seen[0][0], seen[0][1].colour
    if c1 != colour0:
        lo, hi = 1, max(1, math.floor((t1 - view.before(t1)) / g))
    for (ta, sa), (tb, sb) in zip(seen, seen[1:], strict=False):
        if sa.colour != sb.colour:
            lo, hi = lo + 1, hi + math.floor((tb - ta) / g) + 1
    tm = seen[-1][0]
    hi += math.floor((view.after(tm) - tm) / g)
    return [lo <= v <= hi for v in values]


def _heading(view: View, subjects, values) -> list[bool]:
    mover = view.resolve(subjects["subject"])
    touched = view.touches() - {mover}
    if touched:
        return [view.resolve(v) in touched for v in values]
    keep = []
    for v in values:
        y = view.resolve(v)
        keep.append(_unknown_object(view) if y is None else mover is None or _could_be_goal(view, mover, y))
    return keep


def _could_be_goal(view: View, mover: int, y: int) -> bool:
    """Could y be the mover's goal? The goal is present and static while the mover is seen,
    and every step of the mover brings it one region closer to the goal."""
    walk = view.seen(mover)
    at = dict(view.seen(y))
    if any(t not in at for t, _ in walk):
        return False
    regions = {at[t].region for t in at if t <= walk[-1][0]}
    if len(regions) != 1:
        return False
    (q,) = regions
    for (_, a), (_, b) in zip(walk, walk[1:], strict=False):
        g = view.grid
        if a.region != b.region and manhattan(a.region, b.region, g) != manhattan(a.region, q, g) - manhattan(b.region, q, g):
            return False
    return True


def _cause(view: View, subjects, values) -> list[bool]:
    y = view.resolve(subjects["subject"])
    touched = view.touches() - {y}
    if touched:
        return [view.resolve(v) in touched for v in values]
    keep = []
    for v in values:
        z = view.resolve(v)
        keep.append(_unknown_object(view) if z is None else y is None or _could_be_toucher(view, y, z, subjects))
    return keep


def _could_be_toucher(view: View, y: int, z: int, subjects) -> bool:
    """The toucher appears after the touched object and is gone before its consequence."""
    seen_y = view.seen(y)
    first_y, last_y = seen_y[0][0], seen_y[-1][0]
    changed = [t for t, s in seen_y if s.colour != subjects["subject"][0]]
    consequence_by = min(changed + [view.after(last_y)])
    return not any(t < first_y or t >= consequence_by for t, _ in view.seen(z))


def _consequence(view: View, subjects, values) -> list[bool]:
    colour0 = subjects["subject"][0]
    y = view.resolve(subjects["subject"])
    if y is None:
        return [True] * len(values)
    seen = view.seen(y)
    known: dict[str, str] | None = None
    recoloured = [s.colour for _, s in seen if s.colour != colour0]
    if recoloured:
        known = {"type": "recolour", "colour": recoloured[0]}
    # Its region before the consequence: where it was during the touch, or at any sighting
    # up to the toucher's last one (the consequence waits until the toucher has left).
    mover = view.resolve(subjects["toucher"])
    mover_last = max((t for t, _ in view.seen(mover)), default=-1.0) if mover is not None else -1.0
    pre = {s.region for t, s in seen if t <= mover_last or _shares_region(view, y, t)}
    regions = list(dict.fromkeys(s.region for _, s in seen))
    if known is None and pre:
        (q,) = pre
        moved = [r for r in regions if r != q]
        if moved:
            known = {"type": "move", "region": moved[0]}
        else:
            # Seen unchanged at s1 and gone at the next sample s2: with s2 - s1 <= min_gap
            # there was no room for a change followed by a leave, so it just left.
            s1 = seen[-1][0]
            if view.after(s1) - s1 <= view.min_gap:
                known = {"type": "leave"}
    elif known is None and len(regions) > 1:
        known = {"type": "move", "region": regions[-1]}  # its only move is the consequence
    return [known is None or v == known for v in values]


def _shares_region(view: View, obj: int, t: float) -> bool:
    i = view.times.index(t)
    region = view.states[obj][i].region
    return any(o != obj and sts[i].visible and sts[i].region == region for o, sts in view.states.items())


def _before_leave(view: View, subjects, values) -> list[bool]:
    # Its last sighting is its final region when the next sample (which no longer shows it)
    # is within min_gap: no room for a move followed by the leave.
    obj = view.resolve(subjects["subject"])
    if obj is None:
        return [True] * len(values)
    t, s = view.seen(obj)[-1]
    return [v == s.region for v in values] if view.after(t) - t <= view.min_gap else [True] * len(values)


def _appear_region(view: View, subjects, values) -> list[bool]:
    obj = view.resolve(subjects["subject"])
    if obj is None:
        return [True] * len(values)
    t, s = view.seen(obj)[0]
    return [v == s.region for v in values] if t - view.before(t) <= view.min_gap else [True] * len(values)


_CHECKS = {
    "appear_order": _appear_order,
    "count_colour": _count_colour,
    "heading": _heading,
    "cause": _cause,
    "consequence": _consequence,
    "before_leave": _before_leave,
    "appear_region": _appear_region,
    "colour_of": _basic_attribute("colour"),
    "shape_of": _basic_attribute("shape"),
    "region_of": _basic_attribute("region"),
}
