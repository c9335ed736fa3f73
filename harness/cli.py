"""The `harness` command. Each subcommand parses its flags and calls one function;
heavy imports happen inside the handlers so `harness --help` stays instant.

    harness doctor                         what this environment has and what to fix
    harness demo [--out DIR] [--fresh] [--quick]   the end-to-end toy demo (SFT, RL with MR-SP, eval, report)
    harness demo --modality text|image|audio|video+audio [--quick]   the same on another medium
    harness demo --modality gen-image|gen-video [--quick]   Flow-GRPO on a toy image / video generator
    harness sft --config FILE [k=v ...] [--resume]    CoT-SFT
    harness rl  --config FILE [k=v ...] [--resume]    RL (GRPO, DAPO, RLOO, Dr.GRPO)
    harness gen-rl --config FILE [k=v ...] [--resume] Flow-GRPO on SD3- / Wan-style generators
    harness model init --family F --size S --out DIR [--seed N]
    harness model info DIR                 family, parameter counts, tokens per frame
    harness data synth --out DIR --videos N [--seed S] [--minutes A-B] [--fps F]
                       [--size WxH] [--format harness|videomme] [--difficulty default|easy|basic]
    harness data synth --out DIR --modality text|image|audio|video+audio|gen-image|gen-video --items N [--seed S]
    harness data build --videos DIR --out DIR --captioner SPEC --reasoner SPEC [--clip-seconds 10]
    harness eval --task T --data DIR --model DIR --out FILE [--frames N] [--subtitles]
    harness eval --task all --config configs/eval/FILE.yaml --model DIR --out DIR
    harness report --baseline perf/baselines/KIND.json|DIR --current FILE [FILE ...]
"""

from __future__ import annotations

import argparse
import errno
import os
import sys
from pathlib import Path

from harness.errors import HarnessError


def _doctor(args: argparse.Namespace) -> int:
    from harness.doctor import main

    return main()


def _demo(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from harness.demo import FULL, QUICK, run_demo

    if args.modality in ("gen-image", "gen-video"):
        from harness.demo import gen

        for flag in ("procs", "engine", "family"):
            if getattr(args, flag) is not None:
                raise ValueError(f"--{flag} is not a setting of the generation demo")
        out = Path(args.out) if args.out else Path("runs") / f"demo-{args.modality}"
        gen.run_gen_demo(out, args.modality, gen.QUICK if args.quick else gen.FULL, fresh=args.fresh, seed=args.seed)
        return 0
    if args.modality != "video":
        from harness.demo import media

        if args.procs is not None:
            raise ValueError("--procs is for the video demo (MR-SP over 2 processes); the other media run in one")
        family = args.family or media.MEDIA_FAMILIES[args.modality]
        settings = media.QUICK if args.quick else media.FULL
        settings = replace(settings, engine=args.engine) if args.engine else settings
        name = args.modality.replace("+", "-") + ("" if args.family is None else f"-{family}")
        out = Path(args.out) if args.out else Path("runs") / f"demo-{name}"
        media.run_media_demo(out, args.modality, settings, fresh=args.fresh, seed=args.seed,
                             size="tiny" if args.quick else "toy", family=family)
        return 0
    if args.family is not None:
        raise ValueError("--family is for the other media; the video demo runs the vila family")
    settings = QUICK if args.quick else FULL
    changes = {k: getattr(args, k) for k in ("procs", "engine") if getattr(args, k) is not None}
    run_demo(Path(args.out or "runs/demo"), replace(settings, **changes), fresh=args.fresh, seed=args.seed)
    return 0


def _sft(args: argparse.Namespace) -> int:
    from harness.config import SFTConfig
    from harness.trainer.sft import train_sft

    return _recipe(args, SFTConfig, train_sft)


def _rl(args: argparse.Namespace) -> int:
    from harness.config import RLConfig
    from harness.trainer.rl import train_rl

    return _recipe(args, RLConfig, train_rl)


def _gen_rl(args: argparse.Namespace) -> int:
    from harness.gen.config import GenRLConfig
    from harness.gen.train import train_gen_rl

    return _recipe(args, GenRLConfig, train_gen_rl)


def _recipe(args: argparse.Namespace, kind, train) -> int:
    from harness.config import load_config

    cfg = load_config(args.config, args.overrides, kind)  # validate before any collective
    if "RANK" in os.environ:  # launched by torchrun
        from harness.parallel.groups import init_distributed

        init_distributed()
    try:
        result = train(cfg, resume=args.resume)
    except KeyboardInterrupt:
        # What is done is in the checkpoints (written atomically): say how to go on.
        print(f"harness {args.command}: interrupted; `--resume` continues from the last checkpoint in "
              f"{cfg.run.out_dir}/checkpoints", file=sys.stderr)
        return 130
    print(result)
    return 0


def _model_init(args: argparse.Namespace) -> int:
    from harness.model.build import count_parameters, init_model

    if args.size == "7b":
        raise ValueError("size 7b builds on the meta device (no weights) and cannot be saved; "
                         "use `harness model info --size 7b` for its parameter counts")
    out = Path(args.out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise FileExistsError(f"--out {out} is not an empty folder (a checkpoint there would be mixed with "
                              f"this one's files); give a new folder")
    model = init_model(args.family, args.size, seed=args.seed)
    model.save_pretrained(args.out)
    counts = count_parameters(model)
    print(f"wrote {args.family}/{args.size} (seed {args.seed}) to {args.out}: "
          f"{sum(counts.values()):,} parameters {counts}; vocabulary {len(model.tokenizer)}")
    return 0


def _model_info(args: argparse.Namespace) -> int:
    from harness.model.build import count_parameters, init_model, load_model

    if args.path:
        model = load_model(args.path)
    else:
        model = init_model(args.family, args.size)
    counts = count_parameters(model)
    print(f"family {model.family}; parameters {sum(counts.values()):,} {counts}")
    if model.family == "vila":
        g, (h, w) = model.patch_grid, model.token_grid(None)
        enc = model.spec.video_encoder
        end = len(model.tokenizer(enc.end_tokens)["input_ids"]) if enc.end_tokens else 0
        per = "frame" if enc.pool[0] == 1 else f"{enc.pool[0]} frames (TSP pool)"
        print(f"frame {model.image_size}px -> {g}x{g} patches -> {h}x{w} tokens + {end} end token(s) = "
              f"{h * w + end} prompt rows per {per} ({model.spec.projector_type})")
    return 0


def _data_synth(args: argparse.Namespace) -> int:
    from harness.data.synthetic import parse_confusion, parse_minutes, parse_size, synthesize

    if args.modality in ("gen-image", "gen-video"):
        from harness.gen.data import synthesize_gen

        if args.items is None:
            raise ValueError(f"--modality {args.modality}: say how many prompts with --items N")
        print(synthesize_gen(Path(args.out), args.modality, args.items, args.seed))
        return 0
    if args.modality != "video":
        from harness.data.synthetic.modalities import synthesize_modality

        if args.videos is not None:
            raise ValueError("--videos counts videos of --modality video; give --items for the other media")
        if args.items is None:
            raise ValueError(f"--modality {args.modality}: say how many questions with --items N")
        level = {"default": None, "basic": "easy"}.get(args.difficulty, args.difficulty) if args.modality == "text" else None
        if args.modality != "text" and args.difficulty != "default":
            raise ValueError("--difficulty is for --modality video and text")
        for name, path in synthesize_modality(Path(args.out), args.modality, args.items, args.seed,
                                              text_level=level).items():
            print(f"{name}: {path}")
        return 0
    if args.videos is None:
        raise ValueError("--modality video: say how many videos with --videos N")
    formats = ("harness",) if args.format == "harness" else ("harness", "videomme")
    summary = synthesize(
        Path(args.out), args.videos, seed=args.seed, minutes=parse_minutes(args.minutes),
        fps=args.fps, size=parse_size(args.size), formats=formats, difficulty=args.difficulty,
        teacher=tuple(parse_confusion(t) for t in args.teacher_confusion),
    )
    print(summary)
    return 0


def _data_split(args: argparse.Namespace) -> int:
    from harness.data.split import split_release

    print(split_release(Path(args.input), Path(args.out), sft_share=args.sft_share, seed=args.seed))
    return 0


def _data_build(args: argparse.Namespace) -> int:
    from harness.data.build.options import run_build

    return run_build(args)


def _eval(args: argparse.Namespace) -> int:
    from evals.cli import run

    return run(args)


def _report(args: argparse.Namespace) -> int:
    from harness.report import run

    return run(args.baseline, args.current, strict=args.strict, out=args.out,
               write_baseline_to=args.write_baseline)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="harness", description=__doc__.split("\n\n")[0])
    parser.add_argument("--debug", action="store_true",
                        help="show the traceback of an error (also HARNESS_DEBUG=1)")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("doctor", help="report the environment and what to fix")
    p.set_defaults(func=_doctor)

    p = sub.add_parser("demo", help="run the end-to-end toy demo on CPU")
    p.add_argument("--out", help="output folder (default runs/demo, runs/demo-<modality> for the other media)")
    p.add_argument("--modality", choices=["video", "text", "image", "audio", "video+audio", "gen-image", "gen-video"],
                   default="video", help="video: the MR-SP demo; text/image/audio/video+audio: SFT then RL on that "
                                         "medium's toy tasks; gen-image/gen-video: Flow-GRPO on a toy generator")
    p.add_argument("--fresh", action="store_true", help="rebuild everything instead of reusing")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true", help="seconds-scale settings (the test suite's); nothing learns")
    p.add_argument("--procs", type=int, choices=[1, 2], help="RL processes (default 2: MR-SP with sp_size=2)")
    p.add_argument("--engine", choices=["vllm", "hf", "auto"],
                   help="RL rollout engine (default vllm for video, auto for the other media)")
    p.add_argument("--family", help="model family for the other media (default: qwen2 for text, qwen2_5_vl for "
                                    "image, qwen2_5_omni for audio and video+audio; vila also takes images)")
    p.set_defaults(func=_demo)

    for name, func, what in (("sft", _sft, "chain-of-thought SFT"), ("rl", _rl, "RL (GRPO family)"),
                             ("gen-rl", _gen_rl, "RL of image / video generators (Flow-GRPO)")):
        p = sub.add_parser(name, help=f"{what} from a YAML config")
        p.add_argument("--config", help="YAML file (configs/...); defaults when omitted")
        p.add_argument("--resume", action="store_true", help="continue from the latest checkpoint in run.out_dir")
        p.add_argument("overrides", nargs="*", help="key.sub=value overrides, e.g. optim.lr=1e-5")
        p.set_defaults(func=func)

    from harness.model.configs import FAMILIES, OMNI_SIZES, SIZES

    sizes = [*SIZES, *(s for s in OMNI_SIZES if s not in SIZES)]  # which size a family has: checked on use
    model = sub.add_parser("model", help="build or inspect models").add_subparsers(dest="action", required=True)
    p = model.add_parser("init", help="random weights + local tokenizer, saved as a checkpoint")
    p.add_argument("--family", choices=FAMILIES, required=True)
    p.add_argument("--size", choices=sizes, default="tiny")
    p.add_argument("--out", required=True)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_model_init)
    p = model.add_parser("info", help="parameter counts of a checkpoint or a named size")
    p.add_argument("path", nargs="?", help="checkpoint folder (or give --family/--size)")
    p.add_argument("--family", choices=FAMILIES, default="vila")
    p.add_argument("--size", choices=sizes, default="tiny")
    p.set_defaults(func=_model_info)

    data = sub.add_parser("data", help="datasets").add_subparsers(dest="action", required=True)
    p = data.add_parser("synth", help="write synthetic reasoning tasks as real media files (mp4, PNG, WAV)")
    p.add_argument("--out", required=True)
    p.add_argument("--modality", choices=["video", "text", "image", "audio", "video+audio", "gen-image", "gen-video"],
                   default="video",
                   help="video: long-video reasoning; text: arithmetic word problems; image: single images "
                        "and pairs; audio: beeps, pitch order, onsets; video+audio: what was on screen when the "
                        "tone sounded (all with sft/rl/test splits); gen-image / gen-video: prompts for "
                        "generation RL (train/test, held-out combinations)")
    p.add_argument("--videos", type=int, help="videos to write (--modality video; several questions each)")
    p.add_argument("--items", type=int, help="questions to write over the splits (the other modalities)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--minutes", default="0.5-1", help="video length range in minutes, A-B")
    p.add_argument("--fps", type=float, default=4.0)
    p.add_argument("--size", default="64x64", help="frame size WxH")
    p.add_argument("--format", choices=["harness", "videomme"], default="harness",
                   help="videomme also writes the test split in the official Video-MME layout")
    p.add_argument("--difficulty", choices=["default", "easy", "basic", "medium", "hard"], default="default",
                   help="video: easy: 2x2 grid, 3 objects, ~12 events, reasoning by order; basic: one object, "
                        "answered with a word (toy models trained from scratch on CPU). text: easy (=basic): one "
                        "operation on numbers <= 10; medium: 1-2 on <= 20; hard: 2-3 on <= 50; default 1-3 on <= 10")
    p.add_argument("--teacher-confusion", action="append", default=[], metavar="TRUE=SAID:RATE",
                   help="basic level: the SFT split's reasoning comes from an imperfect teacher that names "
                        "colour TRUE as SAID in a fraction RATE of its TRUE-coloured videos (repeatable; RL and test keep "
                        "the truth), e.g. yellow=green:0.65")
    p.set_defaults(func=_data_synth)
    p = data.add_parser("split", help="split a one-file release into sft.jsonl (1/3) and rl.jsonl (2/3) by video")
    p.add_argument("--input", required=True, help="records file, e.g. the released LongVideo-Reason train.jsonl")
    p.add_argument("--out", required=True, help="folder for sft.jsonl and rl.jsonl")
    p.add_argument("--sft-share", type=float, default=1 / 3, help="share of records for CoT-SFT (default 1/3)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_data_split)
    p = data.add_parser("build", help="build a LongVideo-Reason style dataset from your videos")
    from harness.data.build.options import add_build_arguments  # light: argparse only

    add_build_arguments(p)
    p.set_defaults(func=_data_build)

    p = sub.add_parser("eval", help="benchmark adapters (VideoMME, ...): scores + predictions")
    from evals.cli import add_arguments as add_eval_arguments  # light: argparse only

    add_eval_arguments(p)
    p.set_defaults(func=_eval)

    p = sub.add_parser("report", help="perf figures against a baseline; exit 1 on a regression")
    p.add_argument("--baseline", help="baseline JSON, or a folder holding <machine_kind>.json")
    p.add_argument("--current", nargs="+", required=True, help="perf results JSON(s) of this run")
    p.add_argument("--strict", action="store_true", help="a baseline figure not measured now also fails")
    p.add_argument("--out", help="also write the Markdown table here")
    p.add_argument("--write-baseline", metavar="FILE", help="record the current figures as a baseline")
    p.set_defaults(func=_report)
    return parser


# OS errors a user can fix (a full disk, a file in the way, no permission): one line too.
_USER_OS_ERRORS = {errno.ENOSPC, errno.EACCES, errno.EPERM, errno.EEXIST, errno.ENOTDIR, errno.EISDIR,
                   errno.EROFS, errno.ENOENT, errno.EDQUOT}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    debug = args.debug or os.environ.get("HARNESS_DEBUG", "").strip().lower() in ("1", "true", "yes", "on")
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError, HarnessError, OSError) as err:
        # an OSError we raised ourselves has no errno; one from the system must be one a user can fix
        if debug or (isinstance(err, OSError) and err.errno is not None and err.errno not in _USER_OS_ERRORS):
            raise
        # Bad input or a purposeful stop: say what is wrong and what to do, without a traceback.
        head, _, rest = _one_line(err).partition("\n")
        print(f"harness {args.command}: error: {head} (--debug shows the traceback)"
              + (f"\n{rest}" if rest else ""), file=sys.stderr)
        return 2


def _one_line(err: BaseException) -> str:
    text = str(err) or type(err).__name__
    if isinstance(err, OSError) and err.filename and str(err.filename) not in text:
        text = f"{text}: {err.filename}"
    return text


if __name__ == "__main__":
    sys.exit(main())
