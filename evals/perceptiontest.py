"""PerceptionTest, multiple-choice video QA, validation split (3 options).

Data: github.com/google-deepmind/perception_test (valid annotations + videos): the
multiple-choice download (`mc_question_valid_annotations.zip`) or the one with every task
(`valid_annotations.zip`); both map video ids to the same per-video entry:

    <root>/mc_question_valid.json  (else <root>/all_valid.json)
                            {video_id: {"metadata": {...}, "mc_question": [{id, question,
                            options (3), answer_id, area, reasoning, tag}, ...], ...}, ...}
    <root>/videos/<video_id>.mp4

or lmms-eval's (HF lmms-lab/PerceptionTest_Val): `mc_question_val/validation-*.parquet`
rows {video_name, question, question_id, options, answer_id (a string), area, reasoning,
tag}, videos at `<root>/videos/<video_name>.mp4` (or .MP4).

Prompt: lmms-eval's `perceptiontest_val_mc`: the question, "A. ..." lines, then "Answer
with the option's letter from the given choices directly." Scores: accuracy, by area and
reasoning type.
"""

from __future__ import annotations

import json
from pathlib import Path

from evals.base import Benchmark, Item, find_video, letter_of, lettered, need, read_parquet

POST = "Answer with the option's letter from the given choices directly."


class PerceptionTest(Benchmark):
    name = "perceptiontest"
    version = "perceptiontest-v1"
    source = "google-deepmind/perception_test: mc_question_valid.json or all_valid.json, videos/<video_id>.mp4"
    breakdowns = ("area", "reasoning")

    def load(self, root: Path) -> list[Item]:
        names = ("mc_question_valid.json", "all_valid.json")
        path = next((Path(root) / n for n in names if (Path(root) / n).is_file()), None)
        parquet = sorted(Path(root).glob("mc_question_val/validation-*.parquet"))
        if path is None and parquet:
            return self._load_parquet(Path(root), parquet)
        if path is None:
            raise FileNotFoundError(f"PerceptionTest annotations not found: {root}/{' or '.join(names)} "
                                    f"or {root}/mc_question_val/validation-*.parquet")
        items = []
        for video_id, entry in json.loads(path.read_text(encoding="utf-8")).items():
            for q in entry.get("mc_question", []):
                where = f"{path} video {video_id!r} question {q.get('id')!r}"
                options = [str(o) for o in need(q, "options", where)]
                items.append(Item(
                    qid=f"{video_id}-{need(q, 'id', where)}", video=find_video([Path(root) / "videos"], video_id),
                    question=str(need(q, "question", where)), options=options,
                    answer=letter_of(int(need(q, "answer_id", where)), len(options), where),
                    fields={k: str(q.get(k, "unknown")) for k in self.breakdowns},
                ))
        return items

    def _load_parquet(self, root: Path, files: list[Path]) -> list[Item]:
        items = []
        for r in read_parquet(files):
            where = f"{files[0]} question {r.get('question_id')!r}"
            options = [str(o) for o in need(r, "options", where)]
            video = str(need(r, "video_name", where))
            items.append(Item(
                qid=str(need(r, "question_id", where)), video=find_video([root / "videos"], video, (".mp4", ".MP4")),
                question=str(need(r, "question", where)), options=options,
                answer=letter_of(int(need(r, "answer_id", where)), len(options), where),
                fields={k: str(r.get(k, "unknown")) for k in self.breakdowns},
            ))
        return items

    def prompt(self, item: Item, subtitles: str | None = None) -> str:
        return f"{item.question}\n{lettered(item.options)}\n{POST}"
