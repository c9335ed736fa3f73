"""Stage 1 of the paper: chain-of-thought SFT.

    harness sft --config configs/sft/toy-cpu.yaml [key=value ...] [--resume]

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
import torch
import yaml
from tqdm import tqdm

from harness.config import SFTConfig, to_dict
from harness.data.dataset import EpochSampler, SkipLedger, VideoQADataset, question_text, sft_target
from harness.trainer.batch import pack_sequences, response_logprobs
from harness.trainer.checkpoint import save_checkpoint
from harness.trainer.common import (
    build_model,
    build_optimizer,
    compute_precision,
    prepare_data,
    response_ids,
    seed_everything,
    start_or_resume,
)
from harness.trainer.evaluate import evaluate_accuracy
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
    out = Path(cfg.run.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.yaml").write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))
    seed_everything(cfg.run.seed)
    root = prepare_data(cfg.data)
    ledger = SkipLedger(cfg.data.max_skip_fraction)
    train = VideoQADataset(root / cfg.data.train, cfg.data.num_frames, ledger)
    held_out = VideoQADataset(root / cfg.data.eval, cfg.data.num_frames, ledger) if cfg.data.eval else None
    model = build_model(cfg.model)
    model.set_trainable(vision=not cfg.train.freeze_vision, projector=not cfg.train.freeze_projector)
    optimizer, scheduler = build_optimizer(model, cfg.optim)
    sampler = EpochSampler(len(train), cfg.run.seed)
    start, logger = start_or_resume(out, resume, model=model, optimizer=optimizer, scheduler=scheduler,
                                    sampler=sampler, tensorboard=cfg.run.tensorboard)
    timer = StepTimer()
    bad_steps = 0

    # --- loop -------------------------------------------------------------------------
    bar = tqdm(range(start, cfg.run.steps), desc="sft", disable=not cfg.run.progress,
               initial=start, total=cfg.run.steps)
    for step in bar:
        model.train()
        with timer.block("data"):
            records = [train.records[i] for i in sampler.take(cfg.train.batch_size * cfg.train.grad_accum)]
            counts = _frame_counts(cfg, step, len(records))
            examples = [(r, c) for r, n in zip(records, counts, strict=True)
                        if (c := train.load_frames(r, n)) is not None]
            ledger.check(sampler.epoch * len(train) + sampler.pos)
            targets = [response_ids(model.tokenizer, sft_target(r)) for r, _ in examples]
        total_tokens = sum(t.shape[0] for t in targets)
        loss_sum = 0.0
        for lo in range(0, len(examples), cfg.train.batch_size):
            micro = examples[lo : lo + cfg.train.batch_size]
            micro_targets = targets[lo : lo + cfg.train.batch_size]
            with timer.block("encode"):
                videos = [model.encode_frames(c.frames, c.timestamps) for _, c in micro]
            with timer.block("forward"):
                prompts = [model.build_prompt(model.chat_prompt_ids(question_text(r)), v)
                           for (r, _), v in zip(micro, videos, strict=True)]
                batch = pack_sequences(model, prompts, micro_targets)
                logp = response_logprobs(model, batch)  # [B, R]
                loss = -(logp * batch.response_mask).sum() / total_tokens
            with timer.block("backward"):
                loss.backward()
            loss_sum += loss.item()
        with timer.block("optim"):
            grad_norm = float(torch.nn.utils.clip_grad_norm_(
                [p for p in model.parameters() if p.requires_grad], cfg.optim.grad_clip))
            finite = math.isfinite(loss_sum) and math.isfinite(grad_norm)
            if finite:
                optimizer.step()
                scheduler.step()
            optimizer.zero_grad(set_to_none=True)
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
        metrics = {"loss": loss_sum, "grad_norm": grad_norm, "lr": scheduler.get_last_lr()[0],
                   "tokens": float(total_tokens), "examples": float(len(examples)),
                   "skipped_total": float(len(ledger.skipped)), **timer.pop(), **peak_memory()}
        if held_out is not None and cfg.run.eval_every and (step + 1) % cfg.run.eval_every == 0:
            metrics.update(evaluate_accuracy(model, held_out, cfg.run.eval_max_new_tokens))
        if (step + 1) % cfg.run.log_every == 0:
            logger.log(step + 1, metrics)
        bar.set_postfix(loss=f"{loss_sum:.3f}")
        if (step + 1) % cfg.run.save_every == 0 or step + 1 == cfg.run.steps:
            save_checkpoint(out, step + 1, model=model, optimizer=optimizer, scheduler=scheduler,
                            data_state=sampler.state(), keep_last=cfg.run.keep_last)

    # --- final ------------------------------------------------------------------------
    final = {}
    if held_out is not None:
        final = evaluate_accuracy(model, held_out, cfg.run.eval_max_new_tokens)
        logger.log(cfg.run.steps, final)
    model.save_pretrained(out / "final")
    logger.close()
    return final
