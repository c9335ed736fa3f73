"""GSM8K test split (1,319 grade-school word problems, whole-number answers), text only.

Data, as the owners publish it (github.com/openai/grade-school-math):

    <root>/grade_school_math/data/test.jsonl   (a clone of the repository; or <root>/test.jsonl,
                                                or give the .jsonl itself)
    one JSON object per line: {"question": str, "answer": str}, the answer being the worked
    solution (with <<48/2=24>> calculator annotations) whose last line is "#### 72"

or as HF `openai/gsm8k` lays it out (the same two string fields):

    <root>/main/test-00000-of-00001.parquet

The key is the number after "#### " with its commas removed, as the owners' own
`grade_school_math/dataset.py` `extract_answer` reads it (regex `#### (\\-?[0-9\\.\\,]+)`);
a line without one is dropped and counted. Questions carry no id: an item's qid is its line
(row) number, "test-0" first, the same in both layouts (a line that is not JSON keeps its number and is dropped, counted).

Prompt: zero-shot chain of thought with a boxed answer, the question followed by "Please
reason step by step, and put your final answer within \\boxed{}." (`BOXED_COT`: the
instruction of Qwen2.5-Math's evaluation, `qwen25-math-cot`, where it is the system message,
and the one DeepSeek-R1's model card recommends for math; here after the question, as the
runner renders one user turn). Scoring: the response's last \\boxed{} (else its last
<answer> span, else its last number) against the key with Math-Verify
(harness/algos/math_reward.py `math_check`); no answer at all counts as unparsed.

Text benchmarks have no video: `modality = "text"` and every item's `video` is the data
root, a placeholder the runner is to ignore for text items.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from evals.base import Benchmark, Item, need, read_parquet

BOXED_COT = "Please reason step by step, and put your final answer within \\boxed{}."
FINAL_ANSWER = re.compile(r"#### (\-?[0-9\.\,]+)")  # the owners' ANS_RE
JSONL_PLACES = ("grade_school_math/data/test.jsonl", "test.jsonl")
PARQUET_GLOB = "main/test-*.parquet"


class TextMathBenchmark(Benchmark):
    """Open math questions answered in text: a boxed-answer CoT prompt, Math-Verify scoring.
    Subclasses implement `load`, putting the reference answer (LaTeX or a number) in
    `Item.answer`; a key Math-Verify cannot read is dropped at load, counted."""

    modality = "text"

    def prompt(self, item: Item, subtitles: str | None = None) -> str:
        return f"{item.question}\n{BOXED_COT}"

    def score(self, item: Item, response: str) -> dict:
        from harness.algos.math_reward import math_check

        pred, correct = math_check(response or "", item.answer)
        return {"pred": pred, "correct": correct, "unparsed": pred == ""}

    def probe_item(self) -> Item:
        return Item(qid="probe-1", video=Path("."), question="What is 3 + 4?", options=[], answer="7")

    def keep_readable(self, items: list[Item], where: str) -> list[Item]:
        """The items whose key Math-Verify reads; the others are dropped (listed, counted)."""
        from harness.algos.math_reward import parse_key

        kept = []
        for it in items:
            try:
                parse_key(it.answer)
            except ValueError as err:
                self.drop(f"{where} item {it.qid}", str(err))
                continue
            kept.append(it)
        return kept


class GSM8K(TextMathBenchmark):
    name = "gsm8k"
    version = "gsm8k-v1"
    source = ("openai/grade-school-math grade_school_math/data/test.jsonl ({question, answer} with "
              "'#### N' last), or HF openai/gsm8k main/test-00000-of-00001.parquet")

    def load(self, root: Path) -> list[Item]:
        root = Path(root)
        path, rows = _read_rows(root)
        items = []
        for i, row in enumerate(rows):
            where = f"{path} row {i}"
            if isinstance(row, ValueError):
                self.drop(where, str(row))
                continue
            question, solution = str(need(row, "question", where)), str(need(row, "answer", where))
            found = FINAL_ANSWER.search(solution)
            if found is None:
                self.drop(where, "answer has no '#### N' final line")
                continue
            items.append(Item(qid=f"test-{i}", video=root, question=question, options=[],
                              answer=found.group(1).strip().replace(",", "")))
        return self.keep_readable(items, str(path))


def _read_rows(root: Path) -> tuple[Path, list[dict | ValueError]]:
    """(the file read, its records in order) from the jsonl or parquet layout; a line that
    is not JSON stands as its error, so the lines after it keep their numbers."""
    if root.is_file():
        return root, _jsonl(root)
    for place in JSONL_PLACES:
        if (root / place).is_file():
            return root / place, _jsonl(root / place)
    parquet = sorted(root.glob(PARQUET_GLOB))
    if parquet:
        return parquet[0], read_parquet(parquet)
    raise FileNotFoundError(f"no GSM8K test split under {root}: looked for "
                            f"{', '.join([*JSONL_PLACES, PARQUET_GLOB])}")


def _jsonl(path: Path) -> list[dict | ValueError]:
    rows: list[dict | ValueError] = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            rows.append(ValueError(f"line {n} is not JSON ({err.msg})"))
            continue
        rows.append(row if isinstance(row, dict) else ValueError(f"line {n} is not a JSON object"))
    return rows
