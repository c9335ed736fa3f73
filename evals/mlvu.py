"""MLVU, dev split, multiple-choice tasks (M-Avg: the mean of per-task accuracies).

Data: the Hugging Face dataset MLVU/MVLU (its inner `MLVU/` folder) or the GitHub release
(github.com/JUNJIE99/MLVU, `data/`):

    <root>/json/<n>_<task>.json    (or <root>/data/, or <root>/MLVU/json/) lists of
                                   {video, duration, question, candidates, answer (the
                                   correct candidate's text), question_type}
    <root>/video/<n>_<task>/<video>  (or <root>/MLVU/video/...)

Or lmms-eval's re-packed dev set (HF sy1998/MLVU_dev): `mlvu/test-*.parquet` rows
{video_name, question (the options inside it), answer (a letter), task_type}, videos at
`<root>/<video_name>` (its zips unpacked there). How the options are written inside the
question is not established from public files: lines "(A) ..." and "A. ..." are read, the
text before them is the question; a row whose options cannot be read is dropped.

Files whose entries have no `candidates` (the open-ended sub_scene and summary tasks) are
skipped: they need a GPT judge and are not part of M-Avg. Two published questions
(2_needle.json entries 34 and 338) have an answer that is not among their candidates:
MLVU's scorer (`evaluation/multiple_choice_evaluation/choice_bench.py`) keeps them with a
key no reply can match, so they count as wrong; so do we (`key_outside_options` counts them).
Prompt: MLVU's choice-bench template: its instruction, "Question: ...", "Options:" with
"(A) ..." lines, then "Only give the best option." (MLVU's generation prefix
"Best option: (" is not appended: a chat model's reply starts in its own turn).
Scores: `accuracy` = M-Avg over the tasks (named as MLVU's scorer names them: plotQA,
needle, ego, count, order, anomaly_reco, topic_reasoning), `micro_accuracy` over
questions, and per task.
"""

from __future__ import annotations

import json
from pathlib import Path

from evals.base import (
    Benchmark,
    Item,
    group_accuracy,
    letter_of,
    lettered,
    mean_correct,
    need,
    read_parquet,
)
from evals.extract import option_letters

INSTRUCTION = (
    "Carefully watch this video and pay attention to every detail. Based on your "
    "observations, select the best option that accurately addresses the question."
)
POST = "Only give the best option."


NO_MATCH = "@"  # the key MLVU's scorer gives an answer outside the candidates


class MLVU(Benchmark):
    name = "mlvu"
    version = "mlvu-v2"
    source = "MLVU/MVLU: json/<n>_<task>.json (or data/, MLVU/json/), video/<n>_<task>/<video>"
    breakdowns = ("task",)

    def load(self, root: Path) -> list[Item]:
        root = Path(root)
        parquet = sorted(root.glob("mlvu/test-*.parquet"))
        if parquet and not any((root / d).is_dir() for d in ("json", "data", "MLVU")):
            return self._load_parquet(root, parquet)
        layouts = [(root / "json", root / "video"), (root / "data", root / "video"),
                   (root / "MLVU" / "json", root / "MLVU" / "video")]
        json_dir, video_dir = next(((j, v) for j, v in layouts if any(j.glob("*.json"))), layouts[0])
        files = sorted(json_dir.glob("*.json"))
        if not files:
            raise FileNotFoundError(f"no MLVU task files under {root}/json, {root}/data or {root}/MLVU/json")
        items = []
        for path in files:
            for n, r in enumerate(json.loads(path.read_text(encoding="utf-8"))):
                if "candidates" not in r:
                    continue
                where = f"{path} entry {n}"
                options = [str(c) for c in r["candidates"]]
                answer = str(need(r, "answer", where))
                outside = answer not in options
                items.append(Item(
                    qid=f"{path.stem}-{n}", video=video_dir / path.stem / need(r, "video", where),
                    question=str(need(r, "question", where)), options=options,
                    answer=NO_MATCH if outside else letter_of(options.index(answer), len(options), where),
                    fields={"task": path.stem.split("_", 1)[-1]},
                ))
        return items

    def _load_parquet(self, root: Path, files: list[Path]) -> list[Item]:
        from harness.data.records import OPTION_LINE, option_lines

        items = []
        for n, r in enumerate(read_parquet(files)):
            where = f"{files[0]} row {n}"
            text = str(need(r, "question", where))
            options, answer = option_lines(text), str(need(r, "answer", where)).strip().strip("()")
            if not options or answer not in option_letters(len(options)):
                self.drop(where, f"options not readable from the question, or answer {answer!r} not among them")
                continue
            stem = "\n".join(line for line in text.splitlines() if not OPTION_LINE.match(line)).strip()
            items.append(Item(
                qid=f"lmms-{n}", video=root / str(need(r, "video_name", where)), question=stem,
                options=options, answer=answer, fields={"task": str(r.get("task_type", "unknown"))},
            ))
        return items

    def score(self, item: Item, response: str) -> dict:
        row = super().score(item, response)
        return {**row, "key_outside_options": item.answer == NO_MATCH}

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
            "key_outside_options": sum(bool(r.get("key_outside_options")) for r in rows),
        }

