"""dedupe, answer-letter rebalance (with reasoning letters rewritten), the blind answer."""

from __future__ import annotations

from collections import Counter

from harness.data.build.filters import (
    Candidate,
    blind_letter,
    dedupe,
    letter_counts,
    rebalance,
    remap_letters,
)
from harness.data.build.parse import Question


def _cand(pid: str, vid: str, text: str = "Q?", answer: int = 0, n: int = 4, reasoning: str = "") -> Candidate:
    opts = [f"opt{i}" for i in range(n)]
    return Candidate(pid, vid, Question("temporal", text, opts, answer, reasoning or "At 00:10 x"))


def test_dedupe_within_a_video_only():
    cands = [_cand("a-q01", "a", "What happens first?"), _cand("a-q02", "a", "what happens  FIRST"),
             _cand("b-q01", "b", "What happens first?")]
    kept, dropped = dedupe(cands)
    assert [c.problem_id for c in kept] == ["a-q01", "b-q01"]
    assert [(c.problem_id, why) for c, why in dropped] == [("a-q02", "same question as a-q01")]


def test_rebalance_spreads_letters_and_keeps_the_correct_text():
    cands = [_cand(f"v{i // 4}-q{i % 4:02d}", f"v{i // 4}", answer=0) for i in range(40)]
    correct = {c.problem_id: c.question.options[c.question.answer] for c in cands}
    rebalance(cands, seed=0)
    assert letter_counts(cands) == {"A": 10, "B": 10, "C": 10, "D": 10}
    for c in cands:
        q = c.question
        assert q.options[q.answer] == correct[c.problem_id]
        assert sorted(q.options) == [f"opt{i}" for i in range(4)]
        # The wrong options keep their relative order.
        assert [o for o in q.options if o != correct[c.problem_id]] == ["opt1", "opt2", "opt3"]


def test_rebalance_is_a_function_of_the_set_and_seed():
    a = [_cand(f"v-q{i:02d}", "v", text=f"Q{i}") for i in range(12)]
    b = [_cand(f"v-q{i:02d}", "v", text=f"Q{i}") for i in reversed(range(12))]
    rebalance(a, 3)
    rebalance(b, 3)
    assert {c.problem_id: c.question.options for c in a} == {c.problem_id: c.question.options for c in b}
    c = [_cand(f"v-q{i:02d}", "v", text=f"Q{i}") for i in range(12)]
    rebalance(c, 4)
    assert [x.question.answer for x in c] != [x.question.answer for x in sorted(a, key=lambda x: x.problem_id)]


def test_rebalance_groups_by_option_count():
    cands = [_cand(f"v-q{i:02d}", "v", n=2 + i % 2) for i in range(30)]
    rebalance(cands, 0)
    two = Counter(c.question.letter for c in cands if len(c.question.options) == 2)
    three = Counter(c.question.letter for c in cands if len(c.question.options) == 3)
    assert max(two.values()) - min(two.values()) <= 1 and set(two) == {"A", "B"}
    assert max(three.values()) - min(three.values()) <= 1 and set(three) == {"A", "B", "C"}


def test_reasoning_letter_references_follow_the_options():
    c = _cand("v-q01", "v", answer=0, reasoning="At 00:10 x. Option B is wrong, (C) too; the answer is A.")
    rebalance([c], seed=0)
    q = c.question
    where = {o: "ABCD"[i] for i, o in enumerate(q.options)}
    assert q.reasoning == (f"At 00:10 x. Option {where['opt1']} is wrong, ({where['opt2']}) too; "
                           f"the answer is {where['opt0']}.")
    # Letters that are words or beyond the options are left alone.
    assert remap_letters("A dog. Option E. answer is B", {0: 1, 1: 0}, 2) == "A dog. Option E. answer is A"


def test_blind_letter():
    assert blind_letter("C", 4) == "C"
    assert blind_letter("C. The cat", 4) == "C"
    assert blind_letter("<think>Maybe A or B</think><answer>D</answer>", 4) == "D"
    assert blind_letter("I think it is (B), not A", 4) == "B"
    assert blind_letter("A guess: the answer is C", 4) == "C"
    assert blind_letter("My guess: the answer is c.", 4) == "C"
    assert blind_letter("It must be E", 4) is None  # not an option letter
    assert blind_letter("no idea", 4) is None
