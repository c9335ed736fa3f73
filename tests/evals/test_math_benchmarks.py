"""The text math benchmarks (evals/gsm8k.py, evals/math500.py) on their published layouts.

Fixtures are written here from the published descriptions:
- GSM8K: github.com/openai/grade-school-math `grade_school_math/data/test.jsonl`, one
  {"question", "answer"} object per line, the answer a worked solution with <<a*b=c>>
  calculator annotations whose last line is "#### N" (the owners' `dataset.py` reads N with
  `#### (\\-?[0-9\\.\\,]+)` and drops the commas); HF `openai/gsm8k` holds the same two string
  columns in `main/test-00000-of-00001.parquet`. The first three rows are the file's first (the
  third's solution abridged); the fourth is written in the layout.
- MATH-500: HF `HuggingFaceH4/MATH-500` `test.jsonl`, one {"problem", "solution", "answer",
  "subject", "level" (int), "unique_id"} object per line; the first row is the file's first (its
  solution abridged), the others are written in its layout.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from evals.gsm8k import BOXED_COT, GSM8K
from evals.math500 import MATH500
from evals.tasks import TASKS, build_benchmark

GOLDEN = {  # task: sha256[:16] of the prompt rendered for probe_item() (no subtitles)
    "gsm8k": "ad3444c36cf61a21",
    "math500": "ad3444c36cf61a21",
}

GSM8K_ROWS = [
    {"question": "Janet\u2019s ducks lay 16 eggs per day. She eats three for breakfast every morning and bakes "
                 "muffins for her friends every day with four. She sells the remainder at the farmers' market "
                 "daily for $2 per fresh duck egg. How much in dollars does she make every day at the "
                 "farmers' market?",
     "answer": "Janet sells 16 - 3 - 4 = <<16-3-4=9>>9 duck eggs a day.\nShe makes 9 * 2 = $<<9*2=18>>18 "
               "every day at the farmer\u2019s market.\n#### 18"},
    {"question": "A robe takes 2 bolts of blue fiber and half that much white fiber.  How many bolts in total "
                 "does it take?",
     "answer": "It takes 2/2=<<2/2=1>>1 bolt of white fiber\nSo the total amount of fabric is 2+1=<<2+1=3>>3 "
               "bolts of fabric\n#### 3"},
    {"question": "Josh decides to try flipping a house.  He buys a house for $80,000 and then puts in $50,000 "
                 "in repairs.  This increased the value of the house by 150%.  How much profit did he make?",
     "answer": "The cost of the house and repairs came out to 80,000+50,000=$<<80000+50000=130000>>130,000\n"
               "So he made a profit of 200,000-130,000=$<<200000-130000=70000>>70,000\n#### 70000"},
    # the owners' regex admits a sign and thousands separators
    {"question": "A shop loses $1,250 a month for 2 months. What is its total change in money?",
     "answer": "It changes by -1,250*2=<<-1250*2=-2500>>-2,500\n#### -2,500"},
]

MATH500_ROWS = [
    {"problem": "Convert the point $(0,3)$ in rectangular coordinates to polar coordinates.  Enter your "
                "answer in the form $(r,\\theta),$ where $r > 0$ and $0 \\le \\theta < 2 \\pi.$",
     "solution": "We have that $r = \\sqrt{0^2 + 3^2} = 3.$  Therefore, the polar coordinates are "
                 "$\\boxed{\\left( 3, \\frac{\\pi}{2} \\right)}.$",
     "answer": "\\left( 3, \\frac{\\pi}{2} \\right)", "subject": "Precalculus", "level": 2,
     "unique_id": "test/precalculus/807.json"},
    {"problem": "What is $\\frac{1}{2} + \\frac{1}{4}$? Express your answer as a common fraction.",
     "solution": "$\\frac{1}{2} + \\frac{1}{4} = \\boxed{\\frac{3}{4}}$.",
     "answer": "\\frac{3}{4}", "subject": "Prealgebra", "level": 1, "unique_id": "test/prealgebra/1.json"},
    {"problem": "Expand $(x+1)^2$.", "solution": "$(x+1)^2 = \\boxed{x^2+2x+1}$.",
     "answer": "x^2+2x+1", "subject": "Algebra", "level": 2, "unique_id": "test/algebra/2.json"},
    {"problem": "How many positive divisors does 12 have?", "solution": "1, 2, 3, 4, 6, 12: $\\boxed{6}$.",
     "answer": "6", "subject": "Number Theory", "level": 1, "unique_id": "test/number_theory/3.json"},
]


def _jsonl(path: Path, rows: list[dict], extra_lines: tuple[str, ...] = ()) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join([json.dumps(r) for r in rows] + list(extra_lines)) + "\n", encoding="utf-8")
    return path


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


# --- registration, prompt ---------------------------------------------------------------


@pytest.mark.parametrize("task", sorted(GOLDEN))
def test_registered_text_benchmarks_and_pinned_prompt_hash(task):
    assert task in TASKS
    bench = build_benchmark(task)
    assert bench.modality == "text" and not bench.supports_subtitles and not bench.needs_judge
    assert bench.prompt_hash(False) == GOLDEN[task]


def test_prompt_is_the_question_then_the_boxed_cot_instruction(tmp_path):
    (it, *_) = GSM8K().load(_jsonl(tmp_path / "test.jsonl", GSM8K_ROWS))
    text = GSM8K().prompt(it)
    assert text == f"{GSM8K_ROWS[0]['question']}\nPlease reason step by step, and put your final answer within \\boxed{{}}."
    assert BOXED_COT.endswith("\\boxed{}.")


# --- GSM8K ------------------------------------------------------------------------------


@pytest.mark.parametrize("place", ["grade_school_math/data/test.jsonl", "test.jsonl"])
def test_gsm8k_reads_the_owners_jsonl(tmp_path, place):
    _jsonl(tmp_path / place, GSM8K_ROWS)
    bench = GSM8K()
    items = bench.load(tmp_path)
    assert [it.answer for it in items] == ["18", "3", "70000", "-2500"]
    assert [it.qid for it in items] == ["test-0", "test-1", "test-2", "test-3"]
    it = items[0]
    assert it.question == GSM8K_ROWS[0]["question"] and it.options == [] and it.fields == {}
    assert it.video == tmp_path  # text: the root stands in for the media
    assert bench.dropped == []


def test_gsm8k_reads_the_file_itself_and_the_hf_parquet_alike(tmp_path):
    from_file = GSM8K().load(_jsonl(tmp_path / "j" / "test.jsonl", GSM8K_ROWS))
    (tmp_path / "hf" / "main").mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist(GSM8K_ROWS), tmp_path / "hf" / "main" / "test-00000-of-00001.parquet")
    from_parquet = GSM8K().load(tmp_path / "hf")
    key = [(it.qid, it.question, it.answer) for it in from_file]
    assert key == [(it.qid, it.question, it.answer) for it in from_parquet]


def test_gsm8k_drops_lines_it_cannot_use_and_keeps_numbering(tmp_path):
    rows = [GSM8K_ROWS[0], {"question": "Q?", "answer": "no final line"}]
    path = _jsonl(tmp_path / "test.jsonl", rows, extra_lines=("{not json", json.dumps(GSM8K_ROWS[1])))
    bench = GSM8K()
    items = bench.load(tmp_path)
    assert [it.qid for it in items] == ["test-0", "test-3"]
    assert [d["where"] for d in bench.dropped] == [f"{path} row 1", f"{path} row 2"]
    assert "####" in bench.dropped[0]["reason"] and "not JSON" in bench.dropped[1]["reason"]


def test_gsm8k_missing_data_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="grade_school_math/data/test.jsonl"):
        GSM8K().load(tmp_path)


@pytest.mark.parametrize(("response", "qid", "pred", "correct"), [
    ("16 - 3 - 4 = 9 eggs, 9 * 2 = 18 dollars. The answer is \\boxed{18}.", "test-0", "18", True),
    ("She makes \\boxed{\\$18} a day.", "test-0", "\\$18", True),
    ("9 eggs at $2 each: $18.", "test-0", "18", True),  # no box: the last number
    ("<think>9 * 2</think><answer>18</answer>", "test-0", "18", True),
    ("\\boxed{17}", "test-0", "17", False),
    ("He made $70,000 in profit.", "test-2", "70,000", True),
    ("\\boxed{70000.0}", "test-2", "70000.0", True),
    ("\\boxed{-2,500}", "test-3", "-2,500", True),
    ("\\boxed{2500}", "test-3", "2500", False),
    ("I do not know.", "test-1", "", False),
])
def test_gsm8k_scoring(tmp_path, response, qid, pred, correct):
    bench = GSM8K()
    items = {it.qid: it for it in bench.load(_jsonl(tmp_path / "test.jsonl", GSM8K_ROWS))}
    verdict = bench.score(items[qid], response)
    assert verdict == {"pred": pred, "correct": correct, "unparsed": pred == ""}


# --- MATH-500 ---------------------------------------------------------------------------


def test_math500_reads_the_published_jsonl(tmp_path):
    bench = MATH500()
    items = bench.load(_jsonl(tmp_path / "test.jsonl", MATH500_ROWS).parent)
    assert [it.qid for it in items] == [r["unique_id"] for r in MATH500_ROWS]
    it = items[0]
    assert it.question == MATH500_ROWS[0]["problem"] and it.answer == "\\left( 3, \\frac{\\pi}{2} \\right)"
    assert it.fields == {"subject": "Precalculus", "level": "2"} and it.options == [] and it.video == tmp_path
    assert MATH500().load(tmp_path / "test.jsonl")[0].qid == "test/precalculus/807.json"  # the file itself


def test_math500_drops_bad_lines_and_unreadable_keys(tmp_path):
    broken = dict(MATH500_ROWS[1], unique_id="test/algebra/9.json", answer="")
    no_level = {k: v for k, v in MATH500_ROWS[2].items() if k != "level"}
    _jsonl(tmp_path / "test.jsonl", [MATH500_ROWS[0], broken, no_level], extra_lines=("[1, 2",))
    bench = MATH500()
    items = bench.load(tmp_path)
    assert [it.qid for it in items] == ["test/precalculus/807.json"]
    reasons = sorted(d["reason"] for d in bench.dropped)
    assert len(reasons) == 3
    assert any("level" in r for r in reasons) and any("not JSON" in r for r in reasons)
    assert any("cannot be read" in r for r in reasons)


def test_math500_missing_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="test.jsonl"):
        MATH500().load(tmp_path)


@pytest.mark.parametrize(("response", "index", "correct"), [
    ("... so the point is $\\boxed{\\left( 3, \\frac{\\pi}{2} \\right)}$.", 0, True),
    ("\\boxed{(3, \\pi/2)}", 0, True),
    ("\\boxed{(3, \\pi)}", 0, False),
    ("\\boxed{0.75}", 1, True),
    ("\\boxed{\\dfrac34}", 1, True),
    ("\\boxed{\\frac{2}{3}}", 1, False),
    ("\\boxed{1 + 2x + x^2}", 2, True),
    ("\\boxed{x^2+1}", 2, False),
    ("There are 6 of them.", 3, True),
    ("", 3, False),
])
def test_math500_scoring(tmp_path, response, index, correct):
    bench = MATH500()
    items = bench.load(_jsonl(tmp_path / "test.jsonl", MATH500_ROWS).parent)
    verdict = bench.score(items[index], response)
    assert verdict["correct"] is correct and verdict["unparsed"] == (verdict["pred"] == "")


def test_math500_breakdowns_by_subject_and_level(tmp_path):
    bench = MATH500()
    items = bench.load(_jsonl(tmp_path / "test.jsonl", MATH500_ROWS).parent)
    responses = ["\\boxed{(3, \\frac{\\pi}{2})}", "\\boxed{3/4}", "\\boxed{0}", "\\boxed{6}"]
    rows = [{"fields": it.fields, **bench.score(it, r)} for it, r in zip(items, responses, strict=True)]
    scores = bench.aggregate(rows)
    assert scores["accuracy"] == pytest.approx(0.75)
    assert scores["by_subject"]["Algebra"] == {"accuracy": 0.0, "n": 1}
    assert scores["by_subject"]["Precalculus"] == {"accuracy": 1.0, "n": 1}
    assert scores["by_level"] == {"1": {"accuracy": 1.0, "n": 2}, "2": {"accuracy": 0.5, "n": 2}}


def test_probe_prompt_is_open_and_hash_follows_the_prompt():
    bench = build_benchmark("math500")
    probe = bench.probe_item()
    assert probe.options == [] and bench.prompt(probe) == f"What is 3 + 4?\n{BOXED_COT}"
    assert _sha(bench.prompt(probe)) == GOLDEN["math500"]
