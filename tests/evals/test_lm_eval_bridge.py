"""lm-eval bridge: `simple_evaluate` with model `harness-vlm` on the harness task YAMLs gives
the same answers, hence the same accuracy, as `harness eval` (synthetic Video-MME, tiny model)."""

import json
from pathlib import Path

import pytest

lm_eval = pytest.importorskip("lm_eval")

import evals.lm_eval_bridge  # noqa: E402,F401  (registers harness-vlm)
from evals.model import HarnessVLM  # noqa: E402
from evals.runner import EvalSettings, predictions_path, run_eval  # noqa: E402
from evals.tasks import build_benchmark  # noqa: E402

TASK_DIR = Path(evals.lm_eval_bridge.__file__).parent / "lm_eval_tasks"


@pytest.mark.parametrize("subtitles", [False, True])
def test_simple_evaluate_matches_harness_eval(tiny_ckpt, mme_root, tmp_path, subtitles):
    from lm_eval.tasks import TaskManager

    frames, tokens, batch = 3, 6, 4
    out = tmp_path / "harness.json"
    ours = run_eval(build_benchmark("videomme"), HarnessVLM(tiny_ckpt, max_new_tokens=tokens, batch_size=batch),
                    mme_root, out, EvalSettings(frames, subtitles=subtitles, progress=False))
    name = "harness_videomme_subtitles" if subtitles else "harness_videomme"
    tm = TaskManager(include_path=str(TASK_DIR), include_defaults=False, metadata={"data_dir": str(mme_root), "frames": frames})
    res = lm_eval.simple_evaluate(
        model="harness-vlm", model_args={"pretrained": str(tiny_ckpt), "max_new_tokens": tokens},
        batch_size=batch, tasks=[name], task_manager=tm, log_samples=True)
    assert res["results"][name]["acc,none"] == pytest.approx(ours["scores"]["accuracy"])
    assert res["results"][name]["unparsed,none"] == pytest.approx(ours["counts"]["unparsed"] / 12)
    theirs = {s["doc"]["qid"]: s["resps"][0][0] for s in res["samples"][name]}
    mine = {json.loads(line)["qid"]: json.loads(line)["response"]
            for line in predictions_path(out).read_text().splitlines()}
    assert theirs == mine and len(mine) == 12


def test_task_needs_data_dir():
    from lm_eval.tasks import TaskManager

    tm = TaskManager(include_path=str(TASK_DIR), include_defaults=False, metadata={})
    with pytest.raises(ValueError, match="data_dir"):
        tm.load(["harness_vnbench"])
