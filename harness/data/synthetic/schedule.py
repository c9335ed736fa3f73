"""Cast a scene and put its events on slots (one event per slot), obeying the world rules.

The cast (4 or 5 objects; the paper's clips have more going on, ours keep one storyline;
the easy level casts only mover, target and counter, and its counter also moves once):
- mover: appears far from the target, walks one region at a time toward it, touches it, leaves;
- target: appears before the mover, stays put until the mover has left, then the consequence
  (recolour, move or leave, drawn uniformly so no answer is a safe guess), then leaves;
- counter: changes colour 0-3 times (uniform), for counting questions;
- spatial: moves 1-2 times (and may recolour), for "where" questions;
- extra (only with 5 objects): 0-2 random moves or recolours.
Longer videos get more events: counter, spatial and extra make extra "filler" moves until
the scene has about `n_events` events, so the number of frames needed grows with length.
Objects are released at random slots early in the video (see `_cast`), so appearances do
not all happen at the start.

A greedy scheduler fills slots 0, 1, 2, ...: at each slot it picks one object whose next
action is allowed now (gap since its last event, free destination, dependencies), weighted
by how much that object still has to do so that no object's events pile up at the end. A
slot where nothing is allowed stays empty. The slots are later spread evenly over the video.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from harness.data.synthetic.scene import GAP_SLOTS, LEVELS, SHAPES, Level, manhattan

MAX_ATTEMPTS = 100
CONSEQUENCES = ("recolour", "move", "leave")
CORNERS = ("top left", "top right", "bottom left", "bottom right")


@dataclass
class _Actor:
    id: int
    shape: str
    colour: str
    queue: list[str]
    region: str | None = None
    last_slot: int = -GAP_SLOTS
    release: int = 0  # first slot at which it may act
    appeared: bool = False
    gone: bool = False
    touched: bool = False
    colours: list[str] = field(default_factory=list)

    @property
    def visible(self) -> bool:
        return self.appeared and not self.gone

    @property
    def desc(self) -> str:
        return f"{self.colour} {self.shape}"


def schedule_events(
    rng: np.random.Generator, n_events: int, level: Level = LEVELS["default"]
) -> tuple[list[tuple[int, dict[str, Any]]], list[str], dict[str, int], str]:
    """Returns (slot, event fields) in slot order, the shape of each object id, the roles
    (role -> object id) and the target's consequence kind."""
    for _ in range(MAX_ATTEMPTS):
        cast = _cast(rng, n_events, level)
        slots = _fill_slots(rng, *cast, level=level, max_slots=4 * n_events + 60)
        if slots is not None:
            actors, roles, consequence = cast
            return slots, [a.shape for a in actors], roles, consequence
    # The cast always fits in principle; failing every attempt means a bug in the rules.
    raise RuntimeError(f"could not schedule a scene in {MAX_ATTEMPTS} attempts")


def _cast(rng: np.random.Generator, n_events: int, level: Level) -> tuple[list[_Actor], dict[str, int], str]:
    easy = level.name == "easy"
    n = 3 if easy else int(rng.choice([4, 5]))
    role_names = ["mover", "target", "counter", "spatial", "extra"][:n]
    ids = [int(i) for i in rng.permutation(n)]
    roles = dict(zip(role_names, ids, strict=True))

    # The counter owns a shape alone so that 3 recolours always find unused colours; the
    # others share the two remaining shapes, at most two per shape.
    counter_shape, *others = (str(s) for s in rng.permutation(SHAPES))
    other_shapes = [str(s) for s in rng.permutation(others * 2)][: n - 1]
    shape_of = {"counter": counter_shape}
    shape_of.update(zip([r for r in role_names if r != "counter"], other_shapes, strict=True))

    consequence = str(rng.choice(CONSEQUENCES))
    k = int(rng.integers(0, 4))
    if easy:  # the counter is also the spatial questions' subject: it always moves once
        counter_q = ["recolour"] * k + ["move"]
    else:
        counter_q = ["recolour"] * k + (["move"] if k <= 1 and rng.random() < 0.5 else [])
    spatial_q = ["move"] * int(rng.integers(1, 3)) + ["recolour"] * int(rng.integers(0, 2))
    extra_q = [str(rng.choice(["move", "recolour"])) for _ in range(int(rng.integers(0, 3)))]
    middles = {
        "mover": ["walk"],
        "target": ["consequence"],
        "counter": [counter_q[int(i)] for i in rng.permutation(len(counter_q))],
        "spatial": [spatial_q[int(i)] for i in rng.permutation(len(spatial_q))],
        "extra": extra_q,
    }

    base = sum(len(m) for m in middles.values()) + 2 * n + 2  # + appear/leave, + walk length
    fillers = [r for r in ("counter", "spatial", "extra") if r in role_names]
    if not easy:  # the easy level has only the events the questions need
        shares = rng.multinomial(max(0, n_events - base), [1 / len(fillers)] * len(fillers))
        for role, n_moves in zip(fillers, shares, strict=True):
            middles[role] = _insert_moves(rng, middles[role], int(n_moves))

    actors: list[_Actor | None] = [None] * n
    used: set[tuple[str, str]] = set()
    for role in role_names:
        shape = shape_of[role]
        colour = str(rng.choice([c for c in level.colours if (c, shape) not in used]))
        used.add((colour, shape))
        tail = [] if (role == "target" and consequence == "leave") else ["leave"]
        # Staggered entrances: fillers within the first half, the storyline's target within
        # the first quarter (its chain of dependent events needs the rest).
        horizon = n_events // 2 if role in fillers else n_events // 4 if role == "target" else 0
        release = int(rng.integers(0, max(1, horizon)))
        actors[roles[role]] = _Actor(roles[role], shape, colour, ["appear", *middles[role], *tail],
                                     release=release, colours=[colour])
    return [a for a in actors if a is not None], roles, consequence


def _insert_moves(rng: np.random.Generator, actions: list[str], k: int) -> list[str]:
    out = list(actions)
    for _ in range(k):
        out.insert(int(rng.integers(0, len(out) + 1)), "move")
    return out


def _fill_slots(
    rng: np.random.Generator, actors: list[_Actor], roles: dict[str, int], consequence: str,
    level: Level, max_slots: int,
) -> list[tuple[int, dict[str, Any]]] | None:
    mover, target = actors[roles["mover"]], actors[roles["target"]]
    used = {(c, a.shape) for a in actors for c in a.colours}
    out: list[tuple[int, dict[str, Any]]] = []
    for slot in range(max_slots):
        if all(not a.queue for a in actors):
            return out
        occupied = {a.region for a in actors if a.visible}
        free = [r for r in level.regions if r not in occupied]
        options = []
        for a in actors:
            if a.queue and slot >= a.release and slot - a.last_slot >= GAP_SLOTS:
                plan = _plan(rng, a, a.queue[0], free, mover, target, consequence, used, level)
                if plan == "impossible":
                    return None  # ran out of colours: redraw the cast
                if plan is not None:
                    options.append((a, plan))
        if not options:
            continue  # an empty slot
        weights = np.array([_remaining(a, mover, target, level.grid) ** 2 for a, _ in options], dtype=float)
        a, ev = options[int(rng.choice(len(options), p=weights / weights.sum()))]
        _apply(a, ev, slot, used)
        out.append((slot, ev))
    return None


def _remaining(a: _Actor, mover: _Actor, target: _Actor, grid: int) -> int:
    """Events left on the longest dependency chain through `a`: the mover's walk and the
    target's consequence form the storyline's critical path, so they are started early."""
    walk = manhattan(mover.region, target.region, grid) if mover.appeared and not mover.touched else 3
    if a is mover:
        return len(a.queue) - 1 + walk + len(target.queue)
    if a is target and not mover.gone:
        return len(a.queue) + len(mover.queue) - 1 + walk
    return len(a.queue)


def _plan(
    rng: np.random.Generator, a: _Actor, action: str, free: list[str], mover: _Actor,
    target: _Actor, consequence: str, used: set[tuple[str, str]], level: Level,
) -> dict[str, Any] | str | None:
    """The event `a` would do now, None if it must wait, "impossible" if it never can."""
    g = level.grid
    if action == "consequence":
        if not mover.gone:
            return None
        action = consequence
    if action == "appear":
        if a is mover:
            if not target.visible:
                return None
            far = max((manhattan(r, target.region, g) for r in free), default=0)
            choices = [r for r in free if manhattan(r, target.region, g) == far] if far >= 2 else []
        elif a is target:
            # A corner leaves room for a walk of 3-4 steps; an edge for 2-3.
            choices = [r for r in CORNERS if r in free] or [r for r in free if r != "center"]
        else:
            choices = free
        if not choices:
            return None
        region = str(rng.choice(choices))
        return _event(a, "appear", region=region, text=f"The {a.desc} appears in the {region}.")
    if action == "walk":
        q = target.region
        if manhattan(a.region, q, g) == 1:
            return _event(a, "touch", region=q, other=target.id,
                          text=f"The {a.desc} moves to the {q} and touches the {target.desc}.")
        steps = [r for r in free if manhattan(r, a.region, g) == 1 and manhattan(r, q, g) < manhattan(a.region, q, g)]
        if not steps:
            return None
        region = str(rng.choice(steps))
        return _event(a, "move", region=region, text=f"The {a.desc} moves to the {region}.")
    if action == "move":
        choices = [r for r in free if r != a.region]
        if not choices:
            return None
        region = str(rng.choice(choices))
        return _event(a, "move", region=region, text=f"The {a.desc} moves to the {region}.")
    if action == "recolour":
        colours = [c for c in level.colours if (c, a.shape) not in used]
        if not colours:
            return "impossible"
        colour = str(rng.choice(colours))
        return _event(a, "recolour", colour=colour, text=f"The {a.desc} turns {colour}.")
    if action == "leave":
        return _event(a, "leave", text=f"The {a.desc} leaves the scene from the {a.region}.")
    raise AssertionError(f"unknown action {action!r}")


def _event(a: _Actor, kind: str, *, region: str | None = None, colour: str | None = None,
           other: int | None = None, text: str) -> dict[str, Any]:
    return {"kind": kind, "obj": a.id, "region": region or a.region, "colour": colour or a.colour,
            "other": other, "text": text}


def _apply(a: _Actor, ev: dict[str, Any], slot: int, used: set[tuple[str, str]]) -> None:
    kind = ev["kind"]
    a.last_slot = slot
    if kind == "appear":
        a.appeared = True
    elif kind == "leave":
        a.gone = True
    elif kind == "recolour":
        used.add((ev["colour"], a.shape))
        a.colours.append(ev["colour"])
    elif kind == "touch":
        a.touched = True
    a.region, a.colour = ev["region"], ev["colour"]
    # "walk" stays at the head of the queue until the touch.
    if a.queue[0] != "walk" or kind == "touch":
        a.queue.pop(0)
