"""LongVideo-Reason-eval: the paper's 1,000-question reasoning test (temporal 294, goal 288,
plot 283, spatial 135), scored per category and overall.

Data: the harness record format (harness/data/records.py, the authors' LongVideo-Reason
fields plus `category`), one JSON object per line:

    <root>/longvideo_reason_eval.jsonl   (else <root>/test.jsonl; or give the .jsonl itself)
    videos at the paths in `videos`, relative to the jsonl's folder

`harness data synth` writes such a `test.jsonl` with synthetic videos. Malformed lines are
skipped with a warning (counted in the results as `bad_records`).
Prompt: the record's problem (question and "A. ..." lines) followed by the harness's
reasoning instruction (think in <think>, answer letter in <answer>), as in training; the
letter is read from the <answer> span first (evals/extract.py).
Scores: accuracy overall and by category.
"""

from __future__ import annotations

import re
from pathlib import Path

from evals.base import Benchmark, Item

NAMES = ("longvideo_reason_eval.jsonl", "test.jsonl")
_OPTION_LINE = re.compile(r"^([A-Z])\. ", re.M)


class LongVideoReason(Benchmark):
    name = "longvideo_reason"
    version = "longvideo-reason-v1"
    source = "harness records jsonl (longvideo_reason_eval.jsonl or test.jsonl), videos relative to it"
    breakdowns = ("category",)

    def __init__(self) -> None:
        self.bad_records = 0

    def load(self, root: Path) -> list[Item]:
        from harness.data.records import SkippedLine, read_jsonl

        root = Path(root)
        path = root if root.is_file() else next((root / n for n in NAMES if (root / n).is_file()), None)
        if path is None:
            raise FileNotFoundError(f"no {' or '.join(NAMES)} under {root}")
        skipped: list[SkippedLine] = []
        items = []
        for rec in read_jsonl(path, skipped=skipped):
            if rec.problem_type != "multiple choice" or not rec.videos:
                skipped.append(SkippedLine(str(path), 0, f"{rec.problem_id}: not a video MC question"))
                continue
            letters = _OPTION_LINE.findall(rec.problem)
            n_options = len(rec.options) if rec.options else len(letters)
            items.append(Item(
                qid=rec.problem_id, video=path.parent / rec.videos[0], question=rec.problem,
                options=list(rec.options) if rec.options else [""] * n_options,
                answer=rec.answer_text, fields={"category": rec.category or "unknown"},
            ))
        self.bad_records = len(skipped)
        return items

    def prompt(self, item: Item, subtitles: str | None = None) -> str:
        from harness.data.dataset import REASONING_INSTRUCTION

        return f"{item.question}\n{REASONING_INSTRUCTION}"

    def probe_item(self) -> Item:
        item = super().probe_item()
        item.question = f"{item.question}\n" + "\n".join(
            f"{chr(65 + i)}. {o}" for i, o in enumerate(item.options))
        return item
