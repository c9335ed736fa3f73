"""`harness sft` and `harness rl` on records in the released LongVideo-Reason form, with the
videos in their own folder (`data.video_dir`), as Long-RL's `longvila_7b_video_grpo.sh`
passes `data.video_dir`. The records are this suite's synthetic questions rewritten in the
published field types (HF LongVideo-Reason/longvideo-reason: `problem_id` int, `videos` one
path string, the category in `problem_type`, no `options` or `category` fields)."""

import json

from harness.config import RLConfig, SFTConfig, load_config
from harness.trainer.metrics import read_metrics
from harness.trainer.rl import train_rl
from harness.trainer.sft import train_sft
from tests.helpers import tiny_overrides


def _released(src, dst):
    rows = []
    for n, line in enumerate(src.read_text().splitlines()):
        r = json.loads(line)
        rows.append({"problem_id": n, "problem": r["problem"], "data_type": "video",
                     "problem_type": r["category"], "reasoning": r.get("reasoning", ""),
                     "videos": r["videos"][0], "answer": r["answer"]})
    dst.write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_sft_and_rl_read_the_released_form(toy_data, tmp_path):
    ann = tmp_path / "longvideo-reason"
    ann.mkdir()
    for name in ("sft.jsonl", "rl.jsonl", "test.jsonl"):
        _released(toy_data / name, ann / name)
    common = {"data.video_dir": toy_data, "data.eval_video_dir": toy_data, "data.max_skip_fraction": 0.0}
    sft = load_config("configs/sft/toy-cpu.yaml", tiny_overrides(
        ann, tmp_path / "sft", **common, **{"run.steps": 2, "train.batch_size": 2, "train.grad_accum": 1}), SFTConfig)
    result = train_sft(sft)
    assert result["eval/questions"] == 4
    categories = {json.loads(line)["category"] for line in (toy_data / "test.jsonl").read_text().splitlines()}
    assert {f"eval/acc_{c}" for c in categories} <= result.keys() and "eval/acc_none" not in result
    rl = load_config("configs/rl/toy-cpu.yaml", tiny_overrides(ann, tmp_path / "rl", **common, **{
        "model.path": None, "model.size": "tiny", "run.steps": 1, "data.eval": None, "rollout.n": 2,
        "rollout.max_new_tokens": 4, "train.prompts_per_step": 2, "train.micro_batch": 4,
        "train.mini_batches": 1}), RLConfig)
    train_rl(rl)
    rows = [r for r in read_metrics(tmp_path / "rl" / "metrics.jsonl") if "reward/mean" in r]
    assert len(rows) == 1 and rows[0].get("data/decode_failures", 0) == 0
