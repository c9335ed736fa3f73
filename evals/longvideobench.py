"""LongVideoBench, validation split (1,337 questions, up to 5 options).

Data: Hugging Face dataset longvideobench/LongVideoBench (cat videos.tar.part.* | tar x):

    <root>/lvb_val.json        list of {id, video_id, video_path, question, candidates,
                               correct_choice (index), duration_group (15/60/600/3600 s),
                               question_category, ...}
    or <root>/validation-*.parquet (the same rows with option0..option4 for `candidates`,
                               "N/A" where a question has fewer options; lmms-eval reads it)
    <root>/videos/<video_path>

Prompt: lmms-eval's `longvideobench_val_v` (video only, no interleaved subtitles): the
question, "A. ..." option lines, then "Answer with the option's letter from the given
choices directly." Scores: accuracy, by duration group and question category.
"""

from __future__ import annotations

import json
from pathlib import Path

from evals.base import Benchmark, Item, letter_of, lettered, need, read_parquet

POST = "Answer with the option's letter from the given choices directly."


class LongVideoBench(Benchmark):
    name = "longvideobench"
    version = "longvideobench-v1"
    source = "longvideobench/LongVideoBench: lvb_val.json, videos/<video_path>"
    breakdowns = ("duration_group", "question_category")

    def load(self, root: Path) -> list[Item]:
        root = Path(root)
        rows, path = _read_rows(root)
        items = []
        for r in rows:
            where = f"{path} item {r.get('id')!r}"
            if path.suffix == ".json":
                options = [str(c) for c in need(r, "candidates", where)]
            else:  # the parquet form
                options = [str(r[k]) for k in (f"option{i}" for i in range(5)) if r.get(k) not in (None, "N/A")]
            items.append(Item(
                qid=str(need(r, "id", where)), video=root / "videos" / need(r, "video_path", where),
                question=str(need(r, "question", where)), options=options,
                answer=letter_of(int(need(r, "correct_choice", where)), len(options), where),
                fields={k: str(r.get(k, "unknown")) for k in self.breakdowns},
            ))
        return items

    def prompt(self, item: Item, subtitles: str | None = None) -> str:
        return f"{item.question}\n{lettered(item.options)}\n{POST}"


def _read_rows(root: Path) -> tuple[list[dict], Path]:
    path = root / "lvb_val.json"
    if path.is_file():
        return json.loads(path.read_text(encoding="utf-8")), path
    parquet = sorted(root.glob("validation-*.parquet")) + sorted(root.glob("data/validation-*.parquet"))
    if parquet:
        return read_parquet(parquet), parquet[0]
    raise FileNotFoundError(f"LongVideoBench questions not found under {root}: expected lvb_val.json "
                            f"or validation-*.parquet")
