"""Flags and handler of `harness data build` (cli.py adds the subcommand; heavy imports
wait until the command runs).

Every flag and the videos folder are checked before a model backend is opened: opening one
contacts its server (retrying for many seconds when it is down) or loads a local model.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

# build_dataset's settings -> the flags that set them, so a bad value is named as typed
FLAGS = {"clip_seconds": "--clip-seconds", "frames_per_clip": "--frames-per-clip",
         "questions_per_video": "--questions-per-video", "n_options": "--options",
         "concurrency": "--concurrency", "caption_max_tokens": "--caption-max-tokens",
         "reason_max_tokens": "--reason-max-tokens", "reason_temperature": "--reason-temperature"}


def add_build_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--videos", required=True, help="folder searched recursively for videos")
    p.add_argument("--out", required=True, help="output folder; rerun with the same one to continue")
    p.add_argument("--captioner", required=True, metavar="SPEC",
                   help="video VLM: http://HOST:PORT/v1[#MODEL] or a local model folder")
    p.add_argument("--reasoner", required=True, metavar="SPEC",
                   help="reasoning LLM: http://HOST:PORT/v1[#MODEL] or a local model folder")
    p.add_argument("--blind-check", metavar="SPEC", default=None,
                   help="text-only model: drop questions it answers without the video")
    p.add_argument("--clip-seconds", type=float, default=10.0)
    p.add_argument("--frames-per-clip", type=int, default=8)
    p.add_argument("--questions-per-video", type=int, default=4,
                   help="categories cycle temporal, goal, plot, spatial")
    p.add_argument("--options", type=int, default=4, help="options per question")
    p.add_argument("--split", default="0.3,0.6,0.1", help="fractions of videos: sft,rl,eval")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--concurrency", type=int, default=4, help="requests in flight per stage")
    p.add_argument("--timeout", type=float, default=600.0, help="seconds per request")
    p.add_argument("--retries", type=int, default=4, help="retries per request (exponential backoff)")
    p.add_argument("--caption-max-tokens", type=int, default=256)
    p.add_argument("--reason-max-tokens", type=int, default=4096)
    p.add_argument("--reason-temperature", type=float, default=0.6)
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def _settings(args: argparse.Namespace) -> dict:
    return {key: getattr(args, flag[2:].replace("-", "_")) for key, flag in FLAGS.items()}


def check_arguments(args: argparse.Namespace) -> None:
    """ValueError / FileNotFoundError naming the first bad flag; nothing is opened or written."""
    from harness.data.build.pipeline import check_settings

    check_settings(_settings(args), FLAGS)
    if not (math.isfinite(args.timeout) and args.timeout > 0):
        raise ValueError(f"--timeout must be a finite number of seconds > 0, got {args.timeout!r}")
    if args.retries < 0:
        raise ValueError(f"--retries must be >= 0, got {args.retries!r}")
    videos, out = Path(args.videos), Path(args.out)
    if not videos.is_dir():
        what = "is a file" if videos.exists() else "does not exist"
        raise FileNotFoundError(f"--videos {videos} {what}; give the folder that holds the videos")
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"--out {out} is a file; give a folder for the dataset")


def run_build(args: argparse.Namespace) -> int:
    from harness.data.build.backends import open_backend
    from harness.data.build.pipeline import build_dataset, summary_text
    from harness.data.build.split import parse_fractions
    from harness.data.build.state import ItemError, StageAborted

    fractions = parse_fractions(args.split)
    check_arguments(args)
    try:
        def backend(spec: str):
            return open_backend(spec, timeout=args.timeout, retries=args.retries)

        summary = build_dataset(
            args.videos, args.out, backend(args.captioner), backend(args.reasoner),
            blind=backend(args.blind_check) if args.blind_check else None,
            fractions=fractions, seed=args.seed, progress=not args.no_progress, **_settings(args),
        )
    except (ItemError, StageAborted) as err:
        print(f"harness data build: error: {err}\n{_kept_work(args.out)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"\nharness data build: interrupted; {_kept_work(args.out)}", file=sys.stderr)
        return 130
    print(summary_text(summary))
    if not summary["questions"]["kept"]:
        # Like an incomplete evaluation: what was written stays, but a script must not go on.
        print(f"harness data build: error: no question was kept; {Path(args.out) / 'summary.txt'} and "
              f"{Path(args.out) / 'dropped.jsonl'} say why", file=sys.stderr)
        return 1
    failed = sum(s["failed"] for s in summary["stages"].values())
    return 1 if failed else 0


def _kept_work(out: str) -> str:
    """What a rerun continues from: only claim kept work where some was written."""
    work = Path(out) / "work"
    if work.is_dir() and any(p.stat().st_size for p in work.iterdir() if p.is_file()):
        return f"finished items are kept in {work}; rerun the same command to continue"
    return "no item was finished yet; rerun the same command once the cause is fixed"
