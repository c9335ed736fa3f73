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
each rank refills its own share and all ranks draw alike, see the loop).
"""

from __future__ import annotations

import copy
import logging
import math
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn.functional as F
import yaml
from tqdm import tqdm

from harness.algos import advantages as adv_fns
from harness.algos.kl import kl_estimate, kl_loss
from harness.algos.losses import masked_mean, policy_loss
from harness.algos.rewards import accuracy_reward, format_reward, load_reward_fn, safe_reward
from harness.config import RLConfig, to_dict
from harness.data.dataset import EpochSampler, SkipLedger, VideoQADataset, question_text
from harness.data.records import Record
from harness.data.video import VideoClip
from harness.errors import HarnessError
from harness.model.interface import PromptEmbeds, VideoLM
from harness.model.sp import padded_length, sp_local_logprobs, sp_token_logprobs
from harness.parallel import sharding
from harness.parallel.groups import Layout, build_layout
from harness.parallel.reduce import dp_max, dp_min, dp_sum, dp_summer, world_sum
from harness.rollout import build_engine, choose_engine
from harness.rollout.engine import RolloutEngine, SamplingConfig
from harness.trainer.batch import pack_sequences, response_logprobs
from harness.trainer.common import (
    barrier,
    build_model,
    build_optimizer,
    check_frame_counts,
    check_out_dir,
    compute_precision,
    finish_run,
    gather_checkpoint,
    prepare_data,
    reduce_and_clip,
    save_step,
    seed_everything,
    sharding_units,
    start_or_resume,
)
from harness.trainer.evaluate import evaluate_run
from harness.trainer.metrics import StepTimer, peak_memory
from harness.trainer.videos import StepVideoCache

MAX_REFILL_ROUNDS = 3
log = logging.getLogger(__name__)


@dataclass
class Sample:
    """One rollout: which prompt it answers and everything computed about it."""

    prompt: int  # index into the step's prompt list (the group id)
    tokens: torch.Tensor  # [R]
    engine_logp: torch.Tensor  # [R]
    text: str
    reward: float = 0.0
    accuracy: float = 0.0
    format: float = 0.0


@dataclass
class PromptItem:
    record: Record
    clip: VideoClip
    input_ids: torch.Tensor  # [L] chat prompt with one video placeholder
    position: int  # in the round's global draw (all DP ranks): the key of its sampling randomness


def train_rl(cfg: RLConfig, resume: bool = False) -> dict[str, float]:
    with compute_precision(cfg.model):  # bf16 autocast over fp32 master weights, if configured
        return _train_rl(cfg, resume)


def _train_rl(cfg: RLConfig, resume: bool) -> dict[str, float]:
    # --- setup ------------------------------------------------------------------------
    layout = build_layout(cfg.parallel.dp_size, cfg.parallel.sp_size)
    main = layout.rank == 0
    # the reward function first: a typo in algo.reward_fn must not wait for the model and engine
    accuracy_fn = load_reward_fn(cfg.algo.reward_fn) if cfg.algo.reward_fn else accuracy_reward
    out = Path(cfg.run.out_dir)
    if main:
        check_out_dir(out, resume)
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.yaml").write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))
        prepare_data(cfg.data)  # one rank synthesises; the others wait, then find it
    barrier(layout)
    seed_everything(cfg.run.seed)
    root = prepare_data(cfg.data)
    ledger = SkipLedger(cfg.data.max_skip_fraction)
    train = VideoQADataset(root / cfg.data.train, cfg.data.num_frames, ledger, cfg.data.video_dir,
                           cfg.data.frame_sampling)
    # Its own ledger: only rank 0 evaluates, and the training ledger's tally must be the same
    # on every rank of a data-parallel group (SkipLedger).
    held_out = (VideoQADataset(root / cfg.data.eval, cfg.data.num_frames, SkipLedger(cfg.data.max_skip_fraction),
                               cfg.data.eval_video_dir or cfg.data.video_dir, cfg.data.frame_sampling)
                if cfg.data.eval else None)
    policy = build_model(cfg.model)
    check_frame_counts(policy, cfg.data)
    policy.set_trainable(vision=not cfg.train.freeze_vision, projector=not cfg.train.freeze_projector)
    reference = _frozen_copy(policy, cfg.model.compute_dtype) if cfg.algo.kl_coef > 0 else None
    zero = cfg.parallel.zero_stage == 1 and layout.world_size > 1
    sharded = cfg.parallel.zero_stage >= 2  # ZeRO-2/3 with FSDP2; the frozen reference stays replicated
    if sharded:
        sharding.shard_model(policy, sharding_units(policy), cfg.parallel.zero_stage)
    optimizer, scheduler = build_optimizer(policy, cfg.optim, zero_group=dist.group.WORLD if zero else None,
                                           total_steps=cfg.run.steps)
    # Only the SP group's first rank samples (see _rollout). vLLM under torch.distributed
    # builds its groups over the whole world (collective), so there every rank builds an
    # engine and keeps it synced; the other SP ranks' engines never sample.
    every_rank = layout.world_size > 1 and choose_engine(cfg.rollout.engine, policy) == "vllm"
    engine = (build_engine(cfg.rollout, policy, seed=cfg.run.seed, dtype=cfg.model.compute_dtype)
              if layout.sp_rank == 0 or every_rank else None)
    videos = StepVideoCache(policy, reuse=cfg.train.cache_video_embeds, sp_group=layout.sp_group)
    sampler = EpochSampler(len(train), cfg.run.seed)
    start, logger = start_or_resume(out, resume, model=policy, optimizer=optimizer, scheduler=scheduler,
                                    sampler=sampler, tensorboard=cfg.run.tensorboard, layout=layout)
    if engine is not None:  # a resumed run's weights, or the fresh ones, into the engine
        engine.sync_weights(policy)
    timer = StepTimer()
    bad_steps = 0
    run_reward_errors = [0, 0]  # [failed, scored] over this process's part of the run, all DP ranks

    # --- loop -------------------------------------------------------------------------
    bar = tqdm(range(start, cfg.run.steps), desc="rl", disable=not (cfg.run.progress and main),
               initial=start, total=cfg.run.steps)
    for step in bar:
        videos.new_step()
        calls_before = videos.encoder_calls
        items, samples, reward_errors, dropped_groups, passed_over = [], [], 0, 0, 0
        last_reward_error = None
        draw = cfg.train.prompts_per_step  # per rank, the same on every rank
        for _round in range(1 + (MAX_REFILL_ROUNDS if cfg.algo.dapo else 0)):
            want = cfg.train.prompts_per_step - len(items)
            passed_over += draw - want
            with timer.block("data"):
                new_items = _load_prompts(train, sampler, draw, policy, layout, use=want)
            if videos.reuse:  # MR-SP: each prompt's video encoded once, here, for the whole step
                with timer.block("encode"):
                    for it in new_items:
                        videos.get(it.record.problem_id, it.clip)
            with timer.block("rollout"):
                new_samples = _rollout(engine, policy, videos, new_items, cfg, seed=_step_seed(cfg, step, _round),
                                       offset=len(items), layout=layout)
            with timer.block("reward"):
                for s in new_samples:
                    err = _score(s, new_items[s.prompt - len(items)].record, accuracy_fn, cfg)
                    if err is not None:
                        reward_errors, last_reward_error = reward_errors + 1, err
            if cfg.algo.dapo and new_items:  # (none: this rank is full while another refills)
                before = len(new_items)
                new_items, new_samples = _drop_uniform_groups(new_items, new_samples, offset=len(items))
                dropped_groups += before - len(new_items)
            items += new_items
            samples += new_samples
            if not cfg.algo.dapo:
                break
            # A DAPO refill is per rank; every DP rank draws the largest deficit, so the one
            # shared data position advances alike everywhere (a rank needing fewer uses less).
            draw = int(dp_max([cfg.train.prompts_per_step - len(items)], layout)[0])
            if draw == 0:
                break  # every rank is full
        if cfg.algo.dapo:  # drawn but unused because another DP rank refilled more, all ranks
            passed_over = int(dp_sum([passed_over], layout)[0])
        # the reward function's failures over the run, every DP rank's: all ranks stop together
        step_errors = [int(v) for v in dp_sum([reward_errors, len(samples)], layout)]
        run_reward_errors = [a + b for a, b in zip(run_reward_errors, step_errors, strict=True)]
        if run_reward_errors[0] > cfg.algo.max_reward_error_fraction * run_reward_errors[1]:
            raise RewardBudgetExceeded(
                f"the reward function failed on {run_reward_errors[0]} of {run_reward_errors[1]} samples so far "
                f"(> algo.max_reward_error_fraction={cfg.algo.max_reward_error_fraction}); last error: "
                f"{last_reward_error or 'on another rank'} ({cfg.algo.reward_fn or 'the accuracy reward'})")
        fewest = int(dp_min([len(samples)], layout)[0])  # all ranks raise together
        if fewest == 0:
            where = "this rank" if layout.dp_group is None else "a data-parallel rank"
            raise RuntimeError(f"rl step {step + 1}: {where} has no usable samples (all groups dropped or "
                               "skipped); more prompts per step or fewer unreadable videos")

        with timer.block("advantage"):
            rewards = torch.tensor([s.reward for s in samples])
            groups = torch.tensor([s.prompt for s in samples])
            advantages = _advantages(rewards, groups, cfg.algo.advantage)  # [N]
            # groups whose rewards differ: the only ones that carry a learning signal
            mixed_groups = groups[adv_fns.dapo_keep_mask(rewards, groups)].unique().numel()

        with timer.block("logprob"):
            old_logp = _score_samples(policy, videos, items, samples, cfg.train.micro_batch, layout)
            ref_logp = (_score_samples(reference, videos, items, samples, cfg.train.micro_batch, layout)
                        if reference is not None else None)

        with timer.block("update"):
            policy.train()
            update = _update(policy, optimizer, videos, items, samples, advantages, old_logp, ref_logp, cfg,
                             layout, min(cfg.train.mini_batches, fewest))
            policy.eval()
        if not math.isfinite(update["loss"]):
            bad_steps += 1
            log.warning("rl step %d: non-finite loss; update skipped (%d in a row)", step + 1, bad_steps)
            if bad_steps >= cfg.run.max_bad_steps:
                raise RuntimeError(f"rl: {bad_steps} non-finite losses in a row at step {step + 1}; stopping")
        else:
            bad_steps = 0
            scheduler.step()
        if engine is not None:
            with timer.block("sync"):
                engine.sync_weights(policy)

        # --- log / save / eval ---------------------------------------------------------
        metrics = {
            **_sample_metrics(samples, old_logp, groups, mixed_groups, layout),
            "reward/errors": float(step_errors[0]),
            **dict(zip(("video/encoder_calls", "data/prompts", "data/dropped_groups"),
                       dp_sum([videos.encoder_calls - calls_before, len(items), dropped_groups], layout), strict=True)),
            "data/passed_over": float(passed_over),
            "data/decode_failures": float(ledger.totals[0]),  # all DP ranks, this run
            "data/malformed_lines": float(train.malformed),  # refused when the split was read
            "lr": scheduler.get_last_lr()[0], **update, **timer.pop(), **peak_memory(),
        }
        save_now = (step + 1) % cfg.run.save_every == 0 or step + 1 == cfg.run.steps
        gathered = gather_checkpoint(policy, optimizer) if save_now else None  # collective
        if not main:  # weights are identical on every rank; rank 0 evaluates, logs and saves
            continue
        if held_out is not None and cfg.run.eval_every and (step + 1) % cfg.run.eval_every == 0:
            metrics.update(evaluate_run(policy, held_out, cfg.run))
        if (step + 1) % cfg.run.log_every == 0:
            logger.log(step + 1, metrics)
        bar.set_postfix(reward=f"{metrics['reward/mean']:.3f}", acc=f"{metrics['reward/accuracy']:.2f}")
        if save_now:
            save_step(out, step + 1, policy, gathered, scheduler=scheduler, sampler=sampler,
                      keep_last=cfg.run.keep_last)

    if engine is not None and hasattr(engine, "close"):
        engine.close()  # vLLM holds memory and process-wide state until closed
    return finish_run(out, policy, layout, logger, held_out, cfg.run)


# --- blocks ------------------------------------------------------------------------------


def _frozen_copy(model: VideoLM, compute_dtype: str | None) -> VideoLM:
    """The reference policy: frozen, and stored in the compute dtype when the policy keeps
    fp32 master weights (it never trains, and autocast would cast it so anyway)."""
    ref = copy.deepcopy(model).eval()
    if compute_dtype is not None:
        ref.to(getattr(torch, compute_dtype))
    for p in ref.parameters():
        p.requires_grad_(False)
    return ref


def _step_seed(cfg: RLConfig, step: int, round_: int) -> int:
    # Sampling randomness is a function of (run seed, step, round), so a resumed run draws
    # exactly what an uninterrupted one would.
    return (cfg.run.seed * 1_000_003 + step) * 8 + round_


def _load_prompts(train: VideoQADataset, sampler: EpochSampler, draw: int, model: VideoLM,
                  layout: Layout, use: int) -> list[PromptItem]:
    """This DP rank's share of `draw` prompts per rank, of which it loads the first `use`.
    Every rank draws the same global list from an identically seeded sampler, so the data
    position is one state for all ranks; prompts drawn but not used are passed over."""
    items = []
    drawn = sampler.take(draw * layout.dp_size)
    first = layout.dp_rank * draw
    for position, i in enumerate(drawn[first : first + use], start=first):
        rec = train.records[i]
        clip = train.load_frames(rec)
        if clip is not None:
            items.append(PromptItem(rec, clip, model.chat_prompt_ids(question_text(rec)), position))
    train.ledger.check(reduce=dp_summer(layout))  # collective: every rank judges the global share
    return items


def _prompt_embeds(model: VideoLM, videos: StepVideoCache, item: PromptItem) -> PromptEmbeds:
    return model.build_prompt(item.input_ids, videos.get(item.record.problem_id, item.clip))


def _rollout(engine: RolloutEngine | None, model: VideoLM, videos: StepVideoCache, items: list[PromptItem],
             cfg: RLConfig, seed: int, offset: int, layout: Layout) -> list[Sample]:
    """G responses per prompt. Under SP, the group's first rank samples and broadcasts, so
    every rank of the group trains on the same samples in the same order."""
    if not items:  # the same on every rank of an SP group: they share the DP rank's prompts
        return []
    r = cfg.rollout
    n = r.n
    with torch.no_grad():
        # A prompt's randomness is keyed by its place in the global draw, so DP ranks sample
        # what one process would; the baseline's n one-sample prompts take the cached
        # run's row keys (key x n + sample), so both sample alike.
        if videos.reuse:  # one prompt (one encoding) per item, n samples each
            prompts = [_prompt_embeds(model, videos, it) for it in items]
            keys = tuple(it.position for it in items)
            per_prompt = n
        else:  # baseline: every rollout encodes the video again
            prompts = [_prompt_embeds(model, videos, it) for it in items for _ in range(n)]
            keys = tuple(it.position * n + s for it in items for s in range(n))
            per_prompt = 1
        sampling = SamplingConfig(n=per_prompt, temperature=r.temperature, top_p=r.top_p,
                                  max_new_tokens=r.max_new_tokens, seed=seed, prompt_keys=keys)
        outs = engine.generate(prompts, sampling) if layout.sp_rank == 0 else None
        if layout.sp_group is not None:
            box = [outs]
            dist.broadcast_object_list(box, src=layout.dp_rank * layout.sp_size, group=layout.sp_group)
            outs = box[0]
        owners = [o.prompt_index // (n // per_prompt) for o in outs]
    return [
        Sample(offset + k, o.token_ids, o.logprobs,
               model.tokenizer.decode(o.token_ids, skip_special_tokens=True))
        for k, o in zip(owners, outs, strict=True)
    ]


class RewardBudgetExceeded(HarnessError, RuntimeError):
    """The reward function failed on more of the run's samples than algo.max_reward_error_fraction."""


def _score(sample: Sample, record: Record, accuracy_fn, cfg: RLConfig) -> str | None:
    """Fill the sample's reward; returns the reward function's error (reward 0) or None."""
    acc, err = safe_reward(accuracy_fn, sample.text, record.answer, record.problem_type)
    sample.accuracy = float(acc)
    sample.format = format_reward(sample.text)
    sample.reward = cfg.algo.acc_weight * sample.accuracy + cfg.algo.format_weight * sample.format
    if err is not None:
        log.warning("reward function failed on %s: %s", record.problem_id, err)
        sample.reward = 0.0
    return err


def _drop_uniform_groups(items: list[PromptItem], samples: list[Sample], offset: int):
    groups = torch.tensor([s.prompt for s in samples])
    keep = adv_fns.dapo_keep_mask(torch.tensor([s.reward for s in samples]), groups)
    kept_groups = sorted({s.prompt for s, k in zip(samples, keep.tolist(), strict=True) if k})
    renumber = {g: offset + j for j, g in enumerate(kept_groups)}
    new_items = [items[g - offset] for g in kept_groups]
    new_samples = []
    for s, k in zip(samples, keep.tolist(), strict=True):
        if k:
            s.prompt = renumber[s.prompt]
            new_samples.append(s)
    return new_items, new_samples


def _sample_metrics(samples: list[Sample], old_logp: torch.Tensor, groups: torch.Tensor, mixed_groups: int,
                    layout: Layout) -> dict[str, float]:
    """The step's per-sample statistics over every DP rank's samples, as one process
    sampling the whole draw would log them (collective under DP)."""
    rewards = torch.tensor([s.reward for s in samples], dtype=torch.float64)
    lengths = [s.tokens.shape[0] for s in samples]
    diffs = torch.cat([(s.engine_logp - old_logp[i, : s.tokens.shape[0]].cpu()).abs()
                       for i, s in enumerate(samples)])  # [tokens]: engine vs trainer log-probs
    n, r_sum, r_sq, acc, fmt, length, d_sum, d_count, mixed, n_groups = dp_sum(
        [len(samples), rewards.sum(), (rewards**2).sum(), sum(s.accuracy for s in samples),
         sum(s.format for s in samples), sum(lengths), diffs.sum(), diffs.numel(), mixed_groups,
         groups.unique().numel()], layout)
    len_max, d_max = dp_max([max(lengths), diffs.max()], layout)
    variance = max(r_sq - r_sum * r_sum / n, 0.0) / (n - 1) if n > 1 else 0.0  # unbiased, as torch.std
    return {
        "reward/mean": r_sum / n, "reward/std": math.sqrt(variance), "reward/accuracy": acc / n,
        "reward/format_rate": fmt / n, "reward/mixed_groups": mixed / n_groups,
        "response/length_mean": length / n, "response/length_max": len_max,
        "rollout/logp_diff_max": d_max, "rollout/logp_diff_mean": d_sum / d_count,
    }


def _advantages(rewards: torch.Tensor, groups: torch.Tensor, kind: str) -> torch.Tensor:
    if kind == "rloo":
        return adv_fns.rloo_advantages(rewards, groups)
    return adv_fns.grpo_advantages(rewards, groups, scale_by_std=kind == "grpo")


def _chunks(n: int, size: int) -> list[range]:
    return [range(i, min(i + size, n)) for i in range(0, n, size)]


def _split(n: int, parts: int) -> list[range]:
    """Exactly `parts` contiguous ranges covering 0..n, sizes differing by at most one
    (every DP rank must run the same number of mini-batches; n >= parts)."""
    bounds = [n * i // parts for i in range(parts + 1)]
    return [range(a, b) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]


def _stand_in_passes(model: VideoLM, chunks: list[range], layout: Layout) -> int:
    """How many extra training passes this rank must run so that all DP ranks run the same
    number: under ZeRO-2/3 every training forward/backward is a collective (parameter
    all-gather, gradient reduce-scatter; harness/parallel/sharding.py), and a DP rank with
    fewer samples (unreadable videos, DAPO refills) would otherwise fail the others'
    collectives. The extra passes repeat this rank's first micro-batch with weight 0.
    Collective when sharded."""
    if layout.dp_group is None or not sharding.is_sharded(model):
        return 0
    return int(dp_max([len(chunks)], layout)[0]) - len(chunks)


def _score_samples(model: VideoLM, videos: StepVideoCache, items: list[PromptItem], samples: list[Sample],
                   micro: int, layout: Layout) -> torch.Tensor:
    """Log-probs [N, R_max] of every sample's response under `model` (no grad); the
    sequence is split across the SP group when there is one (MR-SP stage 2)."""
    r_max = max(s.tokens.shape[0] for s in samples)
    out = torch.zeros(len(samples), r_max, device=model.device)
    with torch.no_grad():  # no collectives under ZeRO-2/3: weights are gathered for no-grad passes
        for idx in _chunks(len(samples), micro):
            prompts = [_prompt_embeds(model, videos, items[samples[i].prompt]) for i in idx]
            batch = pack_sequences(model, prompts, [samples[i].tokens for i in idx])
            if layout.sp_group is None:
                logp = response_logprobs(model, batch)  # [b, R]
            else:
                logp = batch.response_values(sp_token_logprobs(model, batch, layout.sp_group))
            out[idx.start : idx.stop, : logp.shape[1]] = logp
    return out


def _policy_logprobs(policy: VideoLM, batch, layout: Layout) -> tuple[torch.Tensor, torch.Tensor]:
    """Differentiable response log-probs [b, R] and the mask of the tokens this rank owns.

    Under SP each rank scores only the positions of its sequence slice: the other
    tokens are zero here and masked out, and the losses of the ranks add up to the
    full loss (their gradients are summed across the group after backward)."""
    if layout.sp_group is None:
        return response_logprobs(policy, batch), batch.response_mask
    local, start, _ = sp_local_logprobs(policy, batch, layout.sp_group)  # [b, Lc]
    total = padded_length(batch.targets.shape[1], layout.sp_size)
    full = F.pad(local, (start, total - start - local.shape[1]))  # [b, L_pad], zeros off-slice
    owned = (batch.response_index >= start) & (batch.response_index < start + local.shape[1])
    return full.gather(1, batch.response_index), batch.response_mask & owned


def _update(policy: VideoLM, optimizer, videos: StepVideoCache, items: list[PromptItem], samples: list[Sample],
            advantages: torch.Tensor, old_logp: torch.Tensor, ref_logp: torch.Tensor | None,
            cfg: RLConfig, layout: Layout, n_mini: int) -> dict[str, float]:
    """Policy update over `n_mini` mini-batches (the same number on every DP rank: at most
    the fewest samples any rank has); returns averaged stats.

    Loss normalisers (token and sequence counts) are global over the DP group, and
    gradients are summed over all ranks, so the update equals the single-process one.
    The logged stats are the whole step's, as one process would log them: `loss` summed
    over ranks (each rank's part is already normalised by the global counts) and averaged
    over mini-batches; KL, entropy and the clip fractions as token means over every rank's
    response tokens (a rank may hold none of a sequence's tokens under SP)."""
    a = cfg.algo
    lengths = torch.tensor([s.tokens.shape[0] for s in samples])
    mask_all = torch.arange(old_logp.shape[1])[None] < lengths[:, None]  # [N, R]
    stats: dict[str, list[float]] = {}
    token_sums: dict[str, float] = {"tokens": 0.0}  # per-token stats x tokens, summed
    loss_sum = 0.0
    for mini in _split(len(samples), n_mini):
        counts = dp_sum([float(mask_all[mini.start : mini.stop].sum()), len(mini)], layout)
        n_tokens, n_seqs = int(counts[0]), int(counts[1])
        chunks = _chunks(mini.stop - mini.start, cfg.train.micro_batch)
        stand_ins = _stand_in_passes(policy, chunks, layout)
        for j, idx in enumerate(chunks + chunks[:1] * stand_ins):
            stand_in = j >= len(chunks)  # no gradient (weight 0), no stats
            rows = range(mini.start + idx.start, mini.start + idx.stop)
            prompts = [_prompt_embeds(policy, videos, items[samples[i].prompt]) for i in rows]
            batch = pack_sequences(policy, prompts, [samples[i].tokens for i in rows])
            logp, mask = _policy_logprobs(policy, batch, layout)  # [b, R]
            width = logp.shape[1]
            old = old_logp[rows.start : rows.stop, :width]
            adv = advantages[rows.start : rows.stop, None].to(logp.device).expand(-1, width)  # [b, R]
            loss, pg = policy_loss(logp, old, adv, mask, clip_low=a.clip_low, clip_high=a.clip_high,
                                   dual_clip=a.dual_clip, agg=a.loss_agg, num_tokens=n_tokens, num_seqs=n_seqs)
            if ref_logp is not None:
                ref = ref_logp[rows.start : rows.stop, :width]
                loss = loss + a.kl_coef * kl_loss(logp, ref, mask, kind=a.kl_kind, agg=a.loss_agg,
                                                  num_tokens=n_tokens, num_seqs=n_seqs)
            if stand_in:
                (loss * 0.0).backward()
                continue
            loss.backward()
            loss_sum += loss.item()
            tokens = float(mask.sum())
            if tokens == 0:  # this rank's slice holds none of these responses' tokens
                continue
            token_sums["tokens"] += tokens
            with torch.no_grad():
                per_token = {f"pg/{k}": pg[k] for k in ("clip_frac", "dual_clip_frac", "approx_kl")}
                # Mean -log p of the sampled tokens: a Monte Carlo estimate of the policy's
                # entropy (unbiased for on-policy samples at temperature 1), at no extra cost.
                per_token["entropy"] = float(-masked_mean(logp, mask))
                if ref_logp is not None:
                    per_token["kl"] = float(masked_mean(kl_estimate(logp, ref, a.kl_kind), mask))
            for k, v in per_token.items():
                token_sums[k] = token_sums.get(k, 0.0) + v * tokens
        grad_norm = reduce_and_clip(policy, layout, cfg.optim.grad_clip)
        _add(stats, "grad_norm", grad_norm)
        if math.isfinite(grad_norm):
            optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if sharding.is_sharded(policy):
            sharding.after_step(policy)  # all-gather the new values (collective)
    # the same names on every rank (one may have held no tokens), in the same order
    per_token_names = ["pg/clip_frac", "pg/dual_clip_frac", "pg/approx_kl", "entropy"]
    per_token_names += ["kl"] if ref_logp is not None else []
    names = ["loss", *per_token_names, "tokens"]
    # every rank's share (collective: every rank runs the update)
    totals = world_sum([loss_sum, *(token_sums.get(k, 0.0) for k in names[1:])], layout)
    out = {"loss": totals[0] / n_mini, "grad_norm": sum(stats["grad_norm"]) / len(stats["grad_norm"])}
    tokens = totals[-1]
    out.update({k: v / tokens if tokens else 0.0 for k, v in zip(names[1:-1], totals[1:-1], strict=True)})
    return out


def _add(stats: dict[str, list[float]], key: str, value: float) -> None:
    stats.setdefault(key, []).append(value)
