"""The paper's numbers (arXiv 2507.07966 v4), as transcribed in docs/reference.md.

Accuracies in %; efficiency in seconds per RL step on 8xA100, `None` where the paper reports OOM.
"""

from __future__ import annotations

# Table 1 columns: (label, harness eval task, subtitles)
TABLE1_COLUMNS = [
    ("ActivityNet-QA", "activitynet_qa", False),
    ("LongVideoBench", "longvideobench", False),
    ("PerceptionTest", "perceptiontest", False),
    ("NExT-QA", "nextqa", False),
    ("VNBench", "vnbench", False),
    ("VideoMME w/o sub", "videomme", False),
    ("VideoMME w/ sub", "videomme", True),
]
TABLE1 = {
    "LongVILA-R1-7B": [64.8, 58.0, 68.9, 81.5, 75.5, 65.1, 71.1],
    "LongVILA-7B": [59.5, 57.1, 58.1, 80.7, 63.0, 60.1, 65.1],
    "GPT-4o": [61.9, 66.7, None, None, 64.4, 71.9, 77.2],
    "Gemini-1.5-Pro": [57.5, 64.0, None, None, 66.7, 75.0, 81.3],
}
TARGET = "LongVILA-R1-7B"  # the row our numbers are compared with

# VideoMME by duration: overall / short / medium / long
DURATION_COLUMNS = ["overall", "short", "medium", "long"]
VIDEOMME_DURATION = {
    ("LongVILA-R1-7B", False): [65.1, 76.8, 63.2, 55.2],
    ("LongVILA-R1-7B", True): [71.1, 79.2, 69.7, 64.3],
    ("LongVILA-7B", False): [60.1, 69.0, 58.3, 53.0],
    ("LongVILA-7B", True): [65.1, 72.9, 64.9, 57.4],
}

# LongVideo-Reason-eval: Temporal / Goal / Plot / Spatial / Overall (294 / 288 / 283 / 135 questions)
REASON_COLUMNS = [("Temporal", "temporal"), ("Goal", "goal"), ("Plot", "plot"), ("Spatial", "spatial"),
                  ("Overall", None)]
LONGVIDEO_REASON = {
    "LongVILA-R1-7B": [68.1, 85.7, 70.6, 53.3, 72.0],
    "Video-R1-7B": [61.4, 85.0, 62.0, 58.5, 68.1],
    "Gemini-1.5-Pro": [65.4, 81.9, 67.8, 53.3, 69.3],
    "LongVILA-7B": [58.0, 80.2, 57.1, 46.7, 62.7],
}

# Efficiency figure: seconds per RL step, {model: {frames: (baseline, stage 1, stages 1+2)}}
EFFICIENCY_HARDWARE = "8xA100"
EFFICIENCY = {
    "Qwen2.5-VL-7B": {256: (320, 110, 150), 512: (439, 245, 205), 1024: (None, None, 366)},
    "LongVILA-R1-7B": {256: (371, 175, 194), 512: (576, 278, 279), 1024: (None, None, 460)},
}
HEADLINE_SPEEDUP = 2.1  # "up to 2.1x": baseline / MR-SP at 512 frames
