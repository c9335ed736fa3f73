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

import numpy as np

from harness.config import SFTConfig
from harness.data.dataset import prompt_ids, sft_target
from harness.model.batch import pack_sequences, response_logprobs
from harness.parallel.reduce import dp_sum, dp_summer
from harness.trainer.common import compute_precision, response_ids
from harness.trainer.run import Run, open_run


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
    run = open_run(cfg, resume, "sft")
    run.start(resume)
    for step in run.steps():
        run.model.train()
        with run.timer.block("data"):
            micros, n_tokens, n_examples = _draw(run, step)
        loss = 0.0
        passes = [m for m in micros if m]  # micro-batches whose every video was unreadable drop out
        stand_ins = run.strategy.stand_in_passes(len(passes))  # collective where passes are
        if stand_ins and not passes:
            raise RuntimeError(f"sft step {step + 1}: every record of rank {run.layout.rank}'s share was "
                               f"unreadable (listed in the log); with parallel.zero_stage >= 2 each rank "
                               f"needs at least one readable example per step")
        for micro, weight in [(m, 1.0) for m in passes] + [(passes[0][:1], 0.0)] * stand_ins:
            loss += _backward(run, micro, n_tokens, weight)
        with run.timer.block("optim"):
            loss = dp_sum([loss], run.layout)[0]
            grad_norm = run.update(loss)
        run.end_step(step, {"loss": loss, "grad_norm": grad_norm, "tokens": float(n_tokens),
                            "examples": float(n_examples)}, postfix={"loss": f"{loss:.3f}"})
    return run.finish()


def _draw(run: Run, step: int) -> tuple[list[list], int, int]:
    """This rank's micro-batches of (record, loaded media, target ids) and the step's token
    and example counts over every rank (the loss normalisers). Every rank draws the same
    global batch and takes its share; unreadable media are skipped (counted by the ledger)."""
    cfg, layout, model = run.cfg, run.layout, run.model
    per_rank = cfg.train.batch_size * cfg.train.grad_accum
    ids = run.sampler.take(per_rank * layout.dp_size)
    counts = _frame_counts(cfg, step, len(ids))
    micros = []
    for lo in range(layout.dp_rank * per_rank, (layout.dp_rank + 1) * per_rank, cfg.train.batch_size):
        micro = []
        for j in range(lo, lo + cfg.train.batch_size):
            rec = run.train.records[ids[j]]
            media = run.train.media(rec)
            if all(run.train.load_medium(rec, m, counts[j]) for m in media):
                micro.append((rec, media, response_ids(model.tokenizer, sft_target(rec), model.end_of_turn_id)))
        micros.append(micro)
    run.train.ledger.check(reduce=dp_summer(layout))  # collective: all ranks stop together
    tokens, examples = dp_sum([sum(t.shape[0] for m in micros for _, _, t in m), sum(map(len, micros))], layout)
    return micros, int(tokens), int(examples)


def _backward(run: Run, micro: list, n_tokens: int, weight: float) -> float:
    """Forward and backward of one micro-batch; returns its share of the step's loss. The
    loss is normalised by the step's token count over every rank, so the ranks' gradients
    sum to the single-process gradient of the whole batch. Weight 0: a stand-in pass."""
    model = run.model
    with run.timer.block("encode"):
        encoded = [[model.encode_medium(m.kind, m.data) for m in media] for _, media, _ in micro]
    with run.timer.block("forward"):
        prompts = [model.build_prompt(prompt_ids(model, r, m), e)
                   for (r, m, _), e in zip(micro, encoded, strict=True)]
        batch = pack_sequences(model, prompts, [t for _, _, t in micro], run.cfg.train.padding_free)
        logp = response_logprobs(model, batch)  # [B, R]
        loss = -(logp * batch.response_mask).sum() / max(n_tokens, 1) * weight
    with run.timer.block("backward"):
        loss.backward()
    return loss.item()
