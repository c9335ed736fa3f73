"""`python -m reproduce toy`: the paper's claims at toy scale on CPU, each against a target.

Claims (targets and tolerances in reproduce/targets.yaml):
  (a) CoT-SFT + RL beats CoT-SFT alone, which beats the untrained model, on held-out
      synthetic questions (basic level: one object on screen for a quarter of the video);
  (b) accuracy grows with the number of input frames (the RL model, 2 -> 16 frames);
  (c) MR-SP is faster than the baseline at long inputs: the RL step with the video encoded
      once per prompt (cache) against re-encoding it for every pass (`cache_video_embeds:
      false`), from the step-time breakdown the two RL runs log. The memory half of the
      claim (SP fits more frames) needs 2 ranks and is measured by the perf suites.

Stages run in order and are reused when their output exists (a rerun after an interruption
picks up where it stopped; `--fresh` starts over): data -> SFT -> RL -> baseline RL steps
-> evaluations -> `report.md` + `results.json` under --out.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from harness.config import RLConfig, SFTConfig, load_config

ROOT = Path(__file__).resolve().parent.parent
TARGETS = Path(__file__).with_name("targets.yaml")
SFT_CONFIG = ROOT / "configs/sft/toy-basic.yaml"
RL_CONFIG = ROOT / "configs/rl/toy-basic.yaml"


def _stage(title: str) -> float:
    print(f"\n== {title}", flush=True)
    return time.perf_counter()


def _data(out: Path, videos: int, eval_questions: int) -> Path:
    from harness.data.synthetic import synthesize

    data = out / "data"
    if not (data / "test.jsonl").exists():
        synthesize(data, videos, seed=0, difficulty="basic", minutes=(0.5, 1.0), progress=True)
    held_out = data / f"test{eval_questions}.jsonl"
    if not held_out.exists():
        lines = (data / "test.jsonl").read_text().splitlines()[:eval_questions]
        held_out.write_text("\n".join(lines) + "\n")
    return data


SAMPLES, TEMPERATURE = 8, 1.0  # sampled accuracy: RL's rollouts per prompt and temperature


def _accuracy(model_dir: Path | None, data: Path, split: str, frames: int, samples: int = 0,
              seed: int = 0) -> dict[str, float]:
    from harness.data.dataset import SkipLedger, VideoQADataset
    from harness.model.build import init_model, load_model
    from harness.trainer.evaluate import evaluate_accuracy

    model = load_model(model_dir) if model_dir else init_model("vila", "toy", seed=seed)
    dataset = VideoQADataset(data / split, frames, SkipLedger(0.1))
    return evaluate_accuracy(model.eval(), dataset, max_new_tokens=48, samples=samples, temperature=TEMPERATURE)


def _step_seconds(run_dir: Path) -> dict[str, float]:
    """Mean seconds per RL step ("time/step": the sum of the top-level blocks) and per block
    over the logged steps, the first dropped (warm-up)."""
    from harness.trainer.metrics import read_metrics

    steps = {r["step"]: r for r in read_metrics(run_dir / "metrics.jsonl") if "reward/mean" in r}
    rows = list(steps.values())[1:]  # by step: a resumed run's rewritten steps count once
    if not rows:
        raise ValueError(f"{run_dir}/metrics.jsonl has fewer than 2 RL steps to time")
    keys = sorted({k for r in rows for k in r if k.startswith("time/") and k.count("/") == 1})
    mean = {k: sum(r.get(k, 0.0) for r in rows) / len(rows) for k in keys}
    mean["time/step"] = sum(mean.values())
    return mean


def run(out: Path, *, fresh: bool, videos: int, sft_steps: int, rl_steps: int, baseline_steps: int,
        eval_questions: int) -> dict[str, Any]:
    from harness.trainer.rl import train_rl
    from harness.trainer.sft import train_sft

    if fresh and out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    split = f"test{eval_questions}.jsonl"

    t0 = _stage(f"data: {videos} basic-level videos")
    data = _data(out, videos, eval_questions)
    print(f"   {time.perf_counter() - t0:.0f} s")

    sft_dir, rl_dir, base_dir = out / "sft", out / "rl", out / "rl-baseline"
    common = [f"data.dir={data}", f"data.eval={split}", "run.progress=true", "run.eval_every=0"]
    t0 = _stage(f"CoT-SFT, {sft_steps} steps")
    if not (sft_dir / "final").exists():
        cfg = load_config(SFT_CONFIG, [*common, f"run.out_dir={sft_dir}", f"run.steps={sft_steps}"], SFTConfig)
        train_sft(cfg, resume=(sft_dir / "checkpoints").exists())
    print(f"   {time.perf_counter() - t0:.0f} s")

    t0 = _stage(f"RL (GRPO, cached video embeddings), {rl_steps} steps")
    rl_overrides = [*common, f"model.path={sft_dir / 'final'}", "rollout.engine=hf"]
    if not (rl_dir / "final").exists():
        cfg = load_config(RL_CONFIG, [*rl_overrides, f"run.out_dir={rl_dir}", f"run.steps={rl_steps}"], RLConfig)
        train_rl(cfg, resume=(rl_dir / "checkpoints").exists())
    print(f"   {time.perf_counter() - t0:.0f} s")

    t0 = _stage(f"RL baseline (video re-encoded every pass), {baseline_steps} steps")
    if not (base_dir / "final").exists():
        cfg = load_config(RL_CONFIG, [*rl_overrides, f"run.out_dir={base_dir}", f"run.steps={baseline_steps}",
                                      "train.cache_video_embeds=false", "data.eval=null"], RLConfig)
        train_rl(cfg, resume=(base_dir / "checkpoints").exists())
    print(f"   {time.perf_counter() - t0:.0f} s")

    t0 = _stage(f"evaluate on {eval_questions} held-out questions")
    acc = {
        "untrained": _accuracy(None, data, split, 16, SAMPLES),
        "sft": _accuracy(sft_dir / "final", data, split, 16, SAMPLES),
        "rl": _accuracy(rl_dir / "final", data, split, 16, SAMPLES),
    }
    frames = {n: _accuracy(rl_dir / "final", data, split, n)["eval/accuracy"] for n in (2, 4, 8)}
    frames[16] = acc["rl"]["eval/accuracy"]  # greedy, so the same as evaluating 16 frames again
    print(f"   {time.perf_counter() - t0:.0f} s")

    cached, baseline = _step_seconds(rl_dir), _step_seconds(base_dir)
    results = {
        "accuracy": {k: v["eval/accuracy"] for k, v in acc.items()},
        "format_rate": {k: v["eval/format_rate"] for k, v in acc.items()},
        # Not a claim: the policy's sampled answers (what RL optimises), beside the greedy ones.
        "sampled_accuracy": {k: v["eval/sampled_accuracy"] for k, v in acc.items()},
        "accuracy_by_frames": frames,
        "step_seconds": {"mrsp_cache": cached, "baseline": baseline},
        "wall_seconds": time.perf_counter() - t_start,
        "settings": {"videos": videos, "sft_steps": sft_steps, "rl_steps": rl_steps,
                     "baseline_steps": baseline_steps, "eval_questions": eval_questions},
    }
    return results


def verdicts(results: dict[str, Any], targets: dict[str, Any]) -> list[tuple[str, str, str, bool]]:
    """(claim, measured, target, pass) rows."""
    acc, frames = results["accuracy"], results["accuracy_by_frames"]
    t = targets
    margin_sft, margin_rl = t["sft_over_untrained"], t["rl_over_sft"]
    speed = results["step_seconds"]["baseline"]["time/step"] / results["step_seconds"]["mrsp_cache"]["time/step"]
    return [
        ("(a) SFT > untrained", f"{acc['sft']:.3f} vs {acc['untrained']:.3f}", f"+{margin_sft:.2f}",
         acc["sft"] >= acc["untrained"] + margin_sft),
        ("(a) RL > SFT", f"{acc['rl']:.3f} vs {acc['sft']:.3f}", f"+{margin_rl:.2f}",
         acc["rl"] >= acc["sft"] + margin_rl),
        ("(b) accuracy grows with frames", " / ".join(f"{n}f {a:.2f}" for n, a in frames.items()),
         f"16f - 2f >= {t['frames_gain']:.2f}, no drop > {t['frames_dip']:.2f} from one count to the next",
         frames[16] - frames[2] >= t["frames_gain"] and _rises(list(frames.values()), t["frames_dip"])),
        ("(c) MR-SP cache faster than baseline", f"{speed:.2f}x", f">= {t['cache_speedup']:.2f}x",
         speed >= t["cache_speedup"]),
    ]


def _rises(values: list[float], dip: float) -> bool:
    """True when no value falls more than `dip` below the one before (sampling noise)."""
    return all(b >= a - dip for a, b in zip(values[:-1], values[1:], strict=True))


def report(results: dict[str, Any], rows: list[tuple[str, str, str, bool]]) -> str:
    lines = ["# Toy reproduction (basic level, toy vila, CPU)", "",
             "| claim | measured | target | verdict |", "|---|---|---|---|"]
    lines += [f"| {c} | {m} | {t} | {'PASS' if ok else 'FAIL'} |" for c, m, t, ok in rows]
    sampled = results.get("sampled_accuracy")
    if sampled:
        lines += ["", f"Not a claim: accuracy of sampled answers ({SAMPLES} per question, temperature "
                  f"{TEMPERATURE:g}): " + " / ".join(f"{k} {v:.3f}" for k, v in sampled.items()) + "."]
    lines += ["", f"Wall time {results['wall_seconds'] / 60:.1f} min; settings {results['settings']}.", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m reproduce toy", description=__doc__.splitlines()[0])
    targets = yaml.safe_load(TARGETS.read_text())["toy"]
    p.add_argument("--out", type=Path, default=Path("runs/reproduce-toy"))
    p.add_argument("--fresh", action="store_true", help="start over instead of reusing finished stages")
    p.add_argument("--videos", type=int, default=targets["videos"])
    p.add_argument("--sft-steps", type=int, default=targets["sft_steps"])
    p.add_argument("--rl-steps", type=int, default=targets["rl_steps"])
    p.add_argument("--baseline-steps", type=int, default=targets["baseline_steps"])
    p.add_argument("--eval-questions", type=int, default=targets["eval_questions"])
    args = p.parse_args(argv)
    results = run(args.out, fresh=args.fresh, videos=args.videos, sft_steps=args.sft_steps,
                  rl_steps=args.rl_steps, baseline_steps=args.baseline_steps,
                  eval_questions=args.eval_questions)
    rows = verdicts(results, targets)
    text = report(results, rows)
    (args.out / "results.json").write_text(json.dumps(results, indent=1))
    (args.out / "report.md").write_text(text)
    print("\n" + text)
    return 0 if all(ok for *_, ok in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
