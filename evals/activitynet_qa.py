"""ActivityNet-QA, test split: open answers judged by an LLM (yes/no + a 0-5 score).

Data: github.com/MILVLG/activitynet-qa (dataset/) and the ActivityNet videos:

    <root>/test_q.json   list of {video_name, question_id, question}
    <root>/test_a.json   list of {question_id, answer, type}
    <root>/videos/v_<video_name>.mp4  (or <video_name>.mp4; .mkv/.webm are also looked for;
                                       lmms-eval's layout keeps them in <root>/all_test/)

or lmms-eval's (HF lmms-lab/ActivityNetQA): `data/test-*.parquet` rows {video_name,
question_id, question, answer, type}, every field a string.

Prompt: lmms-eval's `activitynetqa`: the question (capitalised, with "?") followed by
"Answer the question using a single word or phrase." The judge (evals/judge.py, any
OpenAI-compatible endpoint) decides; reported: accuracy (share of "yes"), mean score,
accuracy by answer type, and the judge's endpoint and model in the protocol.
"""

from __future__ import annotations

import json
from pathlib import Path

from evals.base import Benchmark, Item, find_video, need, read_parquet
from evals.judge import JudgeError, OpenAIJudge

POST = "Answer the question using a single word or phrase."
TYPES = {"0": "motion", "1": "spatial", "2": "temporal", "3": "yes_no", "4": "color",
         "5": "object", "6": "location", "7": "number", "8": "other"}


class ActivityNetQA(Benchmark):
    name = "activitynet_qa"
    version = "activitynet-qa-v1"
    source = "MILVLG/activitynet-qa: test_q.json, test_a.json, videos/v_<video_name>.mp4"
    breakdowns = ("type",)
    needs_judge = True

    def __init__(self, judge: OpenAIJudge | None = None) -> None:
        super().__init__()
        self.judge = judge

    def load(self, root: Path) -> list[Item]:
        root = Path(root)
        qs, ans = root / "test_q.json", root / "test_a.json"
        parquet = sorted(root.glob("data/test-*.parquet"))
        if not (qs.is_file() and ans.is_file()) and parquet:
            questions = read_parquet(parquet)  # one row holds question and answer
            answers, qs, ans = {str(r.get("question_id")): r for r in questions}, parquet[0], parquet[0]
        else:
            for p in (qs, ans):
                if not p.is_file():
                    raise FileNotFoundError(f"ActivityNet-QA file not found: {p} (nor data/test-*.parquet)")
            questions = json.loads(qs.read_text(encoding="utf-8"))
            answers = {str(a["question_id"]): a for a in json.loads(ans.read_text(encoding="utf-8"))}
        items = []
        for q in questions:
            where = f"{qs} question {q.get('question_id')!r}"
            qid = str(need(q, "question_id", where))
            if qid not in answers:
                raise ValueError(f"{where}: no answer in {ans}")
            a = answers[qid]
            items.append(Item(
                qid=str(qid), video=_video_path(root, str(need(q, "video_name", where))),
                question=str(need(q, "question", where)), options=[], answer=str(a["answer"]),
                fields={"type": TYPES.get(str(a.get("type")), str(a.get("type", "unknown")))},
            ))
        return items

    def prompt(self, item: Item, subtitles: str | None = None) -> str:
        q = item.question.strip()
        q = q[:1].upper() + q[1:]
        if not q.endswith("?"):
            q += "?"
        return f"{q}\n{POST}"

    def score(self, item: Item, response: str) -> dict:
        if self.judge is None:
            raise ValueError("activitynet_qa needs a judge: give --judge-url and --judge-model")
        try:
            v = self.judge.judge(item.question, item.answer, response.strip())
        except JudgeError as err:
            return {"pred": "", "correct": False, "unparsed": True, "judge_error": str(err)}
        return {"pred": "yes" if v.correct else "no", "correct": v.correct, "unparsed": False,
                "judge_score": v.score}

    def aggregate(self, rows: list[dict]) -> dict:
        scores = super().aggregate(rows)
        judged = [r["judge_score"] for r in rows if "judge_score" in r]
        scores["mean_score"] = sum(judged) / len(judged) if judged else None
        return scores


def _video_path(root: Path, name: str) -> Path:
    folders = [root / "videos", root / "all_test"]
    named = find_video(folders, f"v_{name}")
    if named.is_file():
        return named
    bare = find_video(folders, name)
    return bare if bare.is_file() else named  # missing: reported with the v_ path
