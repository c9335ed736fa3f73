"""`harness eval`: one task (`--task NAME --data DIR --out FILE`) or every task of a config
(`--task all --config configs/eval/FILE.yaml --out DIR`, one results file per entry).

The config lists entries `{task, data, [subtitles], [frames], [out]}` and may set defaults
for `frames`, `sample_fps`, `max_new_tokens`, `batch_size`, `engine`; flags given on the
command line win over the config's defaults, an entry's own keys win over both.

Under torchrun (`torchrun --nproc_per_node N -m harness eval ...`) the N processes form one
sequence-parallel group: each video's frames are encoded across them and each prompt's
sequence is split over them for the prefill and for decoding (harness/rollout/sp_engine.py),
so one question on a video too long for one device (the paper's 8,192 frames) runs on one
node; rank 0 alone writes and prints.

Everything that needs no model is checked before it loads: the flags (named as typed), the
config, every entry's task name, data (its questions are read) and out path, and the judge
settings; a bad one stops the run with one line, having written nothing.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import torch

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
    p.add_argument("--embed-cache", dest="embed_cache",
                   help="a folder for video embeddings: each video decoded and encoded once across runs "
                        "(content-keyed; RL runs with train.embed_cache_dir and the same sampler share it)")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto",
                   help="auto: this process's GPU in bf16 when there is one, else the CPU in fp32")
    p.add_argument("--no-progress", action="store_true")


def run(args: argparse.Namespace) -> int:
    from evals.model import HarnessVLM
    from evals.runner import EvalIncomplete, run_eval

    # Everything that needs no model is checked first: a bad flag, config, task name, data
    # folder or out path costs seconds, not a model load (or a finished benchmark).
    _check_flags(args)
    entries, defaults = _plan(args)
    opts = dict(defaults)
    for k in DEFAULTS:
        if getattr(args, k, None) is not None:
            opts[k] = getattr(args, k)
    planned = _prepare(entries, opts, args)
    group = _sequence_parallel_group()
    model = HarnessVLM(args.model, engine=opts["engine"], max_new_tokens=opts["max_new_tokens"],
                       batch_size=opts["batch_size"], system_prompt=opts["system_prompt"], device=args.device,
                       sp_group=group)
    main = group is None or torch.distributed.get_rank() == 0
    failed = []
    for entry, bench, settings, items in planned:
        try:
            res = run_eval(bench, model, Path(entry["data"]), Path(entry["out"]), settings, items=items)
        except EvalIncomplete as err:
            failed.append(str(err))
            continue
        if not main:
            continue
        c = res["counts"]
        acc = res["scores"]["accuracy"]
        print(f"{entry['task']}{' (subtitles)' if settings.subtitles else ''}: accuracy "
              f"{'n/a' if acc is None else f'{100 * acc:.2f}%'} on {c['answered']}/{c['questions']} "
              f"questions (unparsed {c['unparsed']}, missing video {c['missing_video']}, dropped records "
              f"{c['bad_records']}{_reuse_note(c)}) -> {entry['out']}")
    for message in failed:
        print(f"harness eval: failed: {message}", file=sys.stderr)
    return 1 if failed else 0


def _sequence_parallel_group():
    """Under torchrun (WORLD_SIZE > 1): every process in one sequence-parallel group (each
    video's frames encoded across it, each prompt's sequence split over it); else None."""
    import os

    if int(os.environ.get("WORLD_SIZE", "1")) < 2:
        return None
    from harness.parallel.groups import build_layout, init_distributed

    init_distributed()
    return build_layout(1, torch.distributed.get_world_size()).sp_group


def _reuse_note(counts: dict) -> str:
    """What an earlier run's file contributed, when it contributed anything."""
    notes = [f"{counts[k]} {what}" for k, what in (
        ("reused_predictions", "responses reused"), ("rejudged", "judged again"),
        ("unreadable_lines", "unreadable prediction lines skipped")) if counts.get(k)]
    return f"; {', '.join(notes)}" if notes else ""


def _prepare(entries: list[dict], opts: dict, args: argparse.Namespace) -> list[tuple]:
    """(entry, benchmark, settings, questions) of every entry, all read before the model loads."""
    import os

    from evals.judge import OpenAIJudge
    from evals.runner import EvalSettings, load_items
    from evals.tasks import build_benchmark

    judge = None
    if args.judge_url:
        judge = OpenAIJudge(args.judge_url, args.judge_model, api_key=os.environ.get("OPENAI_API_KEY"))
    planned = []
    for entry in entries:
        settings = EvalSettings(
            frames=entry.get("frames", opts["frames"]),
            subtitles=bool(entry.get("subtitles", False)),
            sample_fps=entry.get("sample_fps", opts["sample_fps"]),
            progress=not args.no_progress,
            max_dropped_share=args.max_dropped_share,
            frame_sampler=args.frame_sampler,
            embed_cache=args.embed_cache,
        )
        if settings.frame_sampler == "qwen" and settings.frames < 2:
            raise ValueError(f"{entry['task']}: --frame-sampling qwen takes at least 2 frames (qwen-vl-utils "
                             f"uses a multiple of 2), got frames {settings.frames}")
        bench = build_benchmark(entry["task"], judge, video_dir=entry.get("video_dir"))
        if bench.needs_judge and judge is not None and not any(b.needs_judge for _, b, _, _ in planned):
            judge.probe()  # once, before the model loads
        planned.append((entry, bench, settings, load_items(bench, Path(entry["data"]), settings)))
    return planned


# How each setting is named on the command line (the error names what the user typed).
FLAGS = {"frames": "--frames", "sample_fps": "--fps", "max_new_tokens": "--max-new-tokens",
         "batch_size": "--batch-size", "engine": "--engine", "system_prompt": "--system-prompt"}


def _check_flags(args: argparse.Namespace) -> None:
    for key, flag in FLAGS.items():
        if getattr(args, key, None) is not None:
            _check_setting(key, getattr(args, key), flag)
    share = args.max_dropped_share
    if not (math.isfinite(share) and 0.0 <= share <= 1.0):
        raise ValueError(f"--max-dropped-share must be in [0, 1], got {share}")
    if bool(args.judge_url) != bool(args.judge_model):
        given, missing = ("--judge-url", "--judge-model") if args.judge_url else ("--judge-model", "--judge-url")
        raise ValueError(f"{given} needs {missing} too: give both (the endpoint and the judge model's name on it)")
    if args.judge_url and not args.judge_url.startswith(("http://", "https://")):
        raise ValueError(f"--judge-url must be an http:// or https:// URL (e.g. http://localhost:8000/v1), "
                         f"got {args.judge_url!r}")


def _check_setting(key: str, value, where: str) -> None:
    """One setting's value against its range; `where` names it as the user wrote it."""
    from evals.model import ENGINES
    from harness.data.video import MAX_FRAMES

    if key == "frames":
        _check_count(value, where, MAX_FRAMES)
    elif key in ("max_new_tokens", "batch_size"):
        _check_count(value, where)
    elif key == "sample_fps" and value is not None:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
            raise ValueError(f"{where} must be a number > 0 (frames per second), got {value!r}")
    elif key == "engine" and value not in ENGINES:
        raise ValueError(f"{where} must be one of {', '.join(ENGINES)}, got {value!r}")
    elif key == "system_prompt" and value is not None and not isinstance(value, str):
        raise ValueError(f"{where} must be text, got {value!r}")
    elif key == "subtitles" and not isinstance(value, bool):
        raise ValueError(f"{where} must be true or false, got {value!r}")
    elif key in ("task", "data", "out", "video_dir") and not (isinstance(value, str) and value):
        raise ValueError(f"{where} must be a name or path, got {value!r}")


def _check_count(value, where: str, most: int | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{where} must be a whole number, got {value!r}")
    if value < 1:
        raise ValueError(f"{where} must be >= 1, got {value}")
    if most is not None and value > most:
        raise ValueError(f"{where} must be <= {most}, got {value}")


def _plan(args: argparse.Namespace) -> tuple[list[dict], dict]:
    """The (task, data, out, ...) entries to run and the defaults for them."""
    from evals.runner import check_results_path

    defaults = dict(DEFAULTS)
    if args.task != "all":
        if args.config:  # silently ignoring it would run with settings the user did not ask for
            raise ValueError(f"--config {args.config} lists tasks for --task all; with --task {args.task} give "
                             f"the settings as flags (--data, --frames, ...)")
        if not args.data:
            raise ValueError("--data is required (the benchmark's local folder)")
        check_results_path(Path(args.out), "--out")
        entry = {"task": args.task, "data": args.data, "out": args.out, "subtitles": args.subtitles}
        if args.video_dir:
            entry["video_dir"] = args.video_dir
        return _checked([entry], ["--task"]), defaults
    if not args.config:
        raise ValueError("--task all needs --config (a YAML listing the tasks, see configs/eval/)")
    if args.subtitles:
        raise ValueError("--subtitles is for one task; with --task all set `subtitles: true` on the config's "
                         "entries that want them")
    if Path(args.out).exists() and not Path(args.out).is_dir():
        raise ValueError(f"--out {args.out} is a file; with --task all it is the folder that gets one results "
                         f"file per task")
    cfg = _read_config(Path(args.config))
    unknown = set(cfg) - set(DEFAULTS) - {"tasks"}
    if unknown:
        raise ValueError(f"{args.config}: unknown keys {sorted(map(str, unknown))}; known: "
                         f"tasks, {', '.join(DEFAULTS)}")
    for k in DEFAULTS:
        if k in cfg:
            _check_setting(k, cfg[k], f"{args.config}: {k}")
            defaults[k] = cfg[k]
    tasks = cfg.get("tasks") or []
    if not isinstance(tasks, list):
        raise ValueError(f"{args.config}: tasks must be a list of {{task, data}} mappings, got {tasks!r:.80}")
    entries, names = [], []
    for n, e in enumerate(tasks):
        if not isinstance(e, dict) or "task" not in e or "data" not in e or set(e) - ENTRY_KEYS:
            raise ValueError(f"{args.config}: tasks[{n}] must be a mapping with task, data and "
                             f"optionally {sorted(ENTRY_KEYS - {'task', 'data'})}; got {e!r}")
        for k, v in e.items():
            _check_setting(k, v, f"{args.config}: tasks[{n}].{k}")
        suffix = "_sub" if e.get("subtitles") else ""
        entry = {**e, "out": e.get("out") or str(Path(args.out) / f"{e['task']}{suffix}.json")}
        check_results_path(Path(entry["out"]), f"{args.config}: tasks[{n}] writes to" if e.get("out") else "--out")
        if args.video_dir and e["task"] == VIDEO_DIR_TASK:  # the flag serves the task that takes it
            entry.setdefault("video_dir", args.video_dir)
        entries.append(entry)
        names.append(f"{args.config}: tasks[{n}]")
    if not entries:
        raise ValueError(f"{args.config}: no tasks listed")
    return _checked(entries, names), defaults


def _read_config(path: Path) -> dict:
    """The eval config's mapping; a file that is not one is a one-line error naming it."""
    from harness.config import read_yaml

    if not path.is_file():
        raise FileNotFoundError(f"--config {path} is not a file (a YAML file is expected, e.g. configs/eval/)")
    cfg = read_yaml(path)  # syntax errors and repeated keys: file and line
    if cfg is None:
        return {}
    if not isinstance(cfg, dict):
        raise ValueError(f"{path}: the top level must be a mapping (tasks: [{{task: NAME, data: DIR}}, ...] "
                         f"and optional defaults such as frames), got a {type(cfg).__name__}")
    return cfg


def _checked(entries: list[dict], names: list[str]) -> list[dict]:
    """Every entry's settings checked before the first task runs (`names`: where each was given)."""
    import difflib

    from evals.tasks import TASKS

    outs: dict[str, str] = {}
    for n, (e, where) in enumerate(zip(entries, names, strict=True)):
        if e["task"] not in TASKS:
            close = difflib.get_close_matches(e["task"], TASKS, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ValueError(f"{where}: unknown task {e['task']!r}{hint}; known: {', '.join(TASKS)}")
        if e.get("video_dir") and e["task"] != VIDEO_DIR_TASK:
            raise ValueError(f"video_dir is for {VIDEO_DIR_TASK}; {e['task']} finds its videos in its own layout")
        if e.get("subtitles") and not TASKS[e["task"]].supports_subtitles:
            drop = "--subtitles" if where == "--task" else "its subtitles: true"
            raise ValueError(f"{where}: {e['task']} has no subtitle protocol; drop {drop}")
        out = str(Path(e["out"]).resolve())
        if out in outs:
            raise ValueError(f"{where} writes {e['out']}, as {outs[out]} does; give one of them its own out")
        outs[out] = f"tasks[{n}]"
    return entries
