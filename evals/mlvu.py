"""MLVU, dev split, multiple-choice tasks (M-Avg: the mean of per-task accuracies).

Data: Hugging Face dataset MLVU/MVLU (github.com/JUNJIE99/MLVU):

    <root>/json/<n>_<task>.json    lists of {video, duration, question, candidates,
                                   answer (the correct candidate's text), question_type}
    <root>/video/<n>_<task>/<video>

Files whose entries have no `candidates` (the open-ended sub_scene and summary tasks) are
skipped: they need a GPT judge and are not part of M-Avg.
Prompt: MLVU's choice-bench template: its instruction, "Question: ...", "Options:" with
"(A) ..." lines, then "Only give the best option." (MLVU's generation prefix
"Best option: (" is not appended: a chat model's reply starts in its own turn).
Scores: `accuracy` = M-Avg over tasks, `micro_accuracy` over questions, and per task.
"""

from __future__ import annotations

import json
from pathlib import Path

from evals.base import Benchmark, Item, group_accuracy, letter_of, lettered, mean_correct, need

INSTRUCTION = (
    "Carefully watch this video and pay attention to every detail. Based on your "
    "observations, select the best option that accurately addresses the question."
)
POST = "Only give the best option."


class MLVU(Benchmark):
    name = "mlvu"
    version = "mlvu-v1"
    source = "MLVU/MVLU: json/<n>_<task>.json, video/<n>_<task>/<video>"
    breakdowns = ("task",)

    def load(self, root: Path) -> list[Item]:
        files = sorted((Path(root) / "json").glob("*.json"))
        if not files:
            raise FileNotFoundError(f"no MLVU task files under {root}/json")
        items = []
        for path in files:
            for n, r in enumerate(json.loads(path.read_text(encoding="utf-8"))):
                if "candidates" not in r:
                    continue
                where = f"{path} entry {n}"
                options = [str(c) for c in r["candidates"]]
                answer = str(need(r, "answer", where))
                if answer not in options:
                    raise ValueError(f"{where}: answer {answer!r} is not a candidate")
                items.append(Item(
                    qid=f"{path.stem}-{n}", video=Path(root) / "video" / path.stem / need(r, "video", where),
                    question=str(need(r, "question", where)), options=options,
                    answer=letter_of(options.index(answer), len(options), where),
                    fields={"task": str(r.get("question_type") or path.stem)},
                ))
        return items

    def prompt(self, item: Item, subtitles: str | None = None) -> str:
        options = lettered(item.options, "({letter}) {text}")
        return f"{INSTRUCTION}\nQuestion: {item.question}\nOptions:\n{options}\n{POST}"

    def aggregate(self, rows: list[dict]) -> dict:
        per_task = group_accuracy(rows, "task")
        accs = [g["accuracy"] for g in per_task.values()]
        return {
            "accuracy": sum(accs) / len(accs) if accs else None,
            "micro_accuracy": mean_correct(rows),
            "by_task": per_task,
        }
