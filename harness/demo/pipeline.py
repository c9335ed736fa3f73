"""The demo's stages, in order. Each writes under `--out` and is skipped when its output
exists (a second run reuses everything; `--fresh` starts over):

  1. synthesise data: the "basic" level (one object on screen for a quarter of the video;
     what colour / shape / where, answered with the word: what a toy model trained from
     scratch learns) for SFT, RL and the held-out questions; and a few default-level videos
     in the Video-MME layout (multiple choice, subtitles), to run that protocol end to end,
  2. build the toy vila model (random weights, local tokenizer): the "untrained" row,
  3. CoT-SFT from it (configs/sft/toy-basic.yaml),
  4. RL from the SFT model with MR-SP on 2 processes (configs/rl/toy-basic.yaml with
     parallel.sp_size=2: stage-1 parallel encoding + cache, Ulysses SP, vLLM rollouts),
     then a few steps of the re-encoding baseline (train.cache_video_embeds=false),
  5. evaluate untrained / SFT / RL: held-out accuracy (the recipes' greedy check) and
     Video-MME with and without subtitles (evals/, the community's protocol),
  6. write report.md with the accuracy table, the reward curve and the step-time breakdown.

The Video-MME-layout questions are multiple choice on the harder default level, which toy
models do not learn: those accuracies sit at chance (25%) and the report says so.
"""

from __future__ import annotations

import copy
import json
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from tqdm import tqdm

import harness
from harness.config import RLConfig, SFTConfig, load_config
from harness.data.records import read_jsonl, write_jsonl
from harness.data.synthetic import parse_confusion, synthesize
from harness.demo.launch import run_rl
from harness.demo.report import write_report
from harness.model.build import init_model, load_model
from harness.stages import Stage, built_seconds, open_out, run_stages

CONFIGS = Path(harness.__file__).resolve().parent.parent / "configs"
MODELS = ("untrained", "sft", "rl")


@dataclass(frozen=True)
class DemoSettings:
    """The quick form of the toy reproduction's setting (reproduce/targets.yaml): the SFT
    split's chain of thought comes from an imperfect teacher that misnames two colours, RL's
    reward checks the truth, so RL has the teacher's mistakes to correct (reproduce/LOG.md)."""

    basic_videos: int = 3000  # sft 1/3, rl 1/2, test 1/6; 3 questions each
    teacher_confusion: tuple[str, ...] = ("yellow=green:0.65", "blue=red:0.65")  # TRUE=SAID:RATE
    mme_videos: int = 12  # default level, all in the Video-MME test split, 4 questions each
    heldout_questions: int = 150
    frames: int = 16
    sft_steps: int = 400  # batch 32 with a cosine lr: it keeps the teacher's colours apart
    sft_batch: int = 32
    rl_steps: int = 20
    rl_prompts: int = 16  # per step (over all DP ranks' worth: dp=1 here)
    rl_n: int = 8
    rl_max_new_tokens: int = 48
    baseline_steps: int = 3  # the re-encoding baseline, for the step-time comparison
    eval_max_new_tokens: int = 48
    procs: int = 2  # RL processes: 2 = MR-SP with sp_size=2; 1 = single process
    engine: str = "vllm"  # RL rollout engine: vllm or hf


FULL = DemoSettings()
# Seconds, for the test suite: every stage runs, nothing is expected to learn.
QUICK = DemoSettings(basic_videos=24, mme_videos=1, heldout_questions=4, frames=8, sft_steps=2, sft_batch=4,
                     rl_steps=2, rl_prompts=2, rl_n=4, rl_max_new_tokens=8, baseline_steps=1,
                     eval_max_new_tokens=8)


def run_demo(out: Path, settings: DemoSettings = FULL, *, fresh: bool = False, seed: int = 0) -> dict:
    t_start = time.perf_counter()
    out, s = Path(out), settings
    open_out(out, {**asdict(s), "seed": seed}, fresh=fresh, kind="demo")
    basic, mme = out / "data" / "basic", out / "data" / "mme"
    models = {"untrained": out / "model", "sft": out / "sft" / "final", "rl": out / "rl" / "final"}
    results_of = {name: out / "eval" / f"{name}.json" for name in MODELS}
    layout = f"{s.procs} process{'es' if s.procs > 1 else ''}, sp_size={s.procs}, {s.engine} rollouts"
    stages = run_stages(out, [
        Stage("data", f"synthesise {s.basic_videos} basic-level videos and {s.mme_videos} in the Video-MME layout",
              lambda: (basic / "heldout.jsonl").exists() and (mme / "videomme").is_dir(),
              lambda: _data(out, basic, mme, s, seed)),
        Stage("model", f"build the toy vila model -> {models['untrained']}",
              lambda: (models["untrained"] / "config.json").exists(), lambda: _model(models["untrained"], seed)),
        Stage("sft", f"CoT-SFT: {s.sft_steps} steps of batch {s.sft_batch} -> {models['sft']}",
              lambda: (models["sft"] / "config.json").exists(), lambda: _sft(out, models, basic, s, seed)),
        Stage("rl", f"RL (GRPO) with MR-SP: {s.rl_steps} steps on {layout}; then {s.baseline_steps} step(s) of "
                    f"the re-encoding baseline",
              lambda: (models["rl"] / "config.json").exists() and (out / "rl-baseline" / "final").is_dir(),
              lambda: _rl(out, models, basic, s, seed)),
        Stage("eval", f"evaluate {', '.join(MODELS)}: {s.heldout_questions} held-out questions, Video-MME layout "
                      f"with and without subtitles",
              lambda: all(p.exists() for p in results_of.values()),
              lambda: _evaluate_all(models, basic / "heldout.jsonl", mme / "videomme", out / "eval", s)),
    ])
    results = {name: json.loads(path.read_text()) for name, path in results_of.items()}
    t0 = time.perf_counter()
    print(f"\n[{len(stages) + 1}] report -> {out / 'report.md'}", flush=True)
    summary = {"settings": asdict(s), "seed": seed, "results": results, "stages": {**stages, "report": 0.0},
               "built_seconds": {**built_seconds(out), "report": 0.0},
               "wall_seconds": round(time.perf_counter() - t_start, 1)}
    write_report(out, summary)
    summary["stages"]["report"] = summary["built_seconds"]["report"] = round(time.perf_counter() - t0, 1)
    summary["wall_seconds"] = round(time.perf_counter() - t_start, 1)
    (out / "demo.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(f"\ndemo finished in {summary['wall_seconds']:.0f} s (stages built: "
          f"{', '.join(k for k, v in stages.items() if v != 'reused') or 'none'}); see {out / 'report.md'}")
    return summary


# --- stages --------------------------------------------------------------------------------


def _data(out: Path, basic: Path, mme: Path, s: DemoSettings, seed: int) -> str:
    shutil.rmtree(out / "data", ignore_errors=True)  # a half-built set from an interrupted run
    teacher = tuple(parse_confusion(c) for c in s.teacher_confusion)
    print(synthesize(basic, s.basic_videos, seed=seed, difficulty="basic", teacher=teacher))
    print(synthesize(mme, s.mme_videos, seed=seed, formats=("harness", "videomme"), split_fractions=(0.0, 0.0, 1.0)))
    held = list(read_jsonl(basic / "test.jsonl"))[: s.heldout_questions]
    write_jsonl(basic / "heldout.jsonl", held)
    return f"held-out: {len(held)} questions -> {basic / 'heldout.jsonl'}"


def _model(path: Path, seed: int) -> str:
    model = init_model("vila", "toy", seed=seed)
    model.save_pretrained(path)
    return f"{sum(p.numel() for p in model.parameters()):,} parameters, vocabulary {len(model.tokenizer)}"


def _sft(out: Path, models: dict[str, Path], basic: Path, s: DemoSettings, seed: int) -> str:
    from harness.trainer.sft import train_sft

    shutil.rmtree(out / "sft", ignore_errors=True)
    train_sft(load_config(CONFIGS / "sft" / "toy-basic.yaml", _overrides({
        "model.path": models["untrained"], "data.dir": basic, "data.eval": None,
        "data.num_frames": s.frames, "train.batch_size": s.sft_batch, "optim.warmup_steps": min(20, s.sft_steps),
        "optim.schedule": "cosine", "optim.min_lr_ratio": 0.05,
        "run.out_dir": out / "sft", "run.steps": s.sft_steps, "run.save_every": s.sft_steps,
        "run.eval_every": 0, "run.seed": seed, "run.progress": True,
    }), SFTConfig))
    return f"metrics: {out / 'sft' / 'metrics.jsonl'}"


def _rl(out: Path, models: dict[str, Path], basic: Path, s: DemoSettings, seed: int) -> str:
    shutil.rmtree(out / "rl", ignore_errors=True)
    shutil.rmtree(out / "rl-baseline", ignore_errors=True)
    rl = load_config(CONFIGS / "rl" / "toy-basic.yaml", _overrides({
        "model.path": models["sft"], "data.dir": basic, "data.eval": None, "data.num_frames": s.frames,
        "parallel.sp_size": s.procs, "rollout.engine": s.engine, "rollout.n": s.rl_n,
        "rollout.max_new_tokens": s.rl_max_new_tokens, "rollout.vllm_kv_cache_gib": 0.5,
        "train.prompts_per_step": s.rl_prompts, "run.out_dir": out / "rl", "run.steps": s.rl_steps,
        "run.save_every": s.rl_steps, "run.eval_every": 0, "run.seed": seed, "run.progress": True,
    }), RLConfig)
    baseline = copy.deepcopy(rl)
    baseline.train.cache_video_embeds = False
    baseline.run.out_dir, baseline.run.steps = str(out / "rl-baseline"), s.baseline_steps
    baseline.run.save_every = s.baseline_steps
    run_rl([rl, baseline], s.procs)
    return f"metrics: {out / 'rl' / 'metrics.jsonl'}, {out / 'rl-baseline' / 'metrics.jsonl'}"


def _evaluate_all(models: dict[str, Path], heldout: Path, mme: Path, out: Path, s: DemoSettings) -> str:
    for name in MODELS:
        _evaluate(name, models[name], heldout, mme, out, s)
    return f"results: {out}"


# --- helpers -------------------------------------------------------------------------------


def _evaluate(name: str, model_dir: Path, heldout: Path, mme: Path, out: Path, s: DemoSettings) -> dict:
    """Held-out accuracy and Video-MME with/without subtitles of one checkpoint, each cached
    as a JSON under `out` (the Video-MME runner also resumes from its predictions file)."""
    from evals.model import HarnessVLM
    from evals.runner import EvalSettings, run_eval
    from evals.tasks import build_benchmark

    out.mkdir(parents=True, exist_ok=True)
    result_file = out / f"{name}.json"
    if result_file.exists():
        print(f"    {name}: reused {result_file}")
        return json.loads(result_file.read_text())
    model = load_model(model_dir).eval()
    res = {"heldout": _heldout_accuracy(model, heldout, s, desc=f"eval {name} held-out")}
    vlm = HarnessVLM(model, engine="hf", max_new_tokens=s.eval_max_new_tokens, batch_size=16)
    vlm.model_path = str(model_dir.resolve())
    bench = build_benchmark("videomme")
    for subs in (False, True):
        key = "videomme_sub" if subs else "videomme"
        r = run_eval(bench, vlm, mme, out / f"{name}-{key}.json",
                     EvalSettings(frames=s.frames, subtitles=subs, progress=True))
        res[key] = {"accuracy": r["scores"]["accuracy"], **{k: r["counts"][k] for k in ("questions", "unparsed")}}
    result_file.write_text(json.dumps(res, indent=2) + "\n")
    h = res["heldout"]
    print(f"    {name}: held-out {h['accuracy']:.3f} ({h['questions']} q), Video-MME "
          f"{res['videomme']['accuracy']:.3f} / with subtitles {res['videomme_sub']['accuracy']:.3f}")
    return res


def _heldout_accuracy(model, path: Path, s: DemoSettings, desc: str, chunk: int = 16) -> dict:
    """The recipes' greedy held-out check (harness.trainer.evaluate), in chunks for a
    progress bar; accuracy and format rate are question-weighted over the chunks."""
    from harness.data.dataset import QADataset, SkipLedger
    from harness.trainer.evaluate import evaluate_accuracy

    data = QADataset(path, s.frames, SkipLedger(0.1))
    n = acc = fmt = 0.0
    for lo in tqdm(range(0, len(data), chunk), desc=desc, unit="chunk"):
        part = copy.copy(data)
        part.records = data.records[lo : lo + chunk]
        r = evaluate_accuracy(model, part, s.eval_max_new_tokens, batch_prompts=chunk)
        q = r["eval/questions"]
        n, acc, fmt = n + q, acc + r["eval/accuracy"] * q, fmt + r["eval/format_rate"] * q
    return {"accuracy": acc / n, "format_rate": fmt / n, "questions": int(n)}


def _overrides(values: dict) -> list[str]:
    return [f"{k}={'null' if v is None else v}" for k, v in values.items()]


__all__ = ["FULL", "QUICK", "DemoSettings", "run_demo"]
