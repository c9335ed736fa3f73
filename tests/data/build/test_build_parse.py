"""parse_reply on recorded reasoner replies: each case's outcome is pinned (kept, repaired
with which repair, or dropped with which reason)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.data.build.parse import TIME_RE, normalize, parse_question, parse_reply

CASES = json.loads((Path(__file__).parent / "recorded_replies.json").read_text())["cases"]


def _outcomes(result) -> list[str]:
    by_index: dict[int, str] = {}
    for i, q in result.questions:
        by_index[i] = f"repaired:{','.join(q.repairs)}" if q.repairs else "kept"
    for d in result.drops:
        by_index[d.index] = f"dropped:{d.reason}"
    return [by_index[i] for i in sorted(by_index)]


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_recorded_reply(case):
    result = parse_reply(case["reply"], case["finish_reason"])
    expect = case["expect"]
    if isinstance(expect, list):
        expect = {"questions": expect}
    if "reply_drop" in expect:
        assert result.questions == []
        assert [d.reason for d in result.drops] == [expect["reply_drop"]]
        assert result.drops[0].index is None and result.drops[0].detail
        return
    assert result.reply_repairs == expect.get("reply_repairs", [])
    assert _outcomes(result) == expect["questions"]


def test_every_drop_reason_has_a_detail():
    for case in CASES:
        for d in parse_reply(case["reply"], case["finish_reason"]).drops:
            assert d.reason and d.detail, (case["name"], d)


def test_repairs_give_the_intended_question():
    (res,) = [c for c in CASES if c["name"] == "labelled_options"]
    (_, q), _ = parse_reply(res["reply"]).questions
    assert q.options == ["The dog runs", "The cat sleeps", "The bird sings", "The fish swims"]
    assert q.letter == "B"
    q = parse_question({"category": "goal", "question": "Why?", "options": ["To eat", "To sleep"],
                        "answer": "to SLEEP.", "reasoning": "At [00:05-00:10] she yawns."})
    assert q.answer == 1 and q.repairs == ["answer_as_text"]


def test_answer_text_matching_two_options_is_dropped():
    d = parse_question({"category": "goal", "question": "Why?", "options": ["Eat", "eat!", "Run"],
                        "answer": "eat", "reasoning": "At 00:05 ..."})
    assert d.reason == "duplicate_options"


def test_time_and_normalize():
    assert TIME_RE.search("at [01:10-01:20]") and TIME_RE.search("around 1:05:10")
    assert not TIME_RE.search("at 10 seconds, 3.5 s, ratio 1:2")
    assert normalize("  What  happens, FIRST? ") == "what happens first"
