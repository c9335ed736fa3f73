"""NExT-QA, multiple-choice test split (5 options).

Data: github.com/doc-doc/NExT-QA:

    <root>/MC/test.csv            columns video, frame_count, width, height, question,
                                  answer (index), qid, type, a0..a4  (val.csv also read
                                  when test.csv is absent)
    <root>/map_vid_vidorID.json   video -> "<dir>/<id>" under NExTVideo/ (optional)
    <root>/NExTVideo/<dir>/<id>.mp4, or <root>/videos/<video>.mp4 without the map

Prompt: lmms-eval's `nextqa_mc_test`: the question, "A. ..." lines, then "Answer with the
option's letter from the given choices directly." Scores: accuracy, by question type
(CW, CH, TN, TC, DC, DL, DO) and by its group (C causal, T temporal, D descriptive).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

from evals.base import Benchmark, Item, letter_of, lettered, need

POST = "Answer with the option's letter from the given choices directly."


class NExTQA(Benchmark):
    name = "nextqa"
    version = "nextqa-v1"
    source = "doc-doc/NExT-QA: MC/test.csv, map_vid_vidorID.json, NExTVideo/ (or videos/<video>.mp4)"
    breakdowns = ("type", "type_group")

    def load(self, root: Path) -> list[Item]:
        root = Path(root)
        path = next((p for p in (root / "MC" / "test.csv", root / "MC" / "val.csv") if p.is_file()), None)
        if path is None:
            raise FileNotFoundError(f"NExT-QA questions not found: {root}/MC/test.csv")
        mapping_file = root / "map_vid_vidorID.json"
        mapping = json.loads(mapping_file.read_text()) if mapping_file.is_file() else None
        items = []
        with path.open(encoding="utf-8", newline="") as f:
            for r in csv.DictReader(f):
                where = f"{path} qid {r.get('video')}-{r.get('qid')}"
                video = str(need(r, "video", where))
                options = [str(need(r, f"a{i}", where)) for i in range(5)]
                qtype = str(r.get("type", "unknown"))
                items.append(Item(
                    qid=f"{video}-{need(r, 'qid', where)}",
                    video=(root / "NExTVideo" / f"{mapping[video]}.mp4") if mapping
                    else root / "videos" / f"{video}.mp4",
                    question=str(need(r, "question", where)).strip(), options=options,
                    answer=letter_of(int(need(r, "answer", where)), 5, where),
                    fields={"type": qtype, "type_group": qtype[:1] or "unknown"},
                ))
        return items

    def prompt(self, item: Item, subtitles: str | None = None) -> str:
        return f"{item.question}\n{lettered(item.options)}\n{POST}"
