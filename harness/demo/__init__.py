"""`harness demo`: the toy pipeline end to end on CPU (the README's main command).

Stages (`pipeline.py`, top to bottom): synthesise data -> build the toy model -> CoT-SFT
-> RL with MR-SP (2 processes, SP=2, vLLM rollouts) and a few steps of the re-encoding
baseline -> evaluate untrained / SFT / RL on the held-out questions and in the Video-MME
layout with and without subtitles -> `report.md` with the accuracy table and PNG plots
(`report.py`). The 2-process launch is `launch.py`.
"""

from harness.demo.pipeline import FULL, QUICK, DemoSettings, run_demo

__all__ = ["FULL", "QUICK", "DemoSettings", "run_demo"]
