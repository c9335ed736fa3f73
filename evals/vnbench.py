"""VNBench (video needle-in-a-haystack QA), scored as the LongVILA-R1 authors do.

Data: github.com/joez17/VideoNIAH (VNBench release):

    <root>/VNBench-main-4try.json   list of {video, question, options, gt, gt_option,
                                    type, try, length, needle_time}
    <root>/<video>  (the path as given, relative), else <root>/videos/<basename of video>

The official score counts a question right only if all 4 tries (shuffled options) are
right; the authors' variant used here is plain per-item accuracy over every entry.
Prompt: the question, "(A) ..." lines (VNBench's own option style), then "Answer with the
option's letter from the given choices directly." Scores: accuracy, by needle task type.
"""

from __future__ import annotations

import json
from pathlib import Path

from evals.base import Benchmark, Item, letter_of, lettered, need

POST = "Answer with the option's letter from the given choices directly."


class VNBench(Benchmark):
    name = "vnbench"
    version = "vnbench-v1"
    source = "joez17/VideoNIAH: VNBench-main-4try.json, videos at their given paths or videos/<name>"
    breakdowns = ("type",)

    def load(self, root: Path) -> list[Item]:
        root = Path(root)
        path = root / "VNBench-main-4try.json"
        if not path.is_file():
            raise FileNotFoundError(f"VNBench annotations not found: {path}")
        items = []
        for n, r in enumerate(json.loads(path.read_text(encoding="utf-8"))):
            where = f"{path} entry {n}"
            options = [str(o) for o in need(r, "options", where)]
            given = str(need(r, "video", where))
            video = root / given.lstrip("./")
            if not video.exists():
                video = root / "videos" / Path(given).name
            items.append(Item(
                qid=f"{Path(given).stem}-try{r.get('try', n)}-{n}", video=video,
                question=str(need(r, "question", where)), options=options,
                answer=_answer_letter(r, options, where),
                fields={"type": str(r.get("type", "unknown"))},
            ))
        return items

    def prompt(self, item: Item, subtitles: str | None = None) -> str:
        return f"{item.question}\n{lettered(item.options, '({letter}) {text}')}\n{POST}"


def _answer_letter(r: dict, options: list[str], where: str) -> str:
    label = str(r.get("gt_option") or "").strip().strip("()").strip()
    if len(label) == 1 and label.isalpha():
        return letter_of(ord(label.upper()) - 65, len(options), where)
    gt = str(need(r, "gt", where))
    if gt not in options:
        raise ValueError(f"{where}: answer {gt!r} is not one of the options {options}")
    return letter_of(options.index(gt), len(options), where)
