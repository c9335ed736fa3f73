"""Policy-gradient loss (PPO clipped surrogate with asymmetric and dual clip), loss
aggregation over tokens, entropy.

Masks: a mask is any tensor of the loss's shape; nonzero means "valid response token".
Masked-out entries are selected away with `torch.where`, never multiplied by 0, so a NaN or
inf at a padded position cannot leak into the loss or its gradient.

Micro-batches: every aggregation takes optional denominators (`num_tokens`, `num_seqs`).
Pass the counts of the whole mini-batch (divided by the data-parallel world size when
gradients are averaged across ranks) and the sum of the micro-batch losses equals the
mini-batch loss, whatever the micro-batch split (DESIGN §4). Left as None they are the
counts of the tensors given.
"""

from __future__ import annotations

import torch

AGG_MODES = ("token-mean", "seq-mean-token-mean", "seq-mean-token-sum", "seq-mean-token-sum-norm")


def masked_mean(values: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """Mean of `values` over entries where `mask` is nonzero (all dims, or along `dim`).
    0 where there is no valid entry (not NaN)."""
    valid = mask.bool()
    total = torch.where(valid, values, torch.zeros_like(values))
    if dim is None:
        return total.sum() / valid.sum().clamp(min=1)
    return total.sum(dim) / valid.sum(dim).clamp(min=1)


def aggregate(
    loss_mat: torch.Tensor,
    mask: torch.Tensor,
    mode: str = "token-mean",
    num_tokens: float | torch.Tensor | None = None,
    num_seqs: float | torch.Tensor | None = None,
    horizon: int | None = None,
) -> torch.Tensor:
    """Reduce a per-token loss [B, L] to a scalar.

    - "token-mean": sum over all valid tokens / number of valid tokens (`num_tokens`).
      Every token weighs the same, so long responses weigh more (authors' default, DAPO).
    - "seq-mean-token-mean": each sequence's mean over its valid tokens, then the mean over
      sequences (`num_seqs`). Every sequence weighs the same (original GRPO).
    - "seq-mean-token-sum": each sequence's sum over its valid tokens, then the mean over
      sequences (`num_seqs`).
    - "seq-mean-token-sum-norm": as "seq-mean-token-sum", divided by the constant `horizon`
      (the longest response allowed): Dr.GRPO's loss, (1/G) sum_i sum_t loss / horizon,
      verl's mode of the same name.

    Sequences with no valid token contribute 0 and are not counted in the default number
    of sequences; with no valid token at all the result is 0 (still attached to the graph).
    """
    if loss_mat.shape != mask.shape or loss_mat.dim() != 2:
        raise ValueError(
            f"loss_mat and mask must both be [B, L], got {tuple(loss_mat.shape)} "
            f"and {tuple(mask.shape)}"
        )
    if mode not in AGG_MODES:
        raise ValueError(f"unknown loss aggregation mode {mode!r}; expected one of {AGG_MODES}")
    valid = mask.bool()  # [B, L]
    masked = torch.where(valid, loss_mat, torch.zeros_like(loss_mat))  # [B, L]
    if mode == "token-mean":
        denom = valid.sum().clamp(min=1) if num_tokens is None else num_tokens
        return masked.sum() / denom
    seq_tokens = valid.sum(dim=1)  # [B]
    seq_sum = masked.sum(dim=1)  # [B]
    if mode == "seq-mean-token-mean":
        per_seq = seq_sum / seq_tokens.clamp(min=1)  # [B]
    elif mode == "seq-mean-token-sum-norm":
        if horizon is None or horizon < 1:
            raise ValueError(f"loss aggregation {mode} needs the constant horizon (max response length), got {horizon}")
        per_seq = seq_sum / horizon  # [B]
    else:
        per_seq = seq_sum  # [B]
    denom = (seq_tokens > 0).sum().clamp(min=1) if num_seqs is None else num_seqs
    return per_seq.sum() / denom


def policy_loss(
    logp: torch.Tensor,
    old_logp: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    clip_low: float = 0.2,
    clip_high: float = 0.3,
    dual_clip: float | None = 3.0,
    log_ratio_clamp: float = 20.0,
    agg: str = "token-mean",
    num_tokens: float | torch.Tensor | None = None,
    num_seqs: float | torch.Tensor | None = None,
    horizon: int | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """PPO clipped surrogate with asymmetric ("clip-higher") and dual clipping.

    logp [B, L] (current policy, carries grad), old_logp [B, L] (policy that sampled),
    advantages [B, L], mask [B, L] -> (scalar loss, stats).

        ratio = exp(clamp(logp - old_logp, -log_ratio_clamp, log_ratio_clamp))
        pg    = max(-A * ratio, -A * clip(ratio, 1 - clip_low, 1 + clip_high))
        if A < 0 and dual_clip is not None:  pg = min(pg, -A * dual_clip)
        loss  = aggregate(pg, mask, agg)

    Defaults are the authors' (0.2 / 0.3, dual clip 3.0, token-mean); DAPO uses 0.2 / 0.28.
    Where a clip is active the token's gradient is zero. Dual clip (Ye et al. 2020) bounds
    the loss of a negative-advantage token whose ratio has grown large; it must be > 1.
    The log-ratio clamp only guards exp() against overflow (verl clamps at 20 too).
    Padding positions are zeroed before any arithmetic, so NaN/inf there is harmless.

    stats (python floats over valid tokens; all 0.0 when there is none):
      clip_frac       fraction where the clipped branch is active (-A*clip(r) > -A*r)
      clip_frac_high  ... of which A > 0 and r > 1 + clip_high
      clip_frac_low   ... of which A < 0 and r < 1 - clip_low
      dual_clip_frac  fraction where A < 0 and the dual clip is active
      approx_kl       mean of old_logp - logp: the k1 estimator of KL(old || current),
                      unbiased (samples come from old) but can be negative (verl's ppo_kl)
      approx_kl_k3    mean of (r - 1) - log r: the k3 estimator of the same KL, >= 0
      ratio_mean, ratio_max, ratio_min
    """
    if not (logp.shape == old_logp.shape == advantages.shape == mask.shape):
        raise ValueError(
            "logp, old_logp, advantages and mask must share a shape, got "
            f"{tuple(logp.shape)}, {tuple(old_logp.shape)}, {tuple(advantages.shape)}, "
            f"{tuple(mask.shape)}"
        )
    if not 0.0 <= clip_low < 1.0 or clip_high < 0.0:
        raise ValueError(f"need 0 <= clip_low < 1 and clip_high >= 0, got {clip_low}, {clip_high}")
    if dual_clip is not None and dual_clip <= 1.0:
        raise ValueError(f"dual_clip must be > 1 (or None to disable), got {dual_clip}")

    valid = mask.bool()  # [B, L]
    # zero out padding before any arithmetic so garbage there cannot reach the gradient
    adv = torch.where(valid, advantages.detach(), torch.zeros_like(advantages))  # [B, L]
    log_ratio = torch.where(valid, logp - old_logp.detach(), torch.zeros_like(logp))  # [B, L]
    log_ratio = log_ratio.clamp(-log_ratio_clamp, log_ratio_clamp)  # [B, L]
    ratio = torch.exp(log_ratio)  # [B, L]
    pg_unclipped = -adv * ratio  # [B, L]
    pg_clipped = -adv * ratio.clamp(1.0 - clip_low, 1.0 + clip_high)  # [B, L]
    pg = torch.maximum(pg_unclipped, pg_clipped)  # [B, L]
    if dual_clip is not None:
        pg_dual = -adv * dual_clip  # [B, L] constant: no gradient through it
        pg = torch.where(adv < 0, torch.minimum(pg, pg_dual), pg)  # [B, L]
    loss = aggregate(pg, mask, agg, num_tokens=num_tokens, num_seqs=num_seqs, horizon=horizon)

    with torch.no_grad():
        clipped = pg_clipped > pg_unclipped  # [B, L]
        if dual_clip is not None:
            dual = (adv < 0) & (pg_dual < torch.maximum(pg_unclipped, pg_clipped))
        else:
            dual = torch.zeros_like(valid)
        lr = log_ratio.detach()
        r = ratio.detach()
        has = bool(valid.any())
        stats = {
            "clip_frac": masked_mean(clipped.float(), valid).item(),
            "clip_frac_high": masked_mean((clipped & (adv > 0)).float(), valid).item(),
            "clip_frac_low": masked_mean((clipped & (adv < 0)).float(), valid).item(),
            "dual_clip_frac": masked_mean(dual.float(), valid).item(),
            "approx_kl": masked_mean(-lr, valid).item(),
            "approx_kl_k3": masked_mean(r - 1.0 - lr, valid).item(),
            "ratio_mean": masked_mean(r, valid).item(),
            "ratio_max": r[valid].max().item() if has else 0.0,
            "ratio_min": r[valid].min().item() if has else 0.0,
        }
    return loss, stats


def entropy_from_logits(logits: torch.Tensor) -> torch.Tensor:
    """Entropy of softmax(logits) over the last dim: [..., V] -> [...].

    H = logsumexp(z) - sum_v softmax(z)_v * z_v, which never forms log(0). Logits of -inf
    (a masked vocabulary entry) are allowed: they have probability 0 and add nothing, with
    finite gradients. Computed in at least float32 (half inputs are upcast); returns
    float32 or float64.
    """
    z = logits.float() if logits.dtype in (torch.float16, torch.bfloat16) else logits
    lse = torch.logsumexp(z, dim=-1)  # [...]
    p = torch.softmax(z, dim=-1)  # [..., V]
    z_safe = torch.where(torch.isfinite(z), z, torch.zeros_like(z))  # [..., V]
    return lse - (p * z_safe).sum(dim=-1)  # [...]
