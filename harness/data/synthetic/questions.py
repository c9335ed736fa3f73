"""Four-option questions about a `Scene`, in LongVideo-Reason's four categories.

Kinds (category -> kind: what it asks; why a few frames do not answer it):
- temporal -> appear_order: the order in which three objects first appeared (appearances are
  spread over the video, and the scene starts and ends empty);
  count_colour: how many times an object changed colour (0-3; each change is a short state).
- goal -> heading: which object the mover was walking toward, step by step (direction needs
  two sightings of the walk, or the touch itself; the mover is gone by the end).
- plot -> consequence: what happened to the target right after the mover touched it;
  cause: which object touched the target before its consequence.
- spatial -> before_leave: where an object was just before it left; appear_region: where it
  first appeared (every such object moves at least once, and nothing is left at the end).

Basic level (one object; answered with a word, see scene.LEVELS): colour_of, shape_of and
region_of ask for the object's colour, shape and region; the options are the whole answer
space in a fixed order (kept in the record for the oracle and for scoring, not shown in
the prompt). region_of is "spatial"; the other two have no LongVideo-Reason category.

Every question names objects by how they looked when they appeared ("the red square"; unique
in the video). Each carries a machine-readable `spec` (subjects and option values, never the
answer) that the oracle reads. `answer` is the index of the correct option, chosen by the
caller so that letters are balanced over the dataset. The reasoning narrates the events that
decide the answer with their times, like the paper's CoT data does with clip timestamps; at
the easy level (see scene.LEVELS) with their order instead ("First ..., Then ...", which a
model that sees frames in order but not their times can learn), and only the decisive ones.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

import numpy as np

from harness.data.synthetic.scene import SHAPES, Event, Scene

LETTERS = "ABCD"
CATEGORIES = ("temporal", "goal", "plot", "spatial")
KINDS = {
    "temporal": ("appear_order", "count_colour"),
    "goal": ("heading",),
    "plot": ("consequence", "cause"),
    "spatial": ("before_leave", "appear_region"),
}
COUNT_WORDS = ("never", "once", "twice", "three times")
MAX_QUESTIONS_PER_VIDEO = 8
BASIC_KINDS = {"colour_of": None, "shape_of": None, "region_of": "spatial"}  # kind -> category
BASIC_TEXT = {"colour_of": "What colour was the object?", "shape_of": "What shape was the object?",
              "region_of": "Where in the frame was the object?"}


@dataclass
class Question:
    kind: str
    category: str | None
    text: str  # the question sentence, without options
    options: list[str]  # 4 option texts, without letters
    answer: int  # index of the correct option
    reasoning: str
    spec: dict[str, Any]  # for the oracle: kind, subjects, option values (no answer)

    @property
    def letter(self) -> str:
        return LETTERS[self.answer]


def mmss(t: float) -> str:
    return f"{int(t) // 60}:{int(t) % 60:02d}"


def narrate(scene: Scene, events: list[Event]) -> str:
    if scene.level.narration == "clock":
        return " ".join(f"At {mmss(e.time)} {e.text[0].lower()}{e.text[1:]}" for e in events)
    if len(events) == 1:
        return events[0].text
    words = ["First,", *["Then"] * (len(events) - 2), "Finally"]
    return " ".join(f"{w} {e.text[0].lower()}{e.text[1:]}" for w, e in zip(words, events, strict=True))


def build_questions(scene: Scene, rng: np.random.Generator, answers: list[int]) -> list[Question]:
    """One question per answer index, cycling through the categories in CATEGORIES order."""
    if not 1 <= len(answers) <= MAX_QUESTIONS_PER_VIDEO:
        raise ValueError(f"questions_per_video must be in 1..{MAX_QUESTIONS_PER_VIDEO}, got {len(answers)}")
    if scene.difficulty == "basic":
        return _basic_questions(scene, rng, len(answers))
    pools = {cat: _candidates(scene, rng, cat) for cat in CATEGORIES}
    out: list[Question] = []
    cats = itertools.cycle(CATEGORIES)
    while len(out) < len(answers):
        cat = next(cats)
        if pools[cat]:
            kind, subject = pools[cat].pop(int(rng.integers(len(pools[cat]))))
            out.append(_ask(scene, rng, kind, subject, answers[len(out)]))
    return out


def _basic_questions(scene: Scene, rng: np.random.Generator, n: int) -> list[Question]:
    """Up to three questions (one per kind) about the scene's single object. The answer's
    index follows from the scene (options in fixed order), so `answers` does not apply."""
    appear = scene.events_of(0, "appear")[0]
    truth = {"colour_of": appear.colour, "shape_of": scene.tracks[0].shape, "region_of": appear.region}
    space = {"colour_of": list(scene.level.colours), "shape_of": list(SHAPES),
             "region_of": list(scene.level.regions)}
    kinds = [list(BASIC_KINDS)[int(i)] for i in rng.permutation(len(BASIC_KINDS))][:n]
    out = []
    for kind in kinds:
        options, answer = space[kind], space[kind].index(truth[kind])
        reasoning = f"{narrate(scene, [appear])} So the answer is {truth[kind]}."
        spec = {"kind": kind, "subjects": {}, "values": options}
        out.append(Question(kind, BASIC_KINDS[kind], BASIC_TEXT[kind], options, answer, reasoning, spec))
    return out


def _candidates(scene: Scene, rng: np.random.Generator, category: str) -> list[tuple[str, Any]]:
    """(kind, subject) pairs this scene can be asked about; at least 8 over all categories."""
    r = scene.roles
    movers = [o for o in range(len(scene.tracks)) if o != r["mover"] and scene.events_of(o, "move")]
    if category == "temporal":
        drawn = [tuple(int(x) for x in rng.choice(len(scene.tracks), 3, replace=False)) for _ in range(2)]
        triples = list({frozenset(t): t for t in drawn}.values())  # the same three objects once
        counted = [o for o in range(len(scene.tracks)) if o == r["counter"] or scene.events_of(o, "recolour")]
        return [("appear_order", t) for t in triples] + [("count_colour", o) for o in counted]
    if category == "goal":
        return [("heading", r["mover"])]
    if category == "plot":
        return [("consequence", r["target"]), ("cause", r["target"])]
    return [(k, o) for k in KINDS["spatial"] for o in movers]


def _ask(scene: Scene, rng: np.random.Generator, kind: str, subject: Any, answer: int) -> Question:
    make = {
        "appear_order": _appear_order, "count_colour": _count_colour, "heading": _heading,
        "consequence": _consequence, "cause": _cause, "before_leave": _spatial,
        "appear_region": _spatial,
    }[kind]
    text, truth, distractors, reasoning, subjects = make(scene, rng, kind, subject)
    # Place the truth at the requested index, the distractors in random order around it.
    order = [distractors[int(i)] for i in rng.permutation(len(distractors))]
    order.insert(answer, truth)
    values, options = [v for v, _ in order], [o for _, o in order]
    assert len(options) == 4 and len(set(options)) == 4, options
    reasoning = f"{reasoning} This is option {LETTERS[answer]}. So the answer is {LETTERS[answer]}."
    category = next(c for c, ks in KINDS.items() if kind in ks)
    spec = {"kind": kind, "subjects": subjects, "values": values}
    return Question(kind, category, text, options, answer, reasoning, spec)


def _name(scene: Scene, obj: int) -> str:
    colour, shape = scene.initial_desc(obj)
    return f"{colour} {shape}"


def _desc(scene: Scene, obj: int) -> list[str]:
    return list(scene.initial_desc(obj))


def _object_options(scene: Scene, rng: np.random.Generator, truth: int, exclude: set[int]):
    """Truth plus 3 distractors: other objects of the video, then (colour, shape) pairs that
    never occur in it, so the options alone do not tell which objects are real."""
    others = [o for o in range(len(scene.tracks)) if o != truth and o not in exclude]
    picks = [(_desc(scene, o), f"the {_name(scene, o)}") for o in others]
    picks = [picks[int(i)] for i in rng.permutation(len(picks))][:3]
    used = {(e.colour, scene.tracks[e.obj].shape) for e in scene.events}
    absent = [(c, s) for c in scene.level.colours for s in SHAPES if (c, s) not in used]
    for i in rng.permutation(len(absent))[: 3 - len(picks)]:
        c, s = absent[int(i)]
        picks.append(([c, s], f"the {c} {s}"))
    return (_desc(scene, truth), f"the {_name(scene, truth)}"), picks


def _appear_order(scene, rng, kind, objs):
    first = {o: scene.events_of(o, "appear")[0] for o in objs}
    true_order = sorted(objs, key=lambda o: first[o].time)
    perms = [p for p in itertools.permutations(true_order) if list(p) != true_order]
    picks = [perms[int(i)] for i in rng.permutation(len(perms))[:3]]

    def option(p):
        return [_desc(scene, o) for o in p], ", then ".join(f"the {_name(scene, o)}" for o in p)

    listed = ", the ".join(_name(scene, o) for o in objs[:2]) + f" and the {_name(scene, objs[2])}"
    text = f"In which order did the {listed} first appear?"
    reasoning = narrate(scene, [first[o] for o in true_order])
    reasoning += f" So they appeared in the order {option(true_order)[1]}."
    return text, option(true_order), [option(p) for p in picks], reasoning, {"objects": [_desc(scene, o) for o in objs]}


def _count_colour(scene, rng, kind, obj):
    n = len(scene.events_of(obj, "recolour"))
    assert n < len(COUNT_WORDS), n
    text = f"How many times did the {_name(scene, obj)} change colour while it was in the video?"
    kinds = ("appear", "recolour") if scene.difficulty == "easy" else ("appear", "recolour", "leave")
    reasoning = narrate(scene, scene.events_of(obj, *kinds))
    reasoning += " So it never changed colour." if n == 0 else f" So it changed colour {COUNT_WORDS[n]}."
    others = [(k, COUNT_WORDS[k]) for k in range(len(COUNT_WORDS)) if k != n]
    return text, (n, COUNT_WORDS[n]), others, reasoning, {"subject": _desc(scene, obj)}


def _heading(scene, rng, kind, mover):
    target = scene.roles["target"]
    truth, others = _object_options(scene, rng, target, {mover})
    text = (f"The {_name(scene, mover)} moved across the screen step by step. "
            f"Which object was it heading for?")
    walk = scene.events_of(mover, "appear", "move", "touch")
    reasoning = narrate(scene, walk) + (f" Each step brought it closer to the {_name(scene, target)}, "
                                 f"so it was heading for the {_name(scene, target)}.")
    return text, truth, others, reasoning, {"subject": _desc(scene, mover)}


def _consequence_event(scene: Scene, target: int) -> Event:
    touch = next(e for e in scene.events if e.kind == "touch")
    return next(e for e in scene.events_of(target) if e.time > touch.time)


def _effect(e: Event) -> tuple[dict[str, str], str]:
    """Machine value and phrase of what an event did to its object."""
    if e.kind == "recolour":
        return {"type": "recolour", "colour": e.colour}, f"it turned {e.colour}"
    if e.kind == "move":
        return {"type": "move", "region": e.region}, f"it moved to the {e.region}"
    return {"type": "leave"}, "it left the scene"


def _consequence(scene, rng, kind, target):
    mover = scene.roles["mover"]
    touch = next(e for e in scene.events if e.kind == "touch")
    cons = _consequence_event(scene, target)
    truth = _effect(cons)
    colour, _ = scene.initial_desc(target)
    pool = {
        "recolour": [({"type": "recolour", "colour": c}, f"it turned {c}")
                     for c in scene.level.colours if c not in (colour, cons.colour)],
        "move": [({"type": "move", "region": r}, f"it moved to the {r}")
                 for r in scene.level.regions if r not in (touch.region, cons.region)],
        "leave": [({"type": "leave"}, "it left the scene")],
    }
    # One distractor of each other type, the third from what is left, so the type of the
    # answer is not guessable from the options.
    others = [t for t in pool if t != truth[0]["type"]]
    picks = [pool[t].pop(int(rng.integers(len(pool[t])))) for t in others]
    rest = [p for t in pool for p in pool[t] if p[1] != truth[1]]
    picks.append(rest[int(rng.integers(len(rest)))])
    text = (f"What was the next thing that happened to the {_name(scene, target)} "
            f"after the {_name(scene, mover)} touched it?")
    mover_leave = scene.events_of(mover, "leave")
    reasoning = narrate(scene, [touch, *mover_leave, cons])
    reasoning += f" So after being touched, {truth[1].replace('it ', f'the {_name(scene, target)} ', 1)}."
    return text, truth, picks, reasoning, {"subject": _desc(scene, target), "toucher": _desc(scene, mover)}


def _cause(scene, rng, kind, target):
    mover = scene.roles["mover"]
    touch = next(e for e in scene.events if e.kind == "touch")
    cons = _consequence_event(scene, target)
    what = _effect(cons)[1].removeprefix("it ")
    truth, others = _object_options(scene, rng, mover, {target})
    text = f"Before the {_name(scene, target)} {what}, another object touched it. Which object was it?"
    reasoning = narrate(scene, [touch, cons]) + f" So the object that touched it was the {_name(scene, mover)}."
    return text, truth, others, reasoning, {"subject": _desc(scene, target)}


def _spatial(scene, rng, kind, obj):
    own = scene.events_of(obj, "appear", "move", "leave")
    key = own[-1] if kind == "before_leave" else own[0]
    # Distractors: first the other regions this object visited (the plausible mistakes),
    # then random other regions.
    visited = list(dict.fromkeys(e.region for e in own if e.region != key.region))
    rest = [r for r in scene.level.regions if r != key.region and r not in visited]
    rest = [rest[int(i)] for i in rng.permutation(len(rest))]
    picks = [(r, f"the {r}") for r in (visited + rest)[:3]]
    name = _name(scene, obj)
    if kind == "before_leave":
        text = f"Where was the {name} just before it left the scene?"
        tail = f" So just before leaving it was in the {key.region}."
    else:
        text = f"Where did the {name} first appear?"
        tail = f" So it first appeared in the {key.region}."
    said = [key] if scene.difficulty == "easy" else own
    return text, (key.region, f"the {key.region}"), picks, narrate(scene, said) + tail, {"subject": _desc(scene, obj)}
