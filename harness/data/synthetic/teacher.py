"""A simulated imperfect chain-of-thought teacher for the SFT split (basic level).

Why. The paper's CoT-SFT data are written by models (clip captions by a VLM, reasoning by an
LLM), so they carry the teacher's perception mistakes, while RL rewards answers checked
against the truth. `synthesize` writes its reasoning from the ground truth: a perfect teacher.
At toy scale SFT on perfect reasoning leaves RL nothing the model can read to improve
(reproduce/LOG.md, sessions 3-5). A teacher that misnames some colours ("a captioner that
calls a yellow object green in 65 % of the yellow videos") gives SFT a mistake to imitate and RL a
truthful reward to correct it; this is the toy's model of the paper's two stages.

Contract. `ColourConfusion(true, said, rate)`: in each SFT video whose object is `true`, the
teacher names it `said` with probability `rate`, one draw per video (a video is captioned
once, so all of its questions share the mistake): every reasoning of that video names `said`,
and its colour question's answer becomes `said`. RL and test records keep the truth (the RL
reward is verifiable). Defined for the basic level only, whose reasoning names the one
object's colour as a word ("A yellow square appears in the top right. So the answer is ...").
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from harness.data.synthetic.questions import Question
from harness.data.synthetic.scene import LEVELS, Scene


@dataclass(frozen=True)
class ColourConfusion:
    true: str
    said: str
    rate: float

    def __str__(self) -> str:
        return f"{self.true}={self.said}:{self.rate:g}"


def parse_confusion(text: str) -> ColourConfusion:
    """'yellow=green:0.65' -> ColourConfusion('yellow', 'green', 0.65); ValueError otherwise."""
    m = re.fullmatch(r"\s*([a-z]+)\s*=\s*([a-z]+)\s*:\s*([0-9.eE+-]+)\s*", text)
    if m is None:
        raise ValueError(f"teacher confusion must read TRUE=SAID:RATE (e.g. yellow=green:0.65), got {text!r}")
    try:
        rate = float(m[3])
    except ValueError:
        raise ValueError(f"teacher confusion {text!r}: rate {m[3]!r} is not a number") from None
    return ColourConfusion(m[1], m[2], rate)


def check_confusions(confusions: Sequence[ColourConfusion], difficulty: str) -> None:
    """ValueError naming the problem: a level other than basic, an unknown colour, a colour
    confused with itself or confused twice, a rate outside [0, 1]."""
    if not confusions:
        return
    if difficulty != "basic":
        raise ValueError(f"teacher confusions are defined for the basic level (one object whose colour the "
                         f"reasoning names), not {difficulty!r}")
    colours = LEVELS["basic"].colours
    seen: set[str] = set()
    for c in confusions:
        for name in (c.true, c.said):
            if name not in colours:
                raise ValueError(f"teacher confusion {c}: {name!r} is not a colour of the basic level {colours}")
        if c.true == c.said:
            raise ValueError(f"teacher confusion {c}: a colour confused with itself")
        if c.true in seen:
            raise ValueError(f"teacher confusion {c}: {c.true!r} is confused twice")
        if not 0.0 <= c.rate <= 1.0:
            raise ValueError(f"teacher confusion {c}: rate must be in [0, 1]")
        seen.add(c.true)


def teacher_view(scene: Scene, questions: list[Question], confusions: Sequence[ColourConfusion],
                 rng: np.random.Generator) -> tuple[list[Question], bool]:
    """The video's questions as the imperfect teacher writes them, and whether it misnamed
    the colour. One uniform draw per video, whatever its colour: all of a video's questions
    share the outcome, and raising a rate only adds misnamed videos (the same draw)."""
    colour = scene.events_of(0, "appear")[0].colour
    draw = rng.random()
    rule = next((c for c in confusions if c.true == colour), None)
    if rule is None or draw >= rule.rate:
        return questions, False
    word = re.compile(rf"\b{re.escape(colour)}\b")
    out = []
    for q in questions:
        answer = q.options.index(rule.said) if q.kind == "colour_of" else q.answer
        out.append(replace(q, reasoning=word.sub(rule.said, q.reasoning), answer=answer))
    return out, True
