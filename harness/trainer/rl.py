"""Stage 2 of the paper: RL (GRPO and relatives) with cached video embeddings.

    harness rl --config configs/rl/toy-cpu.yaml [key=value ...] [--resume]

One step reads as timed blocks:
  data -> encode (each prompt's video once; MR-SP stage 1 + cache) -> rollout (G responses
  per prompt from prompt embeddings) -> reward -> advantage -> logprob (old policy and
  reference, reusing the cached embeddings) -> update (mini-batches of micro-batches)
  -> sync (new weights to the rollout engine).
With `train.cache_video_embeds: false` (the baseline) the video is encoded again for every
rollout and every log-prob/update pass. The vision tower and projector are frozen (the
cache is exact only then); the reference model is the starting policy, frozen.

Defaults follow the authors (docs/reference.md): n=5, temperature 1.0, top-p 0.99, clip
0.2/0.3, dual clip 3.0, low_var_kl loss 1e-2, token-mean, lr 1e-6, reward
0.9*accuracy + 0.1*format. `algo.dapo` drops groups whose rewards are all equal and
samples more prompts to refill the batch (at most 3 extra rounds; with data parallelism
each rank refills its own share and all ranks draw alike, see rl_collect.collect).
"""

from __future__ import annotations

import copy

import torch

from harness.algos.rewards import accuracy_reward, load_reward_fn
from harness.config import RLConfig
from harness.model.interface import VideoLM
from harness.parallel.reduce import dp_sum
from harness.rollout import build_engine, choose_engine
from harness.rollout.engine import RolloutEngine
from harness.trainer.common import compute_precision
from harness.trainer.rl_collect import Collection, RewardBudget, collect
from harness.trainer.rl_update import advantages, sample_metrics, score_samples, update
from harness.trainer.run import Run, open_run
from harness.trainer.videos import DiskEmbeds, StepVideoCache


def train_rl(cfg: RLConfig, resume: bool = False) -> dict[str, float]:
    with compute_precision(cfg.model):  # bf16 autocast over fp32 master weights, if configured
        return _train_rl(cfg, resume)


def _train_rl(cfg: RLConfig, resume: bool) -> dict[str, float]:
    # the reward function first: a typo in algo.reward_fn must not wait for the model and engine
    accuracy_fn = load_reward_fn(cfg.algo.reward_fn) if cfg.algo.reward_fn else accuracy_reward
    run = open_run(cfg, resume, "rl")
    reference = _frozen_copy(run.model, cfg.model.compute_dtype) if cfg.algo.kl_coef > 0 else None
    run.embeds = disk = _disk_cache(run)  # fingerprints the encoder before the strategy wraps the model
    run.start(resume)
    engine = _start_engine(run)
    videos = StepVideoCache(run.model, reuse=cfg.train.cache_video_embeds, sp_group=run.layout.sp_group,
                            disk=disk)
    budget = RewardBudget(cfg)
    for step in run.steps():
        videos.new_step()
        calls_before, hits_before = videos.encoder_calls, videos.disk_hits
        batch = collect(run, engine, videos, accuracy_fn, step)
        engine.release()  # vLLM's weights and KV cache back to the passes below (GPU)
        budget.check(batch, run.layout)
        samples, timer = batch.samples, run.timer
        with timer.block("logprob"):
            passes = (cfg.train.micro_batch, run.layout, cfg.train.shared_prefix, cfg.train.padding_free)
            old_logp = score_samples(run.model, videos, samples, *passes)
            ref_logp = score_samples(reference, videos, samples, *passes) if reference is not None else None
        with timer.block("advantage"):
            adv, kl_stats = advantages(samples, old_logp, ref_logp, cfg.algo, run.layout)  # [N, R]
        kl_term = None if cfg.algo.kl_in_reward else ref_logp  # the KL is either a loss term or in the reward
        with timer.block("update"):
            run.model.train()
            stats = update(run, videos, samples, adv, old_logp, kl_term, min(cfg.train.mini_batches, batch.fewest))
            run.model.eval()
        with timer.block("sync"):
            _sync(engine, run)
        metrics = {**sample_metrics(samples, old_logp, run.layout),
                   **_counters(run, batch, budget, videos, calls_before, hits_before), **kl_stats, **stats}
        run.end_step(step, metrics, postfix={"reward": f"{metrics['reward/mean']:.3f}",
                                             "acc": f"{metrics['reward/accuracy']:.2f}"})
    if hasattr(engine, "close"):
        engine.close()  # vLLM holds memory and process-wide state until closed
    return run.finish()


def _frozen_copy(model: VideoLM, compute_dtype: str | None) -> VideoLM:
    """The reference policy: the starting weights, frozen, and stored in the compute dtype
    when the policy keeps fp32 master weights (it never trains, and autocast would cast it
    so anyway). Copied before the strategy shards the policy."""
    ref = copy.deepcopy(model).eval()
    if compute_dtype is not None:
        ref.to(getattr(torch, compute_dtype))
    for p in ref.parameters():
        p.requires_grad_(False)
    return ref


def _disk_cache(run: Run) -> DiskEmbeds | None:
    """The on-disk embedding cache for this run's frame sampler (train.embed_cache_dir)."""
    cfg = run.cfg
    if cfg.train.embed_cache_dir is None:
        return None
    d = cfg.data
    return DiskEmbeds(cfg.train.embed_cache_dir, run.model,
                      {"num_frames": d.num_frames, "fps": d.fps, "frame_sampling": d.frame_sampling})


def _start_engine(run: Run) -> RolloutEngine:
    """The rollout engine, holding the policy's current weights: one on every rank (each
    samples its share of its SP group's prompts; vLLM's construction under torch.distributed
    is collective over the whole world anyway)."""
    cfg = run.cfg
    kind = choose_engine(cfg.rollout.engine, run.model)
    state = run.strategy.full_state_dict(run.model) if kind == "vllm" else None  # collective where sharded
    return build_engine(cfg.rollout, run.model, seed=cfg.run.seed, dtype=cfg.model.compute_dtype, kind=kind,
                        state=state)


def _sync(engine: RolloutEngine, run: Run) -> None:
    """The policy's new weights into an engine that holds its own copy (collective where
    the strategy shards: every rank has an engine)."""
    if engine.copies_weights:
        engine.sync_weights(run.model, run.strategy.full_state_dict(run.model))


def _counters(run: Run, batch: Collection, budget: RewardBudget, videos: StepVideoCache,
              calls_before: int, hits_before: int) -> dict[str, float]:
    """What the step counted, over every DP rank."""
    calls, hits, prompts, dropped = dp_sum([videos.encoder_calls - calls_before, videos.disk_hits - hits_before,
                                            len({id(s.item) for s in batch.samples}), batch.dropped_groups], run.layout)
    return {"reward/errors": float(budget.step_errors), "media/encoder_calls": calls, "video/disk_hits": hits,
            "data/prompts": prompts,
            "data/dropped_groups": dropped, "data/passed_over": float(batch.passed_over)}
