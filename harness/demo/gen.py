"""`harness demo --modality gen-image|gen-video`: Flow-GRPO on the toy generators, in
stages under `--out` (each reused when its output exists; `--fresh` starts over):

  1. toy prompts (harness/gen/data.py): GenEval-style image prompts or video prompts, with
     held-out combinations,
  2. gen-rl (configs/gen/toy-image.yaml or toy-video.yaml; `--quick`: a tiny model and a
     few steps): the toy model is built (its VAE fit, its transformer pretrained on the toy
     world), held-out prompts scored before training, Flow-GRPO steps, scored again after,
  3. report.md: the held-out reward before / after, the reward curve, and the sample grids
     before and after (video: frame strips; GIFs beside them).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import harness
from harness.gen.config import GenRLConfig
from harness.stages import Stage, open_out, run_stages

CONFIGS = Path(harness.__file__).resolve().parent.parent / "configs" / "gen"
GEN_MODALITIES = {"gen-image": "toy-image.yaml", "gen-video": "toy-video.yaml"}


@dataclass(frozen=True)
class GenDemoSettings:
    items: int | None = None  # prompts (None: the config's)
    steps: int | None = None  # RL steps (None: the config's)
    size: str = "toy"
    overrides: tuple[str, ...] = ()  # more key=value settings of the recipe


FULL = GenDemoSettings()
QUICK = GenDemoSettings(items=20, steps=2, size="tiny", overrides=(
    "algo.group_size=2", "train.prompts_per_step=2", "sample.num_steps=3", "sample.eval_num_steps=3",
    "run.sample_grid=2", "run.eval_every=0"))


def run_gen_demo(out: Path, modality: str, settings: GenDemoSettings = FULL, *, fresh: bool = False,
                 seed: int = 0) -> dict:
    from harness.config import load_config
    from harness.gen.data import synthesize_gen
    from harness.gen.train import train_gen_rl

    if modality not in GEN_MODALITIES:
        raise ValueError(f"unknown generation modality {modality!r}; choose one of {', '.join(GEN_MODALITIES)}")
    start, out, s = time.perf_counter(), Path(out), settings
    open_out(out, {**asdict(s), "modality": modality, "seed": seed}, fresh=fresh, kind="demo")
    config = CONFIGS / GEN_MODALITIES[modality]
    data, run = out / "data", out / "rl"
    values = {"data.dir": data, "run.out_dir": run, "run.seed": seed, "model.seed": seed, "model.size": s.size,
              "data.synth_items": 0, "run.tensorboard": False}
    if s.steps is not None:
        values["run.steps"] = s.steps
    cfg = load_config(config, [*(f"{k}={v}" for k, v in values.items()), *s.overrides], GenRLConfig)
    items = s.items or load_config(config, [], GenRLConfig).data.synth_items
    stages = run_stages(out, [
        Stage("data", f"synthesise {items} {modality} prompts", lambda: (data / "test.jsonl").exists(),
              lambda: str(synthesize_gen(data, modality, items, seed))),
        Stage("rl", f"Flow-GRPO: {cfg.run.steps} steps of {cfg.train.prompts_per_step} prompts x "
                    f"{cfg.algo.group_size} ({cfg.model.size} {cfg.model.kind})",
              lambda: (run / "eval.json").exists(), lambda: str(train_gen_rl(cfg))),
    ])
    result = json.loads((run / "eval.json").read_text())
    summary = {"modality": modality, "kind": cfg.model.kind, "settings": asdict(s), "seed": seed, "stages": stages,
               "held_out_reward": result, "wall_seconds": round(time.perf_counter() - start, 1)}
    _report(out, summary, cfg)
    (out / "demo.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(f"\ndemo finished in {summary['wall_seconds']:.0f} s; see {out / 'report.md'}")
    return summary


def _report(out: Path, summary: dict, cfg: GenRLConfig) -> None:
    from harness.trainer.metrics import read_metrics

    r = summary["held_out_reward"]
    rows = [x for x in read_metrics(out / "rl" / "metrics.jsonl") if "reward/mean" in x]
    lines = [f"# Toy demo: {summary['modality']} ({summary['kind']}, reward {cfg.reward.name})", "",
             "| model | held-out reward (ODE, one sample per prompt) | prompts |", "|---|---|---|",
             f"| untrained | {r['before']:.3f} | {r['prompts']} |",
             f"| after {r['steps']} Flow-GRPO steps | {r['after']:.3f} | {r['prompts']} |"]
    if rows:
        from harness.demo.report import plot_reward_curve

        plot_reward_curve(rows, out / "reward.png", "Flow-GRPO step", "mean reward (SDE samples)")
        lines += ["", "![reward](reward.png)"]
    for when in ("before", "after"):
        if (out / "rl" / "samples" / f"{when}.png").exists():
            lines += ["", f"Held-out samples {when} training (prompts in rl/samples/{when}.txt):", "",
                      f"![{when}](rl/samples/{when}.png)"]
    lines += ["", f"Settings: `{json.dumps(summary['settings'])}`; seed {summary['seed']}; "
                  f"{summary['wall_seconds']:.0f} s."]
    (out / "report.md").write_text("\n".join(lines) + "\n")
