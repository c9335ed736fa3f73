"""Stage 1 of the paper: chain-of-thought SFT.

    harness sft --config configs/sft/toy-cpu.yaml [key=value ...] [--resume]
    torchrun --nproc_per_node 8 -m harness sft --config ... parallel.dp_size=8 parallel.zero_stage=3

Data parallel: every rank draws the same global batch (batch_size x grad_accum x dp_size
examples) and trains on its share; the loss is normalised by the global token count and
the gradients summed, so the update equals the single-process one on the whole batch.

Each example is [chat prompt with the video | <think>reasoning</think><answer>X</answer>
<|im_end|>]; the loss is the token-mean negative log-likelihood of the response only.
The vision tower is frozen by default and the projector trained (`train.freeze_vision`,
`train.freeze_projector`); when both are frozen the video embeddings carry no gradient.

Deviation from the paper: the paper's CoT-SFT data are 18K reasoning traces from a strong
LLM; at toy scale the traces are the synthetic tasks' templated reasoning.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np
import torch.distributed as dist
import yaml
from tqdm import tqdm

from harness.config import SFTConfig, to_dict
from harness.data.dataset import EpochSampler, SkipLedger, VideoQADataset, question_text, sft_target
from harness.parallel import sharding
from harness.parallel.groups import Layout, build_layout
from harness.parallel.reduce import dp_sum, dp_summer
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
    response_ids,
    save_step,
    seed_everything,
    sharding_units,
    start_or_resume,
)
from harness.trainer.evaluate import evaluate_run
from harness.trainer.metrics import StepTimer, peak_memory

log = logging.getLogger(__name__)


def _frame_counts(cfg: SFTConfig, step: int, k: int) -> list[int]:
    """Frames per example of this step: data.num_frames, or with data.min_frames > 0 a
    uniform draw from [min_frames, num_frames] that depends only on (seed, step)."""
    if not cfg.data.min_frames:
        return [cfg.data.num_frames] * k
    rng = np.random.default_rng([cfg.run.seed, step])
    return [int(n) for n in rng.integers(cfg.data.min_frames, cfg.data.num_frames + 1, size=k)]


def train_sft(cfg: SFTConfig, resume: bool = False) -> dict[str, float]:
    with compute_precision(cfg.model):  # bf16 autocast over fp32 master weights, if configured
        return _train_sft(cfg, resume)


def _train_sft(cfg: SFTConfig, resume: bool) -> dict[str, float]:
    # --- setup ------------------------------------------------------------------------
    layout = build_layout(cfg.parallel.dp_size, 1)  # SFT is data parallel only
    main = layout.rank == 0
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
    model = build_model(cfg.model)
    check_frame_counts(model, cfg.data)
    model.set_trainable(vision=not cfg.train.freeze_vision, projector=not cfg.train.freeze_projector)
    zero = cfg.parallel.zero_stage == 1 and layout.world_size > 1
    sharded = cfg.parallel.zero_stage >= 2  # ZeRO-2/3 with FSDP2 (harness/parallel/sharding.py)
    if sharded:
        sharding.shard_model(model, sharding_units(model), cfg.parallel.zero_stage)
    optimizer, scheduler = build_optimizer(model, cfg.optim, zero_group=dist.group.WORLD if zero else None,
                                           total_steps=cfg.run.steps)
    sampler = EpochSampler(len(train), cfg.run.seed)
    start, logger = start_or_resume(out, resume, model=model, optimizer=optimizer, scheduler=scheduler,
                                    sampler=sampler, tensorboard=cfg.run.tensorboard, layout=layout)
    per_rank = cfg.train.batch_size * cfg.train.grad_accum
    timer = StepTimer()
    bad_steps = 0

    # --- loop -------------------------------------------------------------------------
    bar = tqdm(range(start, cfg.run.steps), desc="sft", disable=not (cfg.run.progress and main),
               initial=start, total=cfg.run.steps)
    for step in bar:
        model.train()
        with timer.block("data"):
            # The global batch is drawn identically on every rank; each takes its share.
            ids = sampler.take(per_rank * layout.dp_size)
            counts = _frame_counts(cfg, step, len(ids))
            mine = range(layout.dp_rank * per_rank, (layout.dp_rank + 1) * per_rank)
            micros = [_load(train, ids, counts, mine[lo : lo + cfg.train.batch_size])
                      for lo in range(0, per_rank, cfg.train.batch_size)]
            ledger.check(reduce=dp_summer(layout))  # collective: all ranks stop together
            targets = [[response_ids(model.tokenizer, sft_target(r), model.end_of_turn_id) for r, _ in m] for m in micros]
            totals = dp_sum([sum(t.shape[0] for ts in targets for t in ts), sum(len(m) for m in micros)], layout)
        total_tokens, total_examples = int(totals[0]), int(totals[1])
        loss_sum = 0.0
        for micro, micro_targets in zip(micros, targets, strict=True):
            weight = 1.0
            if not micro:  # every record of this micro-batch was unreadable
                if not sharded:
                    continue
                # FSDP's collectives run inside forward/backward: every rank must run the
                # same number of them, so this rank runs one example at weight 0.
                micro, micro_targets, weight = _stand_in(micros, targets, layout, step)
            with timer.block("encode"):
                videos = [model.encode_frames(c.frames, c.timestamps, c.frame_seconds) for _, c in micro]
            with timer.block("forward"):
                prompts = [model.build_prompt(model.chat_prompt_ids(question_text(r)), v)
                           for (r, _), v in zip(micro, videos, strict=True)]
                batch = pack_sequences(model, prompts, micro_targets)
                logp = response_logprobs(model, batch)  # [B, R]
                # normalised by the global token count: the ranks' gradients sum to the
                # single-process gradient of the whole batch
                loss = -(logp * batch.response_mask).sum() / max(total_tokens, 1) * weight
            with timer.block("backward"):
                loss.backward()
            loss_sum += loss.item()
        with timer.block("optim"):
            grad_norm = reduce_and_clip(model, layout, cfg.optim.grad_clip)
            loss_sum = dp_sum([loss_sum], layout)[0]
            finite = math.isfinite(loss_sum) and math.isfinite(grad_norm)
            if finite:
                optimizer.step()
                scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            if sharded:
                sharding.after_step(model)  # all-gather the new values (collective)
        if not finite:
            bad_steps += 1
            log.warning("sft step %d: non-finite loss %s / grad norm %s; step skipped (%d in a row)",
                        step + 1, loss_sum, grad_norm, bad_steps)
            if bad_steps >= cfg.run.max_bad_steps:
                raise RuntimeError(f"sft: {bad_steps} non-finite losses in a row at step {step + 1}; stopping")
            timer.pop()  # a skipped step's timings must not leak into the next step's
            continue
        bad_steps = 0

        # --- log / save / eval ---------------------------------------------------------
        save_now = (step + 1) % cfg.run.save_every == 0 or step + 1 == cfg.run.steps
        gathered = gather_checkpoint(model, optimizer) if save_now else None  # collective
        if not main:  # weights are identical on every rank; rank 0 evaluates, logs and saves
            continue
        metrics = {"loss": loss_sum, "grad_norm": grad_norm, "lr": scheduler.get_last_lr()[0],
                   "tokens": float(total_tokens), "examples": float(total_examples),
                   "decode_failures": float(ledger.totals[0]), "data/malformed_lines": float(train.malformed), **timer.pop(), **peak_memory()}
        if held_out is not None and cfg.run.eval_every and (step + 1) % cfg.run.eval_every == 0:
            metrics.update(evaluate_run(model, held_out, cfg.run))
        if (step + 1) % cfg.run.log_every == 0:
            logger.log(step + 1, metrics)
        bar.set_postfix(loss=f"{loss_sum:.3f}")
        if save_now:
            save_step(out, step + 1, model, gathered, scheduler=scheduler, sampler=sampler,
                      keep_last=cfg.run.keep_last)

    # --- final ------------------------------------------------------------------------
    return finish_run(out, model, layout, logger, held_out, cfg.run)


def _load(train: VideoQADataset, ids: list[int], counts: list[int], positions: range) -> list:
    """(record, clip) for the batch positions given; unreadable videos are skipped (the
    dataset's ledger counts and logs them)."""
    out = []
    for j in positions:
        rec = train.records[ids[j]]
        clip = train.load_frames(rec, counts[j])
        if clip is not None:
            out.append((rec, clip))
    return out


def _stand_in(micros, targets, layout: Layout, step: int):
    """One loaded example of this rank's share, to run at weight 0 in place of an empty
    micro-batch; an error when the rank loaded none at all."""
    for m, t in zip(micros, targets, strict=True):
        if m:
            return m[:1], t[:1], 0.0
    raise RuntimeError(f"sft step {step + 1}: every record of rank {layout.rank}'s share was unreadable "
                       f"(skipped records are listed in the log); with parallel.zero_stage >= 2 each rank "
                       f"needs at least one readable example per step")
