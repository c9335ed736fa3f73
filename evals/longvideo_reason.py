"""LongVideo-Reason-eval: the paper's 1,000-question reasoning test (temporal 294, goal 288,
plot 283, spatial 135), scored per category and overall.

Data: the released test split (HF `LongVideo-Reason/longvideo-reason` `test.jsonl`; videos
from `LongVideo-Reason/longvideo_eval_videos`, unpacked so that the records' paths such as
`longvila_videos/ID.mp4` resolve), or the harness's own record files, one JSON object per
line (harness/data/records.py reads both forms):

    <root>/longvideo_reason_eval.jsonl   (else <root>/test.jsonl; or give the .jsonl itself)
    videos at the records' `videos` paths, relative to --video-dir (default: the jsonl's folder)

Released fields: `problem_id` (int), `problem` (question with "A. ..." lines), `problem_type`
(the category), `videos` (one path), `answer` ("<answer>B</answer>"). A line that cannot be
read is dropped and counted (`bad_records`), and fails the run unless allowed.
Prompt: the record's problem followed by the harness's reasoning instruction (think in
<think>, answer in <answer>), as in training. Scoring: a question with option lines reads
the letter from the <answer> span first (evals/extract.py); a question without option lines
(a few released ones) compares the <answer> text (the whole reply when there is no span),
stripped, with the key, as the authors' `eval/eval.py` does after its math check (which
applies to numbers, not to these questions). Scores: accuracy overall and by category.
"""

from __future__ import annotations

from pathlib import Path

from evals.base import Benchmark, Item
from evals.extract import answer_region

NAMES = ("longvideo_reason_eval.jsonl", "test.jsonl")


class LongVideoReason(Benchmark):
    name = "longvideo_reason"
    version = "longvideo-reason-v2"
    source = ("LongVideo-Reason test.jsonl (released or harness records); videos at the records' "
              "paths under --video-dir (default the jsonl's folder)")
    breakdowns = ("category",)

    def __init__(self, video_dir: str | Path | None = None) -> None:
        super().__init__()
        self.video_dir = Path(video_dir) if video_dir else None

    def load(self, root: Path) -> list[Item]:
        from harness.data.records import SkippedLine, option_lines, read_jsonl, video_recipe_problem

        root = Path(root)
        path = root if root.is_file() else next((root / n for n in NAMES if (root / n).is_file()), None)
        if path is None:
            raise FileNotFoundError(f"no {' or '.join(NAMES)} under {root}")
        videos = self.video_dir or path.parent
        if not videos.is_dir():
            raise FileNotFoundError(f"video folder {videos} does not exist (--video-dir)")
        skipped: list[SkippedLine] = []
        items = []
        # one video per question, as in training: a record naming several is dropped (listed)
        for rec in read_jsonl(path, skipped=skipped, usable=video_recipe_problem):
            options: list[str] = []
            if rec.problem_type == "multiple choice":  # the records' own reading, as in training
                options = list(rec.options) if rec.options else option_lines(rec.problem)
                if not options:
                    self.drop(f"{path} record {rec.problem_id}", "multiple choice without option lines")
                    continue
            items.append(Item(
                qid=rec.problem_id, video=videos / rec.videos[0], question=rec.problem,
                options=options, answer=rec.answer_text, fields={"category": rec.category or "unknown"},
            ))
        for line in skipped:
            self.drop(f"{line.path}:{line.line}", line.reason)
        return items

    def prompt(self, item: Item, subtitles: str | None = None) -> str:
        from harness.data.dataset import FREE_FORM_INSTRUCTION, REASONING_INSTRUCTION

        return f"{item.question}\n{REASONING_INSTRUCTION if item.options else FREE_FORM_INSTRUCTION}"

    def score(self, item: Item, response: str) -> dict:
        if item.options:
            return super().score(item, response)
        pred = answer_region(response or "").strip()
        return {"pred": pred, "correct": pred == item.answer.strip(), "unparsed": pred == ""}

    def probe_item(self) -> Item:
        item = super().probe_item()
        item.question = f"{item.question}\n" + "\n".join(
            f"{chr(65 + i)}. {o}" for i, o in enumerate(item.options))
        return item
