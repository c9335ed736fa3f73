"""The learning blocks of an RL step: advantages, log-probs of the samples under the old
policy and the reference (reusing the step's cached video embeddings), the policy update
(mini-batches of micro-batches), and the step's sample statistics over every rank."""

from __future__ import annotations

import math

import torch

from harness.algos import advantages as adv_fns
from harness.algos.kl import kl_estimate, kl_loss
from harness.algos.losses import masked_mean, policy_loss
from harness.config import AlgoConfig
from harness.model.batch import pack_groups, response_logprobs
from harness.model.interface import VideoLM
from harness.model.sp import sp_local_logprobs, sp_response_logprobs
from harness.parallel.groups import Layout
from harness.parallel.reduce import dp_max, dp_sum, world_sum
from harness.trainer.rl_collect import Sample, group_ids, prompt_embeds
from harness.trainer.run import Run
from harness.trainer.videos import StepVideoCache
from harness.types import SequenceBatch

PER_TOKEN_STATS = ("pg/clip_frac", "pg/dual_clip_frac", "pg/approx_kl", "entropy")


def advantages(samples: list[Sample], old_logp: torch.Tensor, ref_logp: torch.Tensor | None, a: AlgoConfig,
               layout: Layout) -> tuple[torch.Tensor, dict[str, float]]:
    """Token advantages [N, R_max] from the samples' rewards (`algo.advantage`), with the KL
    to the reference as a reward penalty when `algo.kl_in_reward` (then also its mean per
    token over every DP rank, logged as `kl`). GRPO-style estimators normalise within each
    prompt's group (all on one rank); REINFORCE++ whitens over the whole batch, every rank's."""
    rewards = torch.tensor([s.reward for s in samples])  # [N]
    mask = _response_mask(samples, old_logp.shape[1])  # [N, R]
    stats = {}
    kl = None
    if a.kl_in_reward:
        kl = torch.where(mask, kl_estimate(old_logp.cpu(), ref_logp.cpu(), a.kl_kind), 0.0)  # [N, R]
        total, tokens = dp_sum([kl.sum(), mask.sum()], layout)
        stats["kl"] = total / tokens
    if a.advantage == "reinforce_pp":
        adv, _ = adv_fns.reinforce_pp_advantages(rewards, mask, kl=kl, kl_coef=a.kl_coef,
                                                 reduce=lambda v: dp_sum(v, layout))
        return adv, stats
    scores = rewards if kl is None else rewards - a.kl_coef * kl.sum(dim=1)  # [N]
    groups = group_ids(samples)
    if a.advantage == "rloo":
        per_sample = adv_fns.rloo_advantages(scores, groups)
    else:
        per_sample = adv_fns.grpo_advantages(scores, groups, scale_by_std=a.advantage == "grpo")
    return adv_fns.broadcast_to_tokens(per_sample, mask), stats


def _response_mask(samples: list[Sample], width: int) -> torch.Tensor:
    lengths = torch.tensor([s.tokens.shape[0] for s in samples])
    return torch.arange(width)[None] < lengths[:, None]  # [N, R]


def score_samples(model: VideoLM, videos: StepVideoCache, samples: list[Sample], micro: int,
                  layout: Layout, share_prefix: bool, padding_free: bool = False) -> torch.Tensor:
    """Log-probs [N, R_max] of every sample's response under `model` (no grad); the
    sequence is split across the SP group when there is one (MR-SP stage 2)."""
    r_max = max(s.tokens.shape[0] for s in samples)
    out = torch.zeros(len(samples), r_max, device=model.device)
    with torch.no_grad():  # no collectives under ZeRO-2/3: weights are gathered for no-grad passes
        for idx in _chunks(len(samples), micro):
            batch = pack_samples(model, videos, samples, idx, share_prefix, padding_free)
            if layout.sp_group is None:
                logp = response_logprobs(model, batch)  # [b, R]
            else:
                logp = sp_response_logprobs(model, batch, layout.sp_group)
            out[idx.start : idx.stop, : logp.shape[1]] = logp
    return out


def pack_samples(model: VideoLM, videos: StepVideoCache, samples: list[Sample], rows: range,
                 share_prefix: bool, padding_free: bool = False) -> SequenceBatch:
    """The samples `rows` packed for one pass, in their order: with `share_prefix`, each run
    of consecutive samples answering the same prompt shares one group (one copy of the
    prompt and its video); otherwise one group per sample. Groups are padded rows, or with
    `padding_free` one unpadded row."""
    runs: list[list[int]] = []
    for i in rows:
        if share_prefix and runs and samples[runs[-1][0]].item is samples[i].item:
            runs[-1].append(i)
        else:
            runs.append([i])
    prompts = [prompt_embeds(model, videos, samples[run[0]].item) for run in runs]
    return pack_groups(model, prompts, [[samples[i].tokens for i in run] for run in runs], padding_free)


def update(run: Run, videos: StepVideoCache, samples: list[Sample], adv: torch.Tensor, old_logp: torch.Tensor,
           ref_logp: torch.Tensor | None, n_mini: int) -> dict[str, float]:
    """Policy update over `n_mini` mini-batches, one optimizer update each (the same number
    on every DP rank: at most the fewest samples any rank has); returns the step's stats.

    Loss normalisers (token and sequence counts) are global over the DP group and gradients
    are summed over all ranks, so the update equals the single-process one. The stats are the
    whole step's, as one process would log them: `loss` summed over ranks and averaged over
    mini-batches, `grad_norm` averaged over updates; KL, entropy and clip fractions as token
    means over every rank's response tokens (a rank may hold none of a sequence's under SP)."""
    layout, micro = run.layout, run.cfg.train.micro_batch
    mask_all = _response_mask(samples, old_logp.shape[1])  # [N, R]
    sums = dict.fromkeys([*PER_TOKEN_STATS, "kl", "tokens"], 0.0)  # per-token stats x tokens
    losses, norms = [], []
    for mini in _split(len(samples), n_mini):
        counts = dp_sum([float(mask_all[mini.start : mini.stop].sum()), len(mini)], layout)
        chunks = [range(mini.start + c.start, mini.start + c.stop) for c in _chunks(len(mini), micro)]
        stand_ins = run.strategy.stand_in_passes(len(chunks))  # weight-0 repeats keep DP ranks in step
        loss = 0.0
        for rows, weight in [(c, 1.0) for c in chunks] + [(chunks[0], 0.0)] * stand_ins:
            part, stats = micro_loss(run, videos, samples, rows, adv, old_logp, ref_logp, counts)
            (part * weight).backward()
            if weight:
                loss += part.item()
                for k, v in stats.items():
                    sums[k] += v
        loss = world_sum([loss], layout)[0]  # every rank's part: all ranks decide alike
        norms.append(run.update(loss))
        losses.append(loss)
    totals = dict(zip(sums, world_sum(list(sums.values()), layout), strict=True))
    names = [*PER_TOKEN_STATS, *(["kl"] if ref_logp is not None else [])]
    tokens = totals["tokens"]
    return {"loss": sum(losses) / n_mini, "grad_norm": sum(norms) / len(norms),
            **{k: totals[k] / tokens if tokens else 0.0 for k in names}}


def micro_loss(run: Run, videos: StepVideoCache, samples: list[Sample], rows: range, adv: torch.Tensor,
               old_logp: torch.Tensor, ref_logp: torch.Tensor | None, counts: list[float]
               ) -> tuple[torch.Tensor, dict[str, float]]:
    """One micro-batch's part of the mini-batch loss (normalised by the mini-batch's global
    `counts` [tokens, sequences], or Dr.GRPO's constant horizon) and its per-token stats
    summed over its tokens. `ref_logp`: the reference's, for a KL loss term (None: none)."""
    policy, a, layout = run.model, run.cfg.algo, run.layout
    norm = {"num_tokens": int(counts[0]), "num_seqs": int(counts[1]), "horizon": run.cfg.rollout.max_new_tokens}
    batch = pack_samples(policy, videos, samples, rows, run.cfg.train.shared_prefix, run.cfg.train.padding_free)
    logp, mask = _policy_logprobs(policy, batch, layout)  # [b, R]
    width = logp.shape[1]
    old = old_logp[rows.start : rows.stop, :width]
    advantage = adv[rows.start : rows.stop, :width].to(logp.device)  # [b, R]
    loss, pg = policy_loss(logp, old, advantage, mask, clip_low=a.clip_low, clip_high=a.clip_high,
                           dual_clip=a.dual_clip, agg=a.loss_agg, **norm)
    ref = None if ref_logp is None else ref_logp[rows.start : rows.stop, :width]
    if ref is not None:
        loss = loss + a.kl_coef * kl_loss(logp, ref, mask, kind=a.kl_kind, agg=a.loss_agg, **norm)
    tokens = float(mask.sum())
    if tokens == 0:  # this rank's slice holds none of these responses' tokens
        return loss, {}
    with torch.no_grad():
        per_token = {f"pg/{k}": pg[k] for k in ("clip_frac", "dual_clip_frac", "approx_kl")}
        # Mean -log p of the sampled tokens: a Monte Carlo estimate of the policy's entropy
        # (unbiased for on-policy samples at temperature 1), at no extra cost.
        per_token["entropy"] = float(-masked_mean(logp, mask))
        if ref is not None:
            per_token["kl"] = float(masked_mean(kl_estimate(logp, ref, a.kl_kind), mask))
    return loss, {"tokens": tokens, **{k: v * tokens for k, v in per_token.items()}}


def sample_metrics(samples: list[Sample], old_logp: torch.Tensor, layout: Layout) -> dict[str, float]:
    """The step's per-sample statistics over every DP rank's samples, as one process
    sampling the whole draw would log them (collective under DP)."""
    rewards = torch.tensor([s.reward for s in samples], dtype=torch.float64)  # [N]
    groups = group_ids(samples)
    # groups whose rewards differ: the only ones that carry a learning signal
    mixed = groups[adv_fns.dapo_keep_mask(rewards, groups)].unique().numel()
    lengths = [s.tokens.shape[0] for s in samples]
    diffs = torch.cat([(s.engine_logp - old_logp[i, : s.tokens.shape[0]].cpu()).abs()
                       for i, s in enumerate(samples)])  # [tokens]: engine vs trainer log-probs
    n, r_sum, r_sq, acc, fmt, length, d_sum, d_count, mixed, n_groups = dp_sum(
        [len(samples), rewards.sum(), (rewards**2).sum(), sum(s.accuracy for s in samples),
         sum(s.format for s in samples), sum(lengths), diffs.sum(), diffs.numel(), mixed,
         groups.unique().numel()], layout)
    len_max, d_max = dp_max([max(lengths), diffs.max()], layout)
    variance = max(r_sq - r_sum * r_sum / n, 0.0) / (n - 1) if n > 1 else 0.0  # unbiased, as torch.std
    return {
        "reward/mean": r_sum / n, "reward/std": math.sqrt(variance), "reward/accuracy": acc / n,
        "reward/format_rate": fmt / n, "reward/mixed_groups": mixed / n_groups,
        "response/length_mean": length / n, "response/length_max": len_max,
        "rollout/logp_diff_max": d_max, "rollout/logp_diff_mean": d_sum / d_count,
    }


def _policy_logprobs(policy: VideoLM, batch: SequenceBatch, layout: Layout) -> tuple[torch.Tensor, torch.Tensor]:
    """Differentiable response log-probs [b, R] and the mask of the tokens this rank owns.

    Under SP each rank scores only the tokens predicted from its sequence slice: the other
    tokens are zero here and masked out, and the losses of the ranks add up to the
    full loss (their gradients are summed across the group after backward)."""
    if layout.sp_group is None:
        return response_logprobs(policy, batch), batch.response_mask
    return sp_local_logprobs(policy, batch, layout.sp_group)


def _chunks(n: int, size: int) -> list[range]:
    return [range(i, min(i + size, n)) for i in range(0, n, size)]


def _split(n: int, parts: int) -> list[range]:
    """Exactly `parts` contiguous ranges covering 0..n, sizes differing by at most one
    (every DP rank must run the same number of mini-batches; n >= parts)."""
    bounds = [n * i // parts for i in range(parts + 1)]
    return [range(a, b) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
