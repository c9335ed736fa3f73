"""RL for image and video generation: Flow-GRPO on SD3-style and Wan-style models.

    harness gen-rl --config configs/gen/toy-image.yaml [key=value ...] [--resume]

One step reads as timed blocks:
  data (this rank's prompts) -> text (each prompt's encoder outputs, computed once per run
  and reused by all G samples and every pass, like MR-SP's video cache) -> rollout (G SDE
  trajectories per prompt, each step's log-probability recorded) -> reward (decode, score)
  -> advantage (per prompt group; the std of every rank's rewards with algo.global_std)
  -> update (every sample's trained steps re-scored with gradients: the clipped ratio loss
  plus kl_coef x the flow_grpo KL to the starting model; one optimizer update per step).
Held-out prompts are scored with the ODE sampler (sample.eval_num_steps, noise 0) before
training, at run.eval_every and at the end (out_dir/eval.json: before and after); the first
run.sample_grid of the before and after samples are saved as pictures (out_dir/samples/). The run shares SFT's and RL's setup, checkpoints, metrics, bad-step
rule and exact resume (harness/trainer/run.py); the toy models and prompt sets make it run
on CPU in minutes (docs/gen-rl.md).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import torch

from harness.algos.flow_grpo import group_advantages, pooled_std, step_loss, trained_steps
from harness.algos.gen_rewards import UnscorablePrompt
from harness.config import ConfigError
from harness.data.dataset import EpochSampler
from harness.gen.config import GenModelConfig, GenRLConfig
from harness.gen.data import GenPrompt, PromptSet, read_prompts, synthesize_gen
from harness.gen.models import GenModel, TextCond
from harness.gen.pictures import save_samples
from harness.gen.rewards import GenReward, load_gen_reward
from harness.gen.sample import Trajectory, rollout, sample_key, score_step
from harness.gen.toy import init_gen_model
from harness.parallel.groups import build_layout
from harness.parallel.reduce import dp_sum, world_sum
from harness.parallel.strategy import make_strategy
from harness.trainer.common import (
    barrier,
    compute_precision,
    resolve_device,
    seed_everything,
)
from harness.trainer.run import Run, prepare_out_dir

log = logging.getLogger(__name__)


def train_gen_rl(cfg: GenRLConfig, resume: bool = False) -> dict[str, float]:
    with compute_precision(cfg.model):
        return _train(cfg, resume)


def _train(cfg: GenRLConfig, resume: bool) -> dict[str, float]:
    # the reward first: a typo in reward.name must not wait for the model
    reward = load_gen_reward(cfg.reward.name, cfg.reward.model_path, cfg.reward.scale)
    run, held_out = open_gen_run(cfg, resume, reward)
    s, a = cfg.sample, cfg.algo
    reference = run.model.frozen_copy() if a.kl_coef > 0 else None  # before the strategy wraps the policy
    run.start(resume)
    texts = TextCache(run.model)
    uncond = texts.get([s.negative_prompt]) if s.guidance > 1 else None
    steps = trained_steps(s.num_steps, a.timestep_fraction)
    shape = run.model.latent_shape(s.height, s.width, s.frames)
    if run.main and run.first_step == 0 and held_out is not None:
        # the untrained model's held-out reward, kept for the final comparison
        before = evaluate(run.model, held_out, reward, texts, uncond, shape, cfg, run.out / "samples" / "before")
        (run.out / "eval_before.json").write_text(json.dumps({"eval/reward": before}) + "\n")
    for step in run.steps():
        timer = run.timer
        with timer.block("data"):
            prompts, positions = _take_prompts(run)
        with timer.block("text"):
            calls = texts.calls
            cond = texts.get([p.prompt for p in prompts for _ in range(a.group_size)])  # [N] rows
        keys = [sample_key(cfg.run.seed, step, pos, g) for pos in positions for g in range(a.group_size)]
        with timer.block("rollout"):
            traj = _rollout(run.model, cond, uncond, keys, shape, s.num_steps, s.guidance, s.noise_level, s.batch)
        with timer.block("reward"):
            rewards = _score(run.model, reward, traj.latents[:, -1], prompts, a.group_size, s.batch)  # [N]
        with timer.block("advantage"):
            moments = _reward_moments(run, rewards)
            adv = _advantages(run, rewards, moments)  # [N]
        with timer.block("update"):
            run.model.train()
            stats = _update(run, reference, traj, cond, uncond, adv, steps)
            run.model.eval()
        metrics = {**_reward_stats(moments), **stats, "data/prompts": float(cfg.train.prompts_per_step),
                   "text/encoder_calls": float(texts.calls - calls)}
        if run.main and held_out is not None and cfg.run.eval_every and (step + 1) % cfg.run.eval_every == 0:
            metrics["eval/reward"] = evaluate(run.model, held_out, reward, texts, uncond, shape, cfg)
        run.end_step(step, metrics, postfix={"reward": f"{metrics['reward/mean']:.3f}"})
    final = run.finish()
    if run.main and run.first_step < cfg.run.steps and held_out is not None:
        final["eval/reward"] = evaluate(run.model, held_out, reward, texts, uncond, shape, cfg,
                                        run.out / "samples" / "after")
        before = json.loads((run.out / "eval_before.json").read_text())["eval/reward"]
        summary = {"before": before, "after": final["eval/reward"], "steps": cfg.run.steps, "prompts": len(held_out)}
        (run.out / "eval.json").write_text(json.dumps(summary, indent=1) + "\n")
    barrier(run.layout)
    return final


# --- setup -------------------------------------------------------------------------------


def open_gen_run(cfg: GenRLConfig, resume: bool, reward: GenReward) -> tuple[Run, PromptSet | None]:
    """The layout, the out_dir (checked before anything is written), the prompts (every one
    checked against the reward before the model is built) and the model."""
    layout = build_layout(cfg.parallel.dp_size, cfg.parallel.sp_size)
    out = Path(cfg.run.out_dir)
    if layout.rank == 0:
        prepare_out_dir(cfg, resume)
        _prepare_prompts(cfg)
        if cfg.model.path is None:
            _write_toy_model(cfg.model, out / TOY_MODEL)
    barrier(layout)
    seed_everything(cfg.run.seed)
    root = Path(cfg.data.dir)
    train = read_prompts(root / cfg.data.train)
    held_out = read_prompts(root / cfg.data.eval) if cfg.data.eval else None
    for split in (train, held_out):
        _check_scorable(split, reward)
    model = build_gen_model(cfg.model, out / TOY_MODEL)
    model.latent_shape(cfg.sample.height, cfg.sample.width, cfg.sample.frames)  # sizes checked before any step
    strategy = make_strategy(cfg.parallel.zero_stage, layout, units=GenModel.sharding_units)
    run = Run(cfg, "gen-rl", layout, strategy, model, train, None,
              EpochSampler(len(train), cfg.run.seed))
    return run, held_out


def _prepare_prompts(cfg: GenRLConfig) -> None:
    d = cfg.data
    if d.synth_items and not (Path(d.dir) / d.train).exists():
        counts = synthesize_gen(d.dir, d.synth_modality, d.synth_items, d.synth_seed)
        log.info("wrote toy %s prompts to %s: %s", d.synth_modality, d.dir, counts)


def _check_scorable(split: PromptSet | None, reward: GenReward) -> None:
    if split is None or reward.check is None:
        return
    bad = []
    for p in split.prompts:
        try:
            reward.check(p.prompt)
        except UnscorablePrompt as err:
            bad.append(str(err))
    if bad:
        raise ConfigError(f"reward {reward.name} cannot score {len(bad)} of {len(split)} prompts, e.g. {bad[0]}; "
                          f"choose a reward for these prompts (reward.name)")


# A toy model (model.path null) is built once, into the run's folder, and every rank and
# every resume loads it from there: building it again would fit the toy VAE again.
TOY_MODEL = "toy_model"


def _write_toy_model(cfg: GenModelConfig, folder: Path) -> None:
    if (folder / "model_index.json").is_file():
        return
    tmp = folder.with_name(folder.name + ".tmp")
    log.info("building the %s %s model (seed %d) -> %s", cfg.size, cfg.kind, cfg.seed, folder)
    init_gen_model(cfg.kind, cfg.size, cfg.seed).save_pretrained(tmp)
    tmp.rename(folder)


def build_gen_model(cfg: GenModelConfig, toy_folder: Path) -> GenModel:
    """model.path's pipeline, or the run's toy model (`_write_toy_model` wrote it)."""
    dtype = getattr(torch, cfg.dtype)
    model = GenModel.from_pretrained(cfg.path or toy_folder, dtype=dtype)
    if model.kind != cfg.kind:
        raise ConfigError(f"model.path {cfg.path} holds a {model.kind} pipeline but model.kind={cfg.kind}")
    lora = cfg.lora()
    if lora is not None:
        _add_lora(model, lora, cfg.seed, defaults=cfg.lora_targets is None)
    model.set_activation_checkpointing(cfg.activation_checkpointing)
    return model.place(resolve_device(cfg), dtype).eval()


def _add_lora(model: GenModel, spec, seed: int, defaults: bool) -> None:
    """The adapter, its A matrices drawn from `model.seed` alone (the same on every rank,
    whatever the global RNG has served)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        try:
            model.add_lora(spec)
        except ValueError as e:  # peft: a target name the transformer does not have
            which = f"the {model.kind} defaults {list(spec.targets)}" if defaults else "model.lora_targets"
            raise ConfigError(f"LoRA targets ({which}): {str(e).splitlines()[0]}") from None


class TextCache:
    """Text-encoder outputs per prompt, computed once per run (the encoders are frozen) and
    reused by every sample and pass; `calls` counts prompts encoded."""

    def __init__(self, model: GenModel):
        self.model, self.rows, self.calls = model, {}, 0

    def get(self, prompts: list[str]) -> TextCond:
        new = list(dict.fromkeys(p for p in prompts if p not in self.rows))
        if new:
            cond = self.model.encode_text(new)
            for i, p in enumerate(new):
                self.rows[p] = cond.select([i])
            self.calls += len(new)
        return TextCond.cat([self.rows[p] for p in prompts])


# --- one step ----------------------------------------------------------------------------


def _take_prompts(run: Run) -> tuple[list[GenPrompt], list[int]]:
    """This DP rank's share of the step's prompts and their places in the global draw (every
    rank draws the same list from an identically seeded sampler)."""
    per_rank = run.cfg.train.prompts_per_step // run.layout.dp_size
    drawn = run.sampler.take(run.cfg.train.prompts_per_step)
    first = run.layout.dp_rank * per_rank
    picks = range(first, first + per_rank)
    return [run.train.prompts[drawn[i]] for i in picks], list(picks)


def _rollout(model: GenModel, cond: TextCond, uncond: TextCond | None, keys: list[int], shape: tuple[int, ...],
             num_steps: int, guidance: float, noise_level: float, batch: int) -> Trajectory:
    parts = [rollout(model, cond.select(list(range(i, min(i + batch, len(keys))))), uncond, keys[i : i + batch],
                     shape, num_steps, guidance, noise_level) for i in range(0, len(keys), batch)]
    return Trajectory(torch.cat([p.latents for p in parts]), torch.cat([p.log_probs for p in parts]), parts[0].sigmas)


def _score(model: GenModel, reward: GenReward, latents: torch.Tensor, prompts: list[GenPrompt], group: int,
           batch: int) -> torch.Tensor:
    """Rewards [N] of the final latents (prompt-major, `group` samples per prompt)."""
    texts = [p.prompt for p in prompts for _ in range(group)]
    meta = [p.metadata for p in prompts for _ in range(group)]
    out = [reward(model.decode(latents[i : i + batch]), texts[i : i + batch], meta[i : i + batch])
           for i in range(0, len(texts), batch)]
    return torch.cat(out)


def _reward_moments(run: Run, rewards: torch.Tensor) -> tuple[float, float, float]:
    """(count, sum, sum of squares) of every rank's rewards of the step (collective)."""
    count, total, sq = dp_sum([float(len(rewards)), float(rewards.sum()), float((rewards**2).sum())], run.layout)
    return count, total, sq


def _advantages(run: Run, rewards: torch.Tensor, moments: tuple[float, float, float]) -> torch.Tensor:
    a = run.cfg.algo
    groups = torch.arange(len(rewards)) // a.group_size
    std = pooled_std(*moments) if a.global_std else None
    return group_advantages(rewards, groups, clip=a.adv_clip, global_std=std)


def _update(run: Run, reference: GenModel | None, traj: Trajectory, cond: TextCond, uncond: TextCond | None,
            adv: torch.Tensor, steps: list[int]) -> dict[str, float]:
    """One optimizer update from every sample's trained steps: the loss is the mean over
    every rank's samples and the trained steps of the clipped surrogate + kl_coef x KL
    (Flow-GRPO's, whose gradient accumulation spans the timesteps and micro-batches)."""
    cfg, model = run.cfg, run.model
    s, a = cfg.sample, cfg.algo
    n = len(adv)
    (n_all,) = dp_sum([float(n)], run.layout)
    norm = n_all * len(steps)
    sums = dict.fromkeys(("loss", "kl", "clip", "approx_kl"), 0.0)
    for lo in range(0, n, cfg.train.micro_batch):
        rows = list(range(lo, min(lo + cfg.train.micro_batch, n)))
        part, rows_cond = traj.select(rows), cond.select(rows)
        for j in steps:
            new = score_step(model, part, j, rows_cond, uncond, s.guidance, s.noise_level)
            ref_mean = None
            if reference is not None:
                with torch.no_grad():
                    ref_mean = score_step(reference, part, j, rows_cond, uncond, s.guidance, s.noise_level).mean
            old = part.log_probs[:, j]
            loss, got = step_loss(new, old, adv[rows].to(old.device), a.clip_range, ref_mean, a.kl_coef)
            (loss / norm).backward()
            sums["loss"] += float(loss.detach())
            for k, v in got.items():
                sums[k] += v
    totals = dict(zip(sums, world_sum(list(sums.values()), run.layout), strict=True))
    loss = totals["loss"] / norm
    grad_norm = run.update(loss)
    stats = {"loss": loss, "grad_norm": grad_norm, "pg/clip_frac": totals["clip"] / norm,
             "pg/approx_kl": totals["approx_kl"] / norm}
    if reference is not None:
        stats["kl"] = totals["kl"] / norm
    return stats


def _reward_stats(moments: tuple[float, float, float]) -> dict[str, float]:
    count, total, _ = moments
    return {"reward/mean": total / count, "reward/std": pooled_std(*moments)}


# --- held-out scoring and pictures -------------------------------------------------------


@torch.no_grad()
def evaluate(model: GenModel, held_out: PromptSet, reward: GenReward, texts: TextCache, uncond: TextCond | None,
             shape: tuple[int, ...], cfg: GenRLConfig, samples: Path | None = None) -> float:
    """Mean reward of one ODE sample per held-out prompt (fixed noise per prompt); with
    `samples`, the first `run.sample_grid` of those samples are also saved there."""
    pixels = _ode_pixels(model, held_out.prompts, texts, uncond, shape, cfg)
    scores = reward(pixels, [p.prompt for p in held_out.prompts], [p.metadata for p in held_out.prompts])
    k = cfg.run.sample_grid
    if samples is not None and k:
        for path in save_samples(pixels[:k], [p.prompt for p in held_out.prompts[:k]], samples):
            log.info("samples -> %s", path)
    return float(scores.mean())


def _ode_pixels(model: GenModel, prompts: list[GenPrompt], texts: TextCache, uncond: TextCond | None,
                shape: tuple[int, ...], cfg: GenRLConfig) -> torch.Tensor:
    s = cfg.sample
    keys = [sample_key(cfg.run.seed, -1, i, 0) for i in range(len(prompts))]
    cond = texts.get([p.prompt for p in prompts])
    traj = _rollout(model, cond, uncond, keys, shape, s.eval_num_steps, s.guidance, 0.0, s.batch)
    return torch.cat([model.decode(traj.latents[i : i + s.batch, -1]) for i in range(0, len(prompts), s.batch)])
