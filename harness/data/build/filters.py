"""Filters between parsing and writing: duplicates, answer-letter balance, and questions
a text-only model answers without the video.

- `dedupe`: within one video, a question whose normalised text repeats an earlier one is
  dropped (across videos the same wording is fine: "What is the person's goal?" asks about
  different videos).
- `rebalance`: LLMs put the correct answer on A or B far more often than chance, and a
  policy trained on that learns the letter, not the video. The correct option of each
  question is moved to a target letter drawn from seeded shuffled blocks over 0..k-1
  (k = the question's option count), so letters are balanced within every k questions;
  the other options keep their order. Letter references in the reasoning ("option B",
  "(B)", "answer is B") are rewritten to the new letters (the prompt asks for none).
- `blind_correct`: the text-only check's reply -> whether it picked the correct letter;
  questions it gets right do not need the video and are dropped (pipeline.py).
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass

import numpy as np

from harness.data.build.parse import LETTERS, Question, normalize


@dataclass
class Candidate:
    """A parsed question with its place in the dataset."""

    problem_id: str  # "<video_id>-q<N>", N = position in the reasoner's reply, from 1
    video_id: str
    question: Question


def dedupe(cands: list[Candidate]) -> tuple[list[Candidate], list[tuple[Candidate, str]]]:
    """(kept, [(dropped, detail)]): the first of each (video, normalised question) stays."""
    seen: dict[tuple[str, str], str] = {}
    kept, dropped = [], []
    for c in cands:
        key = (c.video_id, normalize(c.question.question))
        if key in seen:
            dropped.append((c, f"same question as {seen[key]}"))
        else:
            seen[key] = c.problem_id
            kept.append(c)
    return kept, dropped


def letter_counts(cands: list[Candidate]) -> dict[str, int]:
    counts = Counter(c.question.letter for c in cands)
    return {k: counts[k] for k in sorted(counts)}


def _target(seed: int, k: int, g: int) -> int:
    """Correct-option index for the g-th question with k options: shuffled blocks of k."""
    block = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(k, g // k))).permutation(k)
    return int(block[g % k])


def rebalance(cands: list[Candidate], seed: int) -> list[Candidate]:
    """Move each correct option to its balanced target letter (in place, by problem_id
    order, so the result depends only on the set of questions and the seed)."""
    seen_per_k: Counter[int] = Counter()
    for c in sorted(cands, key=lambda c: c.problem_id):
        q = c.question
        k = len(q.options)
        target = _target(seed, k, seen_per_k[k])
        seen_per_k[k] += 1
        if target == q.answer:
            continue
        order = [i for i in range(k) if i != q.answer]
        order.insert(target, q.answer)  # order[new position] = old position
        new_of_old = {old: new for new, old in enumerate(order)}
        q.options = [q.options[old] for old in order]
        q.reasoning = remap_letters(q.reasoning, new_of_old, k)
        q.answer = target
    return cands


_LETTER_REF_RE = re.compile(
    r"(?P<pre>\b(?:[Oo]ption|[Cc]hoice|[Aa]nswer(?:\s+is)?)\s+\(?)(?P<l>[A-J])(?P<post>\)?)(?![A-Za-z])"
    r"|\((?P<l2>[A-J])\)")


def remap_letters(text: str, new_of_old: dict[int, int], k: int) -> str:
    """Rewrite letter references ("option B", "answer is B", "(B)") after options moved."""

    def sub(m: re.Match) -> str:
        letter = m.group("l") or m.group("l2")
        old = LETTERS.index(letter)
        if old >= k:
            return m.group(0)
        new = LETTERS[new_of_old[old]]
        if m.group("l"):
            return f"{m.group('pre')}{new}{m.group('post')}"
        return f"({new})"

    return _LETTER_REF_RE.sub(sub, text)


def blind_letter(reply: str, n_options: int) -> str | None:
    """The letter a text-only model picked, trying in turn: an <answer> span, "answer is X",
    a letter in parentheses, a reply opening with "X." / "X)" / just "X", any standalone
    letter. Only letters of the options count (so "I think" is not option I); None if
    there is none."""
    reply = re.sub(r"<think>.*?</think>", "", reply, flags=re.DOTALL)
    ls = LETTERS[:n_options]
    for pattern in (rf"<answer>\s*\(?([{ls}])\)?\s*</answer>", rf"answer\s+is\s*:?\s*\(?([{ls}])\b",
                    rf"\(([{ls}])\)", rf"^\s*([{ls}])\s*(?:[.):]|$)", rf"\b([{ls}])\b"):
        m = re.search(pattern, reply, flags=re.IGNORECASE if "answer" in pattern else 0)
        if m:
            return m.group(1).upper()
    return None
