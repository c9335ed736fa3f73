"""Benchmark adapters with the community's scoring protocols (docs/reference.md, "Benchmark
protocols"), run by `harness eval`.

    model.py        the narrow model interface (encode, batched generate) over harness models
    base.py         Item, Benchmark (prompt, score, aggregate, prompt hash)
    extract.py      option-letter extraction (versioned)
    subtitles.py    SRT parsing and the cues covering the sampled frames
    videomme.py longvideobench.py mlvu.py perceptiontest.py nextqa.py vnbench.py
    activitynet_qa.py (+ judge.py) longvideo_reason.py     one adapter per benchmark
    tasks.py        adapters by name;  runner.py  the resumable run;  cli.py  `harness eval`
    lm_eval_bridge.py + lm_eval_tasks/   the model and tasks for lm-evaluation-harness
"""
