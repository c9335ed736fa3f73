"""A text model on a text benchmark end to end: `harness eval --task gsm8k` with a Qwen2
checkpoint folder scores every question (no video is decoded), resumes from its
predictions, and lm-eval's `simple_evaluate` through the bridge gives the same answers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from evals.model import HarnessVLM
from evals.runner import EvalSettings, predictions_path, run_eval
from evals.tasks import build_benchmark
from harness.model.build import init_model
from tests.evals.test_math_benchmarks import GSM8K_ROWS


@pytest.fixture(scope="module")
def text_ckpt(tmp_path_factory):
    path = tmp_path_factory.mktemp("ckpt") / "qwen2-tiny"
    init_model("qwen2", "tiny", seed=0).save_pretrained(path)
    return path


@pytest.fixture()
def gsm8k_root(tmp_path):
    """The owners' layout: grade_school_math/data/test.jsonl (see test_math_benchmarks)."""
    data = tmp_path / "gsm8k" / "grade_school_math" / "data"
    data.mkdir(parents=True)
    (data / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in GSM8K_ROWS))
    return tmp_path / "gsm8k"


def test_gsm8k_runs_and_resumes(text_ckpt, gsm8k_root, tmp_path):
    from harness.cli import main

    out = tmp_path / "gsm8k.json"
    argv = ["eval", "--task", "gsm8k", "--data", str(gsm8k_root), "--model", str(text_ckpt), "--out", str(out),
            "--max-new-tokens", "6", "--frames", "1", "--engine", "hf"]
    assert main(argv) == 0
    res = json.loads(out.read_text())
    assert res["counts"]["questions"] == res["counts"]["answered"] == len(GSM8K_ROWS)
    assert res["counts"]["missing_video"] == 0 and res["protocol"]["family"] == "qwen2"
    assert main(argv) == 0  # the second run answers nothing again
    assert json.loads(out.read_text())["counts"]["reused_predictions"] == len(GSM8K_ROWS)


def test_lm_eval_bridge_gives_the_same_answers(text_ckpt, gsm8k_root, tmp_path):
    lm_eval = pytest.importorskip("lm_eval")
    from lm_eval.tasks import TaskManager

    import evals.lm_eval_bridge  # noqa: F401  (registers harness-vlm)

    out = tmp_path / "harness.json"
    run_eval(build_benchmark("gsm8k"), HarnessVLM(text_ckpt, max_new_tokens=6, batch_size=2), gsm8k_root, out,
             EvalSettings(1, progress=False))
    task_dir = Path(evals.lm_eval_bridge.__file__).parent / "lm_eval_tasks"
    tm = TaskManager(include_path=str(task_dir), include_defaults=False, metadata={"data_dir": str(gsm8k_root)})
    res = lm_eval.simple_evaluate(model="harness-vlm", model_args={"pretrained": str(text_ckpt), "max_new_tokens": 6},
                                  batch_size=2, tasks=["harness_gsm8k"], task_manager=tm, log_samples=True)
    theirs = {s["doc"]["qid"]: s["resps"][0][0] for s in res["samples"]["harness_gsm8k"]}
    mine = {json.loads(line)["qid"]: json.loads(line)["response"]
            for line in predictions_path(out).read_text().splitlines()}
    assert theirs == mine and len(mine) == len(GSM8K_ROWS)
