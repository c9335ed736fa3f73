"""PerceptionTest, multiple-choice video QA, validation split (3 options).

Data: github.com/google-deepmind/perception_test (valid annotations + videos):

    <root>/all_valid.json   {video_id: {"mc_question": [{id, question, options (3),
                            answer_id, area, reasoning, tag}, ...], ...}, ...}
    <root>/videos/<video_id>.mp4

Prompt: lmms-eval's `perceptiontest_val_mc`: the question, "A. ..." lines, then "Answer
with the option's letter from the given choices directly." Scores: accuracy, by area and
reasoning type.
"""

from __future__ import annotations

import json
from pathlib import Path

from evals.base import Benchmark, Item, letter_of, lettered, need

POST = "Answer with the option's letter from the given choices directly."


class PerceptionTest(Benchmark):
    name = "perceptiontest"
    version = "perceptiontest-v1"
    source = "google-deepmind/perception_test: all_valid.json, videos/<video_id>.mp4"
    breakdowns = ("area", "reasoning")

    def load(self, root: Path) -> list[Item]:
        path = Path(root) / "all_valid.json"
        if not path.is_file():
            raise FileNotFoundError(f"PerceptionTest annotations not found: {path}")
        items = []
        for video_id, entry in json.loads(path.read_text(encoding="utf-8")).items():
            for q in entry.get("mc_question", []):
                where = f"{path} video {video_id!r} question {q.get('id')!r}"
                options = [str(o) for o in need(q, "options", where)]
                items.append(Item(
                    qid=f"{video_id}-{need(q, 'id', where)}", video=Path(root) / "videos" / f"{video_id}.mp4",
                    question=str(need(q, "question", where)), options=options,
                    answer=letter_of(int(need(q, "answer_id", where)), len(options), where),
                    fields={k: str(q.get(k, "unknown")) for k in self.breakdowns},
                ))
        return items

    def prompt(self, item: Item, subtitles: str | None = None) -> str:
        return f"{item.question}\n{lettered(item.options)}\n{POST}"
