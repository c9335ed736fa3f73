"""`harness demo --modality text|image|audio|video+audio`: the toy pipeline on one medium
besides video, in stages under `--out` (each reused when its output exists; `--fresh`
starts over):

  1. synthesise the medium's tasks (harness/data/synthetic/modalities.py) as sft / rl /
     test splits of real files,
  2. build the medium's toy model (random weights, local tokenizer): text -> qwen2,
     image -> qwen2_5_vl, audio and video+audio -> qwen2_5_omni,
  3. CoT-SFT from it, 4. RL (GRPO) from the SFT model (rollouts on vLLM where it runs the
     family here, else HF, as `rollout.engine=auto` decides and logs),
  5. held-out accuracy of untrained / SFT / RL (the recipes' greedy check),
  6. report.md: the accuracy table and the RL reward curve.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import harness
from harness.config import RLConfig, SFTConfig, load_config
from harness.model.build import init_model, load_model
from harness.stages import Stage, open_out, run_stages

CONFIGS = Path(harness.__file__).resolve().parent.parent / "configs"
MEDIA_FAMILIES = {"text": "qwen2", "image": "qwen2_5_vl", "audio": "qwen2_5_omni", "video+audio": "qwen2_5_omni"}
MODELS = ("untrained", "sft", "rl")


@dataclass(frozen=True)
class MediaDemoSettings:
    items: int = 1200  # questions over the splits: sft 1/3, rl 1/2, test 1/6
    heldout: int = 100  # of the test split
    sft_steps: int = 300
    sft_batch: int = 16
    sft_lr: float = 1e-3
    rl_steps: int = 40
    rl_prompts: int = 8
    rl_n: int = 8
    max_new_tokens: int = 48  # at least: raised to the longest SFT target (+8) of the medium's data
    frames: int = 8  # video+audio: frames per video
    engine: str = "auto"
    # text: one operation on numbers up to 10, what the toy model learns from scratch in
    # minutes (1-3 operations: 0.11 after 400 SFT steps; easy: 0.52; reproduce/LOG.md)
    text_level: str = "easy"


FULL = MediaDemoSettings()
QUICK = MediaDemoSettings(items=24, heldout=4, sft_steps=2, sft_batch=4, rl_steps=2, rl_prompts=2, rl_n=2,
                          max_new_tokens=8, frames=4, engine="hf")


def run_media_demo(out: Path, modality: str, settings: MediaDemoSettings = FULL, *, fresh: bool = False,
                   seed: int = 0, size: str = "toy", family: str | None = None) -> dict:
    """`family`: the model family (default MEDIA_FAMILIES[modality]); it must take the medium."""
    from harness.model.build import family_media_kinds

    if modality not in MEDIA_FAMILIES:
        raise ValueError(f"unknown modality {modality!r}; choose one of video, {', '.join(MEDIA_FAMILIES)}")
    family = family or MEDIA_FAMILIES[modality]
    if not set(modality.split("+")) - {"text"} <= set(family_media_kinds(family)):
        raise ValueError(f"--family {family} takes {', '.join(family_media_kinds(family)) or 'text only'}, "
                         f"not {modality}")
    start, out, s = time.perf_counter(), Path(out), settings
    open_out(out, {**asdict(s), "modality": modality, "seed": seed, "size": size, "family": family}, fresh=fresh,
             kind="demo")
    data = out / "data"
    models = {"untrained": out / "model", "sft": out / "sft" / "final", "rl": out / "rl" / "final"}
    results = out / "eval.json"
    stages = run_stages(out, [
        Stage("data", f"synthesise {s.items} {modality} questions", lambda: (data / "heldout.jsonl").exists(),
              lambda: _data(data, modality, s, seed)),
        Stage("model", f"build the {size} {family} model -> {models['untrained']}",
              lambda: (models["untrained"] / "config.json").exists(),
              lambda: _model(models["untrained"], family, size, seed)),
        Stage("sft", f"CoT-SFT: {s.sft_steps} steps of batch {s.sft_batch}", lambda: (models["sft"] / "config.json").exists(),
              lambda: _sft(out, models, family, data, s, seed)),
        Stage("rl", f"RL (GRPO): {s.rl_steps} steps of {s.rl_prompts} prompts x {s.rl_n}",
              lambda: (models["rl"] / "config.json").exists(), lambda: _rl(out, models, family, data, s, seed)),
        Stage("eval", f"held-out accuracy of {', '.join(MODELS)} ({s.heldout} questions)", results.exists,
              lambda: _evaluate(models, data, results, s)),
    ])
    tokens = _response_budget(data, models["untrained"], s)
    summary = {"modality": modality, "max_new_tokens": tokens, "family": family, "settings": asdict(s), "seed": seed, "stages": stages,
               "accuracy": json.loads(results.read_text()), "wall_seconds": round(time.perf_counter() - start, 1)}
    _report(out, summary)
    (out / "demo.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(f"\ndemo finished in {summary['wall_seconds']:.0f} s; see {out / 'report.md'}")
    return summary


def _data(data: Path, modality: str, s: MediaDemoSettings, seed: int) -> str:
    from harness.data.records import read_jsonl, write_jsonl
    from harness.data.synthetic.modalities import synthesize_modality

    shutil.rmtree(data, ignore_errors=True)  # a half-built set from an interrupted run
    synthesize_modality(data, modality, s.items, seed, text_level=s.text_level if modality == "text" else None)
    held = list(read_jsonl(data / "test.jsonl"))[: s.heldout]
    write_jsonl(data / "heldout.jsonl", held)
    return f"{len(held)} held-out questions -> {data / 'heldout.jsonl'}"


def _model(path: Path, family: str, size: str, seed: int) -> str:
    model = init_model(family, size, seed=seed)
    model.save_pretrained(path)
    return f"{sum(p.numel() for p in model.parameters()):,} parameters"


def _sft(out: Path, models: dict[str, Path], family: str, data: Path, s: MediaDemoSettings, seed: int) -> str:
    from harness.trainer.sft import train_sft

    shutil.rmtree(out / "sft", ignore_errors=True)
    train_sft(load_config(CONFIGS / "sft" / "toy-text.yaml", _overrides({
        "model.family": family, "model.path": models["untrained"], "data.dir": data, "data.eval": None,
        "data.num_frames": s.frames, "optim.lr": s.sft_lr, "optim.warmup_steps": min(20, s.sft_steps),
        "train.batch_size": s.sft_batch, "train.freeze_vision": False, "train.freeze_projector": False,
        "run.out_dir": out / "sft", "run.steps": s.sft_steps, "run.save_every": s.sft_steps, "run.eval_every": 0,
        "run.seed": seed,
    }), SFTConfig))
    return f"metrics: {out / 'sft' / 'metrics.jsonl'}"


def _rl(out: Path, models: dict[str, Path], family: str, data: Path, s: MediaDemoSettings, seed: int) -> str:
    from harness.trainer.rl import train_rl

    shutil.rmtree(out / "rl", ignore_errors=True)
    train_rl(load_config(CONFIGS / "rl" / "toy-text.yaml", _overrides({
        "model.family": family, "model.path": models["sft"], "data.dir": data, "data.eval": None,
        "data.num_frames": s.frames, "rollout.engine": s.engine, "rollout.n": s.rl_n,
        "rollout.max_new_tokens": _response_budget(data, models["untrained"], s),
        "train.prompts_per_step": s.rl_prompts,
        "run.out_dir": out / "rl", "run.steps": s.rl_steps, "run.save_every": s.rl_steps, "run.eval_every": 0,
        "run.seed": seed,
    }), RLConfig))
    return f"metrics: {out / 'rl' / 'metrics.jsonl'}"


def _evaluate(models: dict[str, Path], data: Path, results: Path, s: MediaDemoSettings) -> str:
    from harness.data.dataset import QADataset, SkipLedger
    from harness.model.build import family_media_kinds
    from harness.trainer.evaluate import evaluate_accuracy

    scores = {}
    for name in MODELS:
        model = load_model(models[name]).eval()
        held = QADataset(data / "heldout.jsonl", s.frames, SkipLedger(0.1), media_kinds=family_media_kinds(model.family))
        r = evaluate_accuracy(model, held, _response_budget(data, models["untrained"], s), batch_prompts=16)
        scores[name] = {"accuracy": r["eval/accuracy"], "format_rate": r["eval/format_rate"],
                        "questions": int(r["eval/questions"])}
        print(f"    {name}: held-out accuracy {r['eval/accuracy']:.3f} ({int(r['eval/questions'])} questions)")
    results.write_text(json.dumps(scores, indent=2) + "\n")
    return f"results: {results}"


def _response_budget(data: Path, model_dir: Path, s: MediaDemoSettings) -> int:
    """Tokens a response may take: the settings' budget, or more when the medium's SFT
    targets are longer (the audio tasks' reasoning is), so a trained answer is not cut."""
    from transformers import AutoTokenizer

    from harness.data.dataset import sft_target
    from harness.data.records import read_jsonl

    folder = model_dir / "llm" if (model_dir / "llm").is_dir() else model_dir  # vila keeps it beside its LLM
    tokenizer = AutoTokenizer.from_pretrained(folder)
    longest = max(len(tokenizer(sft_target(r), add_special_tokens=False)["input_ids"])
                  for r in read_jsonl(data / "sft.jsonl"))
    return max(s.max_new_tokens, longest + 8)


def _report(out: Path, summary: dict) -> None:
    """report.md: the accuracy table and, when matplotlib draws, the RL reward curve."""
    from harness.trainer.metrics import read_metrics

    rows = [r for r in read_metrics(out / "rl" / "metrics.jsonl") if "reward/mean" in r]
    lines = [f"# Toy demo: {summary['modality']} ({summary['family']})", "",
             "| model | held-out accuracy | format rate | questions |", "|---|---|---|---|"]
    for name, r in summary["accuracy"].items():
        lines.append(f"| {name} | {r['accuracy']:.3f} | {r['format_rate']:.3f} | {r['questions']} |")
    if rows:
        from harness.demo.report import plot_reward_curve

        plot_reward_curve(rows, out / "reward.png", "RL step", "mean reward")
        lines += ["", "![RL reward](reward.png)"]
    lines += ["", f"Settings: `{json.dumps(summary['settings'])}`; seed {summary['seed']}; "
                  f"{summary['wall_seconds']:.0f} s."]
    (out / "report.md").write_text("\n".join(lines) + "\n")


def _overrides(values: dict) -> list[str]:
    return [f"{k}={'null' if v is None else v}" for k, v in values.items()]
