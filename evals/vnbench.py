"""VNBench (video needle-in-a-haystack QA).

Data: github.com/joez17/VideoNIAH (VNBench release; annotations also on HF
Joez1717/VNBench):

    <root>/VNBench-main-4try.json   list of {video, question, options, gt (the correct
                                    option's text), type, try, ...}: 1,350 questions x 4
                                    tries with the options shuffled
    the video at the path as given (relative to <root>), else its file name under <root>,
    <root>/VNBench/, <root>/VNBench_new/ or <root>/videos/

Prompt: the owners' (`llava_examples/model_video_niah.py`): the question, "A. ..." lines,
then "Answer with the option's letter from the given choices directly."
Scores: `accuracy` is plain per-entry accuracy over every try (docs/reference.md's reading of
the LongVILA-R1 authors' variant; their scoring code is not public); `accuracy_4try` is
the owners' metric (`evaluation/eval.py`): a question counts only if all its tries are
right, averaged per needle type and then over the types. Both by type.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

from evals.base import Benchmark, Item, group_accuracy, letter_of, lettered, mean_correct, need

POST = "Answer with the option's letter from the given choices directly."


class VNBench(Benchmark):
    name = "vnbench"
    version = "vnbench-v2"
    source = "joez17/VideoNIAH: VNBench-main-4try.json, videos at their given paths or by file name"
    breakdowns = ("type",)

    def load(self, root: Path) -> list[Item]:
        root = Path(root)
        path = root / "VNBench-main-4try.json"
        if not path.is_file():
            raise FileNotFoundError(f"VNBench annotations not found: {path}")
        entries = json.loads(path.read_text(encoding="utf-8"))
        tries = defaultdict(int)  # a question's tries share its video (the owners group by it)
        for r in entries:
            tries[str(r.get("video"))] += 1
        items = []
        for n, r in enumerate(entries):
            where = f"{path} entry {n}"
            options = [str(o) for o in need(r, "options", where)]
            given = str(need(r, "video", where))
            answer, problem = _answer_letter(r, options)
            if answer is None:
                self.drop(where, problem)
                continue
            items.append(Item(
                qid=f"{Path(given).stem}-try{r.get('try', n)}-{n}", video=_video(root, given),
                question=str(need(r, "question", where)), options=options, answer=answer,
                fields={"type": str(r.get("type", "unknown")), "video": given, "tries": str(tries[given])},
            ))
        return items

    def prompt(self, item: Item, subtitles: str | None = None) -> str:
        return f"{item.question}\n{lettered(item.options)}\n{POST}"

    def aggregate(self, rows: list[dict]) -> dict:
        tries: dict[tuple[str, str, int], list[bool]] = defaultdict(list)
        for r in rows:
            f = r["fields"]
            tries[(f.get("type", "unknown"), f.get("video", r["qid"]), int(f.get("tries", 1)))].append(bool(r["correct"]))
        per_type: dict[str, list[bool]] = defaultdict(list)
        incomplete = 0
        for (qtype, _, expected), results in tries.items():
            if len(results) < expected:  # a try unanswered (its video missing): not graded
                incomplete += 1
                continue
            per_type[qtype].append(all(results))
        by_type_4try = {t: {"accuracy": sum(v) / len(v), "n": len(v)} for t, v in sorted(per_type.items())}
        accs = [g["accuracy"] for g in by_type_4try.values()]
        return {
            "accuracy": mean_correct(rows),
            "accuracy_4try": sum(accs) / len(accs) if accs else None,
            "by_type": group_accuracy(rows, "type"),
            "by_type_4try": by_type_4try,
            "incomplete_questions": incomplete,  # left out of accuracy_4try
        }


def _video(root: Path, given: str) -> Path:
    name = Path(given).name
    candidates = [root / given.removeprefix("./"), root / name, root / "VNBench" / name,
                  root / "VNBench_new" / name, root / "videos" / name]
    return next((c for c in candidates if c.is_file()), candidates[0])


def _answer_letter(r: dict, options: list[str]) -> tuple[str | None, str]:
    """The letter of `gt` (the owners derive it so); a `gt_option` given too must agree.
    Returns (letter, "") or (None, why not)."""
    label = str(r.get("gt_option") or "").strip().strip("()").strip().upper()
    label = label if len(label) == 1 and 0 <= ord(label) - 65 < len(options) else None
    gt = r.get("gt")
    if gt is None:
        return (label, "") if label else (None, f"no gt and no usable gt_option {r.get('gt_option')!r}")
    if str(gt) not in options:
        return None, f"answer {gt!r} is not one of the options {options}"
    letter = letter_of(options.index(str(gt)), len(options), "VNBench")
    if label not in (None, letter):
        return None, f"gt_option {r.get('gt_option')!r} disagrees with gt {gt!r} (letter {letter})"
    return letter, ""
