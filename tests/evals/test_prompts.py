"""Golden prompts: a change to any benchmark's prompt text changes a hash pinned here.

If a change is deliberate, bump the adapter's `version` and update the hash (results files
record both, so old and new scores are never compared unknowingly).
"""

import hashlib
from pathlib import Path

import pytest

from evals.base import Item
from evals.tasks import TASKS, build_benchmark
from evals.videomme import VideoMME

GOLDEN = {  # (task, subtitles): sha256[:16] of the prompt rendered for probe_item()
    ("activitynet_qa", False): "2936cdc3274b4601",
    ("longvideo_reason", False): "b6bf3b26ef540ae2",
    ("longvideobench", False): "2c94997d5731d7fa",
    ("mlvu", False): "97cae5ce8ebda82e",
    ("nextqa", False): "085a5676f655e485",  # lmms-eval nextqa_mc_test: no instruction after the options
    ("perceptiontest", False): "2c94997d5731d7fa",
    ("videomme", False): "5522d32ff2ae4876",
    ("videomme", True): "eba90a41dbf59195",
    ("vnbench", False): "2c94997d5731d7fa",  # the owners' "A. ..." options, as LongVideoBench's
    ("gsm8k", False): "ad3444c36cf61a21",
    ("math500", False): "ad3444c36cf61a21",
}

GOLDEN_RECORD = {False: "91ea0f68c53f9d35", True: "5287a76c610ecfd9"}  # RECORD below

RECORD = Item(
    qid="001-1", video=Path("v.mp4"), question="What colour is the first object to appear?",
    options=["A. Red.", "B. Green.", "C. Blue.", "D. Yellow."], answer="C",
)


def test_videomme_prompt_text_exact():
    bench = VideoMME()
    assert bench.prompt(RECORD) == (
        "Select the best answer to the following multiple-choice question based on the video. "
        "Respond with only the letter (A, B, C, or D) of the correct option.\n"
        "What colour is the first object to appear?\n"
        "A. Red.\nB. Green.\nC. Blue.\nD. Yellow.\n"
        "The best answer is:"
    )
    with_subs = bench.prompt(RECORD, "hello\nworld")
    assert with_subs.startswith("This video's subtitles are listed below:\nhello\nworld\nSelect the best")
    assert with_subs.endswith("The best answer is:")


def _sha(text):
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@pytest.mark.parametrize("subtitles", [False, True])
def test_videomme_golden_hash(subtitles):
    text = VideoMME().prompt(RECORD, "hello\nworld" if subtitles else None)
    assert _sha(text) == GOLDEN_RECORD[subtitles]



@pytest.mark.parametrize("task", sorted(TASKS))
def test_probe_prompt_hashes(task):
    bench = build_benchmark(task)
    assert bench.prompt_hash(False) == GOLDEN[(task, False)]
    if bench.supports_subtitles:
        assert bench.prompt_hash(True) == GOLDEN[(task, True)]
        assert bench.prompt_hash(True) != bench.prompt_hash(False)
