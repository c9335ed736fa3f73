"""LongVideoBench, validation split (1,337 questions, up to 5 options).

Data: Hugging Face dataset longvideobench/LongVideoBench (cat videos.tar.part.* | tar x):

    <root>/lvb_val.json        list of {id, video_id, video_path, question, candidates,
                               correct_choice (index), duration_group (15/60/600/3600 s),
                               question_category, ...}
    <root>/videos/<video_path>

Prompt: lmms-eval's `longvideobench_val_v` (video only, no interleaved subtitles): the
question, "A. ..." option lines, then "Answer with the option's letter from the given
choices directly." Scores: accuracy, by duration group and question category.
"""

from __future__ import annotations

import json
from pathlib import Path

from evals.base import Benchmark, Item, letter_of, lettered, need

POST = "Answer with the option's letter from the given choices directly."


class LongVideoBench(Benchmark):
    name = "longvideobench"
    version = "longvideobench-v1"
    source = "longvideobench/LongVideoBench: lvb_val.json, videos/<video_path>"
    breakdowns = ("duration_group", "question_category")

    def load(self, root: Path) -> list[Item]:
        path = Path(root) / "lvb_val.json"
        if not path.is_file():
            raise FileNotFoundError(f"LongVideoBench questions not found: {path}")
        items = []
        for r in json.loads(path.read_text(encoding="utf-8")):
            where = f"{path} item {r.get('id')!r}"
            options = [str(c) for c in need(r, "candidates", where)]
            items.append(Item(
                qid=str(need(r, "id", where)), video=Path(root) / "videos" / need(r, "video_path", where),
                question=str(need(r, "question", where)), options=options,
                answer=letter_of(int(need(r, "correct_choice", where)), len(options), where),
                fields={k: str(r.get(k, "unknown")) for k in self.breakdowns},
            ))
        return items

    def prompt(self, item: Item, subtitles: str | None = None) -> str:
        return f"{item.question}\n{lettered(item.options)}\n{POST}"
