"""`harness eval` under torchrun: 2 processes (each video's frames encoded across them,
each prompt's sequence split over them for prefill and decoding) answer every question as
the 1-process eval does, with subtitles and the disk cache in play; rank 0 alone writes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from evals.runner import predictions_path
from harness.cli import main

ROOT = Path(__file__).resolve().parents[2]


def _rows(out: Path) -> list[tuple]:
    return [(r["qid"], r["prompt_sha"], r["response"]) for r in
            map(json.loads, predictions_path(out).read_text().splitlines())]


@pytest.mark.distributed
@pytest.mark.timeout(400)
def test_two_process_eval_answers_as_one_process(tiny_ckpt, mme_root, tmp_path, capsys):
    common = ["eval", "--task", "videomme", "--subtitles", "--data", str(mme_root), "--model", str(tiny_ckpt),
              "--frames", "6", "--max-new-tokens", "8", "--no-progress"]
    assert main([*common, "--out", str(tmp_path / "one.json")]) == 0
    one = json.loads((tmp_path / "one.json").read_text())
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    for name in ("two", "two-cached"):
        extra = ["--embed-cache", str(tmp_path / "cache")] if name == "two-cached" else []
        done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                               "-m", "harness", *common, "--out", str(tmp_path / f"{name}.json"), *extra],
                              cwd=ROOT, env=env, capture_output=True, text=True, timeout=360)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        assert done.stdout.count("videomme (subtitles): accuracy") == 1  # rank 0 alone reports
        two = json.loads((tmp_path / f"{name}.json").read_text())
        assert two["protocol"]["engine"].startswith("hf (sequence parallel over 2 ranks")
        assert two["protocol_key"] == one["protocol_key"] and two["scores"] == one["scores"]
        assert _rows(tmp_path / f"{name}.json") == _rows(tmp_path / "one.json")  # answer for answer
    assert len(list((tmp_path / "cache").rglob("*.safetensors"))) == 3
