"""NExT-QA, multiple-choice test split (5 options).

Data, in either published layout:

- the owners' (github.com/doc-doc/NExT-QA): `test.csv` at the top of the folder or at
  `dataset/nextqa/test.csv`, with `map_vid_vidorID.json` beside it (video id ->
  "<dir>/<id>") and the videos at `<root>/NExTVideo/<dir>/<id>.mp4`;
- lmms-eval's (HF lmms-lab/NExTQA): `MC/test-*.parquet` with the videos flat at
  `<root>/NExTVideo/<video>.mp4`.

Columns: video, frame_count, width, height, question, answer (option index), qid, type,
a0..a4. Only the test split is read (no quiet fall-back to val).
Prompt: lmms-eval's `nextqa_mc_test`: the stripped question, then "A. ..." lines of the
stripped options (no instruction after them). Scores: accuracy, by question type (CW, CH,
TN, TC, DC, DL, DO; TP counted as TN, as the owners' `eval_mc.py` does) and by its group
(C causal, T temporal, D descriptive).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

from evals.base import Benchmark, Item, letter_of, lettered, need, read_parquet


class NExTQA(Benchmark):
    name = "nextqa"
    version = "nextqa-v2"
    source = ("doc-doc/NExT-QA: test.csv or dataset/nextqa/test.csv + map_vid_vidorID.json, "
              "NExTVideo/<dir>/<id>.mp4; or lmms-lab/NExTQA: MC/test-*.parquet, NExTVideo/<video>.mp4")
    breakdowns = ("type", "type_group")

    def load(self, root: Path) -> list[Item]:
        root = Path(root)
        rows, where_from = _read_rows(root)
        mapping = _read_map(root, where_from)
        items = []
        for r in rows:
            where = f"{where_from} qid {r.get('video')}-{r.get('qid')}"
            video = str(need(r, "video", where))
            if mapping is not None and video not in mapping:
                self.drop(where, f"video {video} is not in map_vid_vidorID.json")
                continue
            qtype = str(r.get("type") or "unknown").strip()
            qtype = "TN" if qtype == "TP" else qtype
            items.append(Item(
                qid=f"{video}-{need(r, 'qid', where)}",
                video=root / "NExTVideo" / f"{mapping[video] if mapping is not None else video}.mp4",
                question=str(need(r, "question", where)).strip(),
                options=[str(need(r, f"a{i}", where)).strip() for i in range(5)],
                answer=letter_of(int(need(r, "answer", where)), 5, where),
                fields={"type": qtype, "type_group": qtype[:1] or "unknown"},
            ))
        return items

    def prompt(self, item: Item, subtitles: str | None = None) -> str:
        return f"{item.question}\n{lettered(item.options)}"


def _read_rows(root: Path) -> tuple[list[dict], Path]:
    for path in (root / "test.csv", root / "dataset" / "nextqa" / "test.csv", root / "nextqa" / "test.csv"):
        if path.is_file():
            with path.open(encoding="utf-8", newline="") as f:
                return list(csv.DictReader(f)), path
    parquet = sorted((root / "MC").glob("test-*.parquet"))
    if parquet:
        return read_parquet(parquet), parquet[0]
    raise FileNotFoundError(
        f"NExT-QA test questions not found under {root}: expected test.csv (or dataset/nextqa/test.csv) "
        f"from doc-doc/NExT-QA, or MC/test-*.parquet from lmms-lab/NExTQA")


def _read_map(root: Path, questions: Path) -> dict[str, str] | None:
    """The owners' video id -> "<dir>/<id>" map, when the official layout is used."""
    for path in (questions.parent / "map_vid_vidorID.json", root / "map_vid_vidorID.json"):
        if path.is_file():
            return {str(k): str(v) for k, v in json.loads(path.read_text(encoding="utf-8")).items()}
    return None
