"""Flags and handler of `harness data build` (cli.py adds the subcommand; heavy imports
wait until the command runs)."""

from __future__ import annotations

import argparse
import sys


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


def run_build(args: argparse.Namespace) -> int:
    from harness.data.build.backends import open_backend
    from harness.data.build.pipeline import build_dataset, summary_text
    from harness.data.build.split import parse_fractions
    from harness.data.build.state import ItemError, StageAborted

    fractions = parse_fractions(args.split)
    try:
        def backend(spec: str):
            return open_backend(spec, timeout=args.timeout, retries=args.retries)

        summary = build_dataset(
            args.videos, args.out, backend(args.captioner), backend(args.reasoner),
            blind=backend(args.blind_check) if args.blind_check else None,
            clip_seconds=args.clip_seconds, frames_per_clip=args.frames_per_clip,
            questions_per_video=args.questions_per_video, n_options=args.options,
            fractions=fractions, seed=args.seed, concurrency=args.concurrency,
            caption_max_tokens=args.caption_max_tokens, reason_max_tokens=args.reason_max_tokens,
            reason_temperature=args.reason_temperature, progress=not args.no_progress,
        )
    except (ItemError, StageAborted) as err:
        print(f"harness data build: error: {err}\nfinished items are kept in {args.out}/work; "
              "rerun the same command to continue", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"\nharness data build: interrupted; finished items are kept in {args.out}/work; "
              "rerun the same command to continue", file=sys.stderr)
        return 130
    print(summary_text(summary))
    failed = sum(s["failed"] for s in summary["stages"].values())
    return 1 if failed else 0
