"""What the on-disk embedding cache (`train.embed_cache_dir`) saves per epoch: RL on the
`perf` vila model over synthetic videos for two epochs, without the cache, and with a cold
cache (first epoch decodes, encodes and stores; the second reads). Per epoch: seconds of the
data block (drawing prompts: decoding their videos) + the encode block (embeddings: encoded,
or read from disk), and of the whole steps.

    python -m perf.embed_cache --frames 128 256 [--videos 4 --minutes 2]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path


def _epochs(rows: list[dict], steps_per_epoch: int) -> list[dict]:
    out = []
    for e in range(len(rows) // steps_per_epoch):
        part = rows[e * steps_per_epoch : (e + 1) * steps_per_epoch]
        out.append({"video_s": sum(r["time/data"] + r["time/encode"] for r in part),
                     "step_s": sum(v for r in part for k, v in r.items() if k.startswith("time/")),
                     "encoder_calls": sum(r["media/encoder_calls"] for r in part),
                     "disk_hits": sum(r["video/disk_hits"] for r in part)})
    return out


def run(frames: int, videos: int, minutes: float, work: Path) -> dict:
    from harness.config import RLConfig, load_config
    from harness.data.synthetic import synthesize
    from harness.model.build import init_model
    from harness.trainer.metrics import read_metrics
    from harness.trainer.rl import train_rl

    data = work / "data"
    if not (data / "rl.jsonl").exists():
        synthesize(data, videos, seed=0, minutes=(minutes, minutes), split_fractions=(0.0, 1.0, 0.0), progress=False)
    records = sum(1 for _ in (data / "rl.jsonl").open())
    model = work / "model"
    if not (model / "config.json").exists():
        init_model("vila", "perf", seed=0).save_pretrained(model)
    per_step = 4
    steps_per_epoch = records // per_step
    result = {"frames": frames, "videos": videos, "records": records, "steps_per_epoch": steps_per_epoch}
    for name, cache in (("no cache", None), ("disk cache", work / f"cache-{frames}")):
        out = work / f"run-{frames}-{name.replace(' ', '-')}"
        overrides = [f"model.path={model}", "model.family=vila", f"data.dir={data}", "data.eval=null",
                     f"data.num_frames={frames}", f"run.out_dir={out}", f"run.steps={2 * steps_per_epoch}",
                     f"run.save_every={2 * steps_per_epoch}", "run.tensorboard=false", "run.progress=false",
                     "rollout.engine=hf", "rollout.n=2", "rollout.max_new_tokens=8",
                     f"train.prompts_per_step={per_step}", "train.micro_batch=8", "algo.kl_coef=0",
                     f"train.embed_cache_dir={'null' if cache is None else cache}"]
        train_rl(load_config("configs/rl/toy-cpu.yaml", overrides, RLConfig))
        rows = [r for r in read_metrics(out / "metrics.jsonl") if "reward/mean" in r]
        result[name] = _epochs(rows, steps_per_epoch)
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m perf.embed_cache", description=__doc__.split("\n\n")[0])
    p.add_argument("--frames", type=int, nargs="+", default=[128, 256])
    p.add_argument("--videos", type=int, default=4)
    p.add_argument("--minutes", type=float, default=2.0)
    p.add_argument("--json", help="also write the results here")
    args = p.parse_args(argv)
    results = []
    print("| frames | epoch | video s, no cache | video s, disk cache | step s, no cache | step s, disk cache "
          "| encodes / disk reads (cache) |")
    print("|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory(prefix="perf-embed-cache-") as tmp:
        for frames in args.frames:
            r = run(frames, args.videos, args.minutes, Path(tmp))
            results.append(r)
            for e, (a, b) in enumerate(zip(r["no cache"], r["disk cache"], strict=True), start=1):
                print(f"| {frames} | {e} | {a['video_s']:.2f} | {b['video_s']:.2f} | {a['step_s']:.2f} | "
                      f"{b['step_s']:.2f} | {b['encoder_calls']:.0f} / {b['disk_hits']:.0f} |", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
