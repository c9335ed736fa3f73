"""MATH-500: the 500 MATH test problems of "Let's Verify Step by Step" (PRM800K's split),
text only, scored overall, by subject and by level.

Data, as HF `HuggingFaceH4/MATH-500` publishes it:

    <root>/test.jsonl   (or give the .jsonl itself)
    one JSON object per line: {"problem": str (LaTeX), "solution": str (ends in \\boxed{...}),
    "answer": str (the boxed answer, LaTeX without $), "subject": str (one of Algebra,
    Counting & Probability, Geometry, Intermediate Algebra, Number Theory, Prealgebra,
    Precalculus), "level": int 1-5, "unique_id": str ("test/precalculus/807.json")}

`unique_id` is the qid. A line that is not JSON, or lacks one of those fields, or whose
answer Math-Verify cannot read, is dropped and counted.

Prompt: the problem followed by "Please reason step by step, and put your final answer
within \\boxed{}." (evals/gsm8k.py `BOXED_COT`: Qwen2.5-Math's `qwen25-math-cot`
instruction, DeepSeek-R1's recommended math directive). Scoring: the response's last
\\boxed{} (else its last <answer> span, else its last number) against `answer` with
Math-Verify (harness/algos/math_reward.py `math_check`); lighteval's `math_500` task
(src/lighteval/tasks/tasks/math_500.py, `pass_at_k_math`) also grades by Math-Verify. `modality = "text"`; `video` is the data root, a placeholder.
"""

from __future__ import annotations

import json
from pathlib import Path

from evals.base import Item
from evals.gsm8k import TextMathBenchmark

FIELDS = ("problem", "answer", "subject", "level", "unique_id")


class MATH500(TextMathBenchmark):
    name = "math500"
    version = "math500-v1"
    source = ("HuggingFaceH4/MATH-500 test.jsonl: {problem, solution, answer, subject, level, "
              "unique_id} per line")
    breakdowns = ("subject", "level")

    def load(self, root: Path) -> list[Item]:
        root = Path(root)
        path = root if root.is_file() else root / "test.jsonl"
        if not path.is_file():
            raise FileNotFoundError(f"MATH-500 file not found: {path}")
        items = []
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if not line.strip():
                continue
            item = self._item(line, f"{path}:{n}", root)
            if item is not None:
                items.append(item)
        return self.keep_readable(items, str(path))

    def _item(self, line: str, where: str, root: Path) -> Item | None:
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            self.drop(where, f"not JSON ({err.msg})")
            return None
        missing = [k for k in FIELDS if not isinstance(row, dict) or row.get(k) is None]
        if missing:
            self.drop(where, f"missing field(s) {', '.join(missing)}")
            return None
        return Item(qid=str(row["unique_id"]), video=root, question=str(row["problem"]), options=[],
                    answer=str(row["answer"]),
                    fields={"subject": str(row["subject"]), "level": str(row["level"])})
