"""`python -m reproduce toy`: the paper's claims at toy scale on CPU, each against a target.

Claims (targets and tolerances in reproduce/targets.yaml):
  (a) CoT-SFT + RL beats CoT-SFT alone, which beats the untrained model, on held-out
      synthetic questions (basic level: one object on screen for a quarter of the video);
  (b) accuracy grows with the number of input frames (the RL model, 2 -> 16 frames);
  (c) MR-SP is faster than the baseline at long inputs: the RL step with the video encoded
      once per prompt (cache) against re-encoding it for every pass (`cache_video_embeds:
      false`), from the step-time breakdown the two RL runs log over the same steps (identical
      rollouts); and sequence parallelism fits more frames than the baseline in the same
      per-rank memory budget: the largest frame count within `memory_budget_gib` for the
      baseline (1 process, no cache, no SP) against MR-SP with SP 2 (2 processes, gloo), on
      perf/'s model and measurement (perf/mrsp.py: LongVILA-7B's vision : LLM ratio, peak
      anonymous memory per rank).

The SFT split's chain of thought comes from a simulated imperfect teacher (targets.yaml
`teacher_confusion`: it calls the object green in 65 % of its yellow videos and red in 65 % of
its blue ones; harness/data/synthetic/teacher.py), as the paper's CoT data come from model
captions; RL's reward checks answers against the truth. With a perfect teacher the toy RL
has nothing left that the model can read to improve (reproduce/LOG.md, sessions 3-6).

Stages run in order and are reused when their output exists (a rerun after an interruption
picks up where it stopped; `--fresh` starts over; a rerun with other settings is refused):
data -> SFT -> RL -> baseline RL steps -> evaluations -> memory -> `report.md` + `results.json`
under --out.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from harness.config import RLConfig, SFTConfig, load_config

ROOT = Path(__file__).resolve().parent.parent
TARGETS = Path(__file__).with_name("targets.yaml")
SFT_CONFIG = ROOT / "configs/sft/toy-basic.yaml"
RL_CONFIG = ROOT / "configs/rl/toy-basic.yaml"


@dataclass(frozen=True)
class Settings:
    """What one toy reproduction runs; defaults come from targets.yaml (`from_targets`).
    The SFT lr schedule (cosine 1e-3 -> 5e-5) is part of the recipe, not a setting."""

    videos: int
    teacher_confusion: tuple[str, ...]  # TRUE=SAID:RATE, the SFT split's imperfect teacher
    sft_steps: int
    sft_batch: int
    rl_steps: int
    rl_prompts: int
    baseline_steps: int
    eval_questions: int

    def __post_init__(self) -> None:
        # Checked before anything is written under --out, so a typo costs nothing.
        from harness.data.synthetic.teacher import check_confusions, parse_confusion

        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name != "teacher_confusion" and (not isinstance(value, int) or value < 1):
                raise ValueError(f"toy setting {f.name} must be a positive integer, got {value!r}")
        if isinstance(self.teacher_confusion, str):
            raise ValueError(f"toy setting teacher_confusion must be a list of TRUE=SAID:RATE, got the string "
                             f"{self.teacher_confusion!r}")
        check_confusions([parse_confusion(c) for c in self.teacher_confusion], "basic")

    @classmethod
    def from_targets(cls, targets: dict[str, Any], **overrides: Any) -> Settings:
        values = {f.name: targets[f.name] for f in dataclasses.fields(cls)}
        values.update({k: v for k, v in overrides.items() if v is not None})
        teacher = values["teacher_confusion"]
        values["teacher_confusion"] = teacher if isinstance(teacher, str) else tuple(teacher)
        return cls(**values)


@dataclass(frozen=True)
class MemoryCheck:
    """(c)'s memory half (targets.yaml `memory_budget_gib`, `memory_frames`): kept out of
    `Settings` because it shares no stage with the learning runs; its own stage output
    (memory.json) records what it was run with and is redone when that changes."""

    budget_gib: float
    frames: tuple[int, ...]

    def __post_init__(self) -> None:
        if not self.budget_gib > 0:
            raise ValueError(f"toy setting memory_budget_gib must be positive, got {self.budget_gib!r}")
        if not self.frames or list(self.frames) != sorted(set(self.frames)) or self.frames[0] < 1:
            raise ValueError(f"toy setting memory_frames must be increasing positive counts, got {self.frames!r}")

    @classmethod
    def from_targets(cls, targets: dict[str, Any]) -> MemoryCheck:
        return cls(float(targets["memory_budget_gib"]), tuple(targets["memory_frames"]))


def settings_from_args(args: argparse.Namespace, targets: dict[str, Any]) -> Settings:
    """Command-line overrides on top of targets.yaml; `--teacher-confusion none` alone is the
    perfect teacher. ValueError on a bad value."""
    teacher = args.teacher_confusion
    if teacher is not None and "none" in teacher:
        if teacher != ["none"]:
            raise ValueError(f"--teacher-confusion none cannot be combined with confusions, got {teacher}")
        teacher = []
    return Settings.from_targets(
        targets, videos=args.videos, teacher_confusion=teacher, sft_steps=args.sft_steps,
        sft_batch=args.sft_batch, rl_steps=args.rl_steps, rl_prompts=args.rl_prompts,
        baseline_steps=args.baseline_steps, eval_questions=args.eval_questions)


def _data(out: Path, s: Settings) -> Path:
    from harness.data.synthetic import parse_confusion, synthesize

    data = out / "data"
    if not (data / "test.jsonl").exists():
        summary = synthesize(data, s.videos, seed=0, difficulty="basic", minutes=(0.5, 1.0), progress=True,
                             teacher=tuple(parse_confusion(c) for c in s.teacher_confusion))
        print(summary)
    held_out = data / f"test{s.eval_questions}.jsonl"
    if not held_out.exists():
        lines = (data / "test.jsonl").read_text().splitlines()[:s.eval_questions]
        held_out.write_text("\n".join(lines) + "\n")
    return data


SAMPLES, TEMPERATURE = 8, 1.0  # sampled accuracy: RL's rollouts per prompt and temperature


def _accuracy(model_dir: Path | None, data: Path, split: str, frames: int, samples: int = 0,
              seed: int = 0) -> dict[str, float]:
    from harness.data.dataset import QADataset, SkipLedger
    from harness.model.build import init_model, load_model
    from harness.trainer.evaluate import evaluate_accuracy

    model = load_model(model_dir) if model_dir else init_model("vila", "toy", seed=seed)
    dataset = QADataset(data / split, frames, SkipLedger(0.1))
    return evaluate_accuracy(model.eval(), dataset, max_new_tokens=48, samples=samples, temperature=TEMPERATURE)


def _step_seconds(run_dir: Path, last: int | None = None) -> dict[str, float]:
    """Mean seconds per RL step ("time/step": the sum of the top-level blocks) and per block
    over the logged steps 2..`last` (all when None): the first is dropped (warm-up)."""
    from harness.trainer.metrics import read_metrics

    steps = {r["step"]: r for r in read_metrics(run_dir / "metrics.jsonl") if "reward/mean" in r}
    # keyed by step: a resumed run's rewritten steps count once
    rows = [r for k, r in sorted(steps.items()) if k > 1 and (last is None or k <= last)]
    if not rows:
        raise ValueError(f"{run_dir}/metrics.jsonl has fewer than 2 RL steps to time")
    keys = sorted({k for r in rows for k in r if k.startswith("time/") and k.count("/") == 1})
    mean = {k: sum(r.get(k, 0.0) for r in rows) / len(rows) for k in keys}
    mean["time/step"] = sum(mean.values())
    return mean


def _memory(out: Path, check: MemoryCheck) -> dict[str, Any]:
    """Largest frame count within the per-rank budget: the baseline (1 process, no cache, no
    SP) up the frame list until it exceeds the budget, then SP 2 (2 processes) from the first
    count the baseline did not fit, until it exceeds it too. Same global batch, same model.
    Kept in memory.json and reused while the check and the perf config are unchanged; a run
    that crashed is reported (`error`) and not kept, so the next call measures again."""
    from perf import mrsp

    pc = mrsp.PerfConfig.load(ROOT / "configs/perf/cpu-2rank.yaml")
    pc = dataclasses.replace(pc, budget_gib=check.budget_gib, record=False)
    path = out / "memory.json"
    want = {"budget_gib": check.budget_gib, "frames": list(check.frames), "perf_config": dataclasses.asdict(pc)}
    if path.exists():
        done = json.loads(path.read_text())
        if done.get("check") == want:
            return done
    work = out / "memory"
    data_dir, model_path = mrsp.prepare(pc, work)
    rows: list[dict[str, Any]] = []
    done: dict[str, Any] = {"check": want, "rows": rows}

    def measure(mode: str, world: int, frames: int) -> bool:
        row = mrsp.run_case(pc, mode, frames, data_dir=data_dir, model_path=model_path, work=work,
                            world=world, sp=world, steps=pc.memory_steps)
        print("   " + mrsp.row_line(row, pc.budget_gib), flush=True)
        if row["status"] == "failed":
            done["error"] = f"{'SP 2' if mode == 'stage12' else 'baseline'} at {frames} frames: {row['error']}"
            return False
        rows.append({k: row[k] for k in ("mode", "frames", "sp", "mem_per_rank_gib", "sec_per_step", "fits")})
        return row["fits"]

    first_over = next((f for f in check.frames if not measure("baseline", 1, f)), None)
    if first_over is not None and "error" not in done:
        for f in check.frames[check.frames.index(first_over):]:
            if not measure("stage12", 2, f):
                break
    fitting = mrsp.largest_fitting(rows)
    done["largest_fitting"] = {"baseline": fitting.get("baseline"), "sp2": fitting.get("stage12")}
    if "error" not in done:
        path.write_text(json.dumps(done, indent=1))
    return done


def claim(out: Path, settings: Settings, *, fresh: bool) -> None:
    """Make `out` this reproduction's folder (the stage runner's rules: `--fresh` deletes only
    a toy run; a rerun with other settings is refused, naming each one)."""
    from harness.stages import open_out

    want = dataclasses.asdict(settings)
    want["teacher_confusion"] = list(want["teacher_confusion"])
    open_out(out, want, fresh=fresh, kind="toy")


def run(out: Path, settings: Settings, *, fresh: bool, memory: MemoryCheck | None = None) -> dict[str, Any]:
    """All stages; `memory` defaults to targets.yaml's."""
    from harness.stages import Stage, run_stages

    s = settings
    memory = memory or MemoryCheck.from_targets(yaml.safe_load(TARGETS.read_text())["toy"])
    claim(out, s, fresh=fresh)
    t_start = time.perf_counter()
    split = f"test{s.eval_questions}.jsonl"
    data, sft_dir, rl_dir, base_dir = out / "data", out / "sft", out / "rl", out / "rl-baseline"
    common = [f"data.dir={data}", f"data.eval={split}", "run.progress=true", "run.eval_every=0"]
    rl_common = [*common, f"model.path={sft_dir / 'final'}", "rollout.engine=hf", f"train.prompts_per_step={s.rl_prompts}"]
    teacher = ", ".join(s.teacher_confusion) or "perfect"
    mem: dict[str, Any] = {}
    run_stages(out, [
        Stage("data", f"data: {s.videos} basic-level videos, SFT teacher: {teacher}",
              lambda: (data / split).exists(), lambda: f"data: {_data(out, s)}"),
        Stage("sft", f"CoT-SFT, {s.sft_steps} steps x batch {s.sft_batch}, cosine lr",
              lambda: (sft_dir / "final").exists(), lambda: _train(SFT_CONFIG, SFTConfig, sft_dir, [
                  # Batch 32 with a cosine decay: the SFT model learns the teacher's colour
                  # distribution per colour (batch 8 at a constant lr merges the confused pairs,
                  # measured in LOG.md).
                  *common, f"run.steps={s.sft_steps}", f"train.batch_size={s.sft_batch}", "optim.schedule=cosine",
                  "optim.min_lr_ratio=0.05"])),
        Stage("rl", f"RL (GRPO, cached video embeddings), {s.rl_steps} steps x {s.rl_prompts} prompts",
              lambda: (rl_dir / "final").exists(),
              lambda: _train(RL_CONFIG, RLConfig, rl_dir, [*rl_common, f"run.steps={s.rl_steps}"])),
        Stage("baseline", f"RL baseline (video re-encoded every pass), {s.baseline_steps} steps",
              lambda: (base_dir / "final").exists(),
              lambda: _train(RL_CONFIG, RLConfig, base_dir, [*rl_common, f"run.steps={s.baseline_steps}",
                                                             "train.cache_video_embeds=false", "data.eval=null"])),
        Stage("evaluate", f"evaluate on {s.eval_questions} held-out questions",
              lambda: (out / "accuracy.json").exists(), lambda: _evaluate(out, data, split)),
        Stage("memory", f"memory: largest frame count within {memory.budget_gib} GiB per rank, baseline vs SP 2",
              lambda: False, lambda: mem.update(_memory(out, memory))),  # memory.json: reused while its check holds
    ])
    measured = json.loads((out / "accuracy.json").read_text())
    measured["accuracy_by_frames"] = {int(n): a for n, a in measured["accuracy_by_frames"].items()}
    # Paired: the cached run's first steps are the baseline's steps (same seed, same model,
    # same prompts, the same rollouts), so the two are timed on identical work; later steps
    # of the cached run have other response lengths.
    cached, baseline = _step_seconds(rl_dir, last=s.baseline_steps), _step_seconds(base_dir)
    return {**measured, "step_seconds": {"mrsp_cache": cached, "baseline": baseline},
            "memory": mem, "wall_seconds": time.perf_counter() - t_start,
            "settings": json.loads((out / "settings.json").read_text())}


def _train(config: Path, kind, run_dir: Path, overrides: list[str]) -> str:
    from harness.trainer.rl import train_rl
    from harness.trainer.sft import train_sft

    cfg = load_config(config, [*overrides, f"run.out_dir={run_dir}"], kind)
    (train_sft if kind is SFTConfig else train_rl)(cfg, resume=(run_dir / "checkpoints").exists())
    return f"{run_dir / 'final'}"


def _evaluate(out: Path, data: Path, split: str) -> str:
    """Greedy and sampled held-out accuracy of the three models, and of the RL model at 2 to
    16 frames; kept in accuracy.json."""
    acc = {
        "untrained": _accuracy(None, data, split, 16, SAMPLES),
        "sft": _accuracy(out / "sft" / "final", data, split, 16, SAMPLES),
        "rl": _accuracy(out / "rl" / "final", data, split, 16, SAMPLES),
    }
    frames = {n: _accuracy(out / "rl" / "final", data, split, n)["eval/accuracy"] for n in (2, 4, 8)}
    frames[16] = acc["rl"]["eval/accuracy"]  # greedy, so the same as evaluating 16 frames again
    measured = {
        "accuracy": {k: v["eval/accuracy"] for k, v in acc.items()},
        "format_rate": {k: v["eval/format_rate"] for k, v in acc.items()},
        # Not a claim: the policy's sampled answers (what RL optimises), beside the greedy ones.
        "sampled_accuracy": {k: v["eval/sampled_accuracy"] for k, v in acc.items()},
        "accuracy_by_frames": frames,
    }
    (out / "accuracy.json").write_text(json.dumps(measured, indent=1))
    return " / ".join(f"{k} {v:.3f}" for k, v in measured["accuracy"].items())


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
        _memory_row(results["memory"]),
    ]


def _memory_row(mem: dict[str, Any]) -> tuple[str, str, str, bool]:
    fit, frames = mem["largest_fitting"], mem["check"]["frames"]
    peaks = "; ".join(f"{'SP 2' if r['mode'] == 'stage12' else 'baseline'} {r['frames']}f "
                      f"{max(r['mem_per_rank_gib']):.2f}" for r in mem["rows"])
    if "error" in mem:
        measured = f"a run failed: {mem['error']}"
    elif fit["baseline"] == frames[-1]:
        measured = f"SP 2 not run: the baseline fits every count up to {frames[-1]} frames; raise memory_frames"
    else:
        measured = (f"largest within budget: baseline {fit['baseline'] or 'none'}, SP 2 {fit['sp2'] or 'none'} "
                    f"frames (GiB per rank: {peaks})")
    ok = "error" not in mem and fit["sp2"] is not None and fit["sp2"] > (fit["baseline"] or 0)
    return ("(c) SP fits more frames than baseline", measured,
            f"SP 2 > baseline within {mem['check']['budget_gib']} GiB per rank", ok)


def _rises(values: list[float], dip: float) -> bool:
    """True when no value falls more than `dip` below the one before (sampling noise)."""
    return all(b >= a - dip for a, b in zip(values[:-1], values[1:], strict=True))


def report(results: dict[str, Any], rows: list[tuple[str, str, str, bool]]) -> str:
    lines = ["# Toy reproduction (basic level, toy vila, CPU)", "",
             "| claim | measured | target | verdict |", "|---|---|---|---|"]
    lines += [f"| {c} | {m} | {t} | {'PASS' if ok else 'FAIL'} |" for c, m, t, ok in rows]
    teacher = results["settings"].get("teacher_confusion")
    if teacher:
        lines += ["", "SFT data from a simulated imperfect teacher that names colours wrongly "
                  f"({', '.join(teacher)}: TRUE=SAID:RATE per video); RL rewards and the held-out "
                  "questions use the truth."]
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
    p.add_argument("--videos", type=int, help=f"default {targets['videos']}")
    p.add_argument("--teacher-confusion", action="append", metavar="TRUE=SAID:RATE",
                   help=f"the SFT split's imperfect teacher, repeatable; 'none' for a perfect one "
                        f"(default {' '.join(targets['teacher_confusion'])})")
    p.add_argument("--sft-steps", type=int, help=f"default {targets['sft_steps']}")
    p.add_argument("--sft-batch", type=int, help=f"default {targets['sft_batch']}")
    p.add_argument("--rl-steps", type=int, help=f"default {targets['rl_steps']}")
    p.add_argument("--rl-prompts", type=int, help=f"default {targets['rl_prompts']}")
    p.add_argument("--baseline-steps", type=int, help=f"default {targets['baseline_steps']}")
    p.add_argument("--eval-questions", type=int, help=f"default {targets['eval_questions']}")
    args = p.parse_args(argv)
    try:
        settings = settings_from_args(args, targets)
        claim(args.out, settings, fresh=args.fresh)  # before any stage: an --out of another run is refused
    except (ValueError, FileExistsError) as err:
        print(f"python -m reproduce toy: error: {err}", file=sys.stderr)
        return 2
    results = run(args.out, settings, fresh=False)
    rows = verdicts(results, targets)
    text = report(results, rows)
    (args.out / "results.json").write_text(json.dumps(results, indent=1))
    (args.out / "report.md").write_text(text)
    print("\n" + text)
    return 0 if all(ok for *_, ok in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
