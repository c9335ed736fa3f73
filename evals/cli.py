"""`harness eval`: one task (`--task NAME --data DIR --out FILE`) or every task of a config
(`--task all --config configs/eval/FILE.yaml --out DIR`, one results file per entry).

The config lists entries `{task, data, [subtitles], [frames], [out]}` and may set defaults
for `frames`, `sample_fps`, `max_new_tokens`, `batch_size`, `engine`; flags given on the
command line win over the config's defaults, an entry's own keys win over both.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

DEFAULTS = {"frames": 16, "sample_fps": None, "max_new_tokens": 1024, "batch_size": 8,
            "engine": "hf", "system_prompt": None}
VIDEO_DIR_TASK = "longvideo_reason"  # the one release that keeps its videos apart
ENTRY_KEYS = {"task", "data", "subtitles", "frames", "sample_fps", "out", "video_dir"}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--task", required=True, help="a task name, or 'all' with --config")
    p.add_argument("--data", help="the benchmark's local folder (see evals/<task>.py)")
    p.add_argument("--model", required=True, help="checkpoint folder")
    p.add_argument("--out", required=True, help="results JSON (a folder with --task all)")
    p.add_argument("--config", help="YAML listing the tasks for --task all (configs/eval/)")
    p.add_argument("--frames", type=int, help=f"frames per video (default {DEFAULTS['frames']})")
    p.add_argument("--fps", dest="sample_fps", type=float, help="sample at this fps, --frames as cap")
    p.add_argument("--frame-sampling", dest="frame_sampler", choices=["uniform", "qwen"], default="uniform",
                   help="uniform: lmms-eval's linspace; qwen: Qwen's video pipeline (qwen-vl-utils)")
    p.add_argument("--subtitles", action="store_true", help="Video-MME with subtitles")
    p.add_argument("--engine", choices=["hf", "vllm", "auto"], help="generation engine (default hf)")
    p.add_argument("--batch-size", dest="batch_size", type=int, help="prompts per generate call")
    p.add_argument("--max-new-tokens", dest="max_new_tokens", type=int)
    p.add_argument("--system-prompt", dest="system_prompt")
    p.add_argument("--judge-url", help="OpenAI-compatible base URL, e.g. http://localhost:8000/v1")
    p.add_argument("--judge-model", help="the judge model's name on that endpoint")
    p.add_argument("--max-dropped-share", dest="max_dropped_share", type=float, default=0.0,
                   help="share of records an adapter may drop as unusable before the run fails (default 0)")
    p.add_argument("--video-dir", dest="video_dir",
                   help="where the videos are, for a release that keeps them apart from its annotations "
                        "(longvideo_reason: the folder holding longvila_videos/)")
    p.add_argument("--no-progress", action="store_true")


def run(args: argparse.Namespace) -> int:
    import os

    from evals.judge import OpenAIJudge
    from evals.model import HarnessVLM
    from evals.runner import EvalIncomplete, EvalSettings, run_eval
    from evals.tasks import build_benchmark

    entries, defaults = _plan(args)
    opts = dict(defaults)
    for k in DEFAULTS:
        if getattr(args, k, None) is not None:
            opts[k] = getattr(args, k)
    model = HarnessVLM(args.model, engine=opts["engine"], max_new_tokens=opts["max_new_tokens"],
                       batch_size=opts["batch_size"], system_prompt=opts["system_prompt"])
    judge = None
    if args.judge_url or args.judge_model:
        if not (args.judge_url and args.judge_model):
            raise ValueError("give both --judge-url and --judge-model")
        judge = OpenAIJudge(args.judge_url, args.judge_model, api_key=os.environ.get("OPENAI_API_KEY"))
    if not 0.0 <= args.max_dropped_share <= 1.0:
        raise ValueError(f"--max-dropped-share must be in [0, 1], got {args.max_dropped_share}")
    failed = []
    for entry in entries:
        bench = build_benchmark(entry["task"], judge, video_dir=entry.get("video_dir"))
        settings = EvalSettings(
            frames=entry.get("frames", opts["frames"]),
            subtitles=bool(entry.get("subtitles", False)),
            sample_fps=entry.get("sample_fps", opts["sample_fps"]),
            progress=not args.no_progress,
            max_dropped_share=args.max_dropped_share,
            frame_sampler=args.frame_sampler,
        )
        try:
            res = run_eval(bench, model, Path(entry["data"]), Path(entry["out"]), settings)
        except EvalIncomplete as err:
            failed.append(str(err))
            continue
        c = res["counts"]
        acc = res["scores"]["accuracy"]
        print(f"{entry['task']}{' (subtitles)' if settings.subtitles else ''}: accuracy "
              f"{'n/a' if acc is None else f'{100 * acc:.2f}%'} on {c['answered']}/{c['questions']} "
              f"questions (unparsed {c['unparsed']}, missing video {c['missing_video']}, dropped records "
              f"{c['bad_records']}) -> {entry['out']}")
    for message in failed:
        print(f"harness eval: failed: {message}", file=sys.stderr)
    return 1 if failed else 0


def _plan(args: argparse.Namespace) -> tuple[list[dict], dict]:
    """The (task, data, out, ...) entries to run and the defaults for them."""
    defaults = dict(DEFAULTS)
    if args.task != "all":
        if not args.data:
            raise ValueError("--data is required (the benchmark's local folder)")
        entry = {"task": args.task, "data": args.data, "out": args.out, "subtitles": args.subtitles}
        if args.video_dir:
            entry["video_dir"] = args.video_dir
        return _checked([entry]), defaults
    if not args.config:
        raise ValueError("--task all needs --config (a YAML listing the tasks, see configs/eval/)")
    import yaml

    cfg = yaml.safe_load(Path(args.config).read_text()) or {}
    unknown = set(cfg) - set(DEFAULTS) - {"tasks"}
    if unknown:
        raise ValueError(f"{args.config}: unknown keys {sorted(unknown)}")
    defaults.update({k: cfg[k] for k in DEFAULTS if k in cfg})
    entries = []
    for n, e in enumerate(cfg.get("tasks") or []):
        if not isinstance(e, dict) or "task" not in e or "data" not in e or set(e) - ENTRY_KEYS:
            raise ValueError(f"{args.config}: tasks[{n}] must be a mapping with task, data and "
                             f"optionally {sorted(ENTRY_KEYS - {'task', 'data'})}; got {e!r}")
        suffix = "_sub" if e.get("subtitles") else ""
        entry = {**e, "out": e.get("out") or str(Path(args.out) / f"{e['task']}{suffix}.json")}
        if args.video_dir and e["task"] == VIDEO_DIR_TASK:  # the flag serves the task that takes it
            entry.setdefault("video_dir", args.video_dir)
        entries.append(entry)
    if not entries:
        raise ValueError(f"{args.config}: no tasks listed")
    return _checked(entries), defaults


def _checked(entries: list[dict]) -> list[dict]:
    """Every entry's settings checked before the first task runs."""
    for e in entries:
        if e.get("video_dir") and e["task"] != VIDEO_DIR_TASK:
            raise ValueError(f"video_dir is for {VIDEO_DIR_TASK}; {e['task']} finds its videos in its own layout")
    return entries

