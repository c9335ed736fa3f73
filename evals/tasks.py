"""The benchmark adapters by name (`harness eval --task NAME`)."""

from __future__ import annotations

from evals.activitynet_qa import ActivityNetQA
from evals.base import Benchmark
from evals.gsm8k import GSM8K
from evals.judge import OpenAIJudge
from evals.longvideo_reason import LongVideoReason
from evals.longvideobench import LongVideoBench
from evals.math500 import MATH500
from evals.mlvu import MLVU
from evals.nextqa import NExTQA
from evals.perceptiontest import PerceptionTest
from evals.videomme import VideoMME
from evals.vnbench import VNBench

TASKS: dict[str, type[Benchmark]] = {
    cls.name: cls
    for cls in (VideoMME, LongVideoBench, MLVU, PerceptionTest, NExTQA, VNBench, ActivityNetQA,
                LongVideoReason, GSM8K, MATH500)
}


def build_benchmark(name: str, judge: OpenAIJudge | None = None, video_dir: str | None = None) -> Benchmark:
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; known: {', '.join(TASKS)}")
    if video_dir is not None and name != LongVideoReason.name:
        raise ValueError(f"--video-dir is for longvideo_reason; {name} finds its videos in its own layout")
    if name == ActivityNetQA.name:
        return ActivityNetQA(judge)
    if name == LongVideoReason.name:
        return LongVideoReason(video_dir)
    return TASKS[name]()
