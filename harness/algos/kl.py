"""Per-token KL estimators against the reference policy, used either as a loss term
(`kl_loss`, the authors' GRPO setting: low_var_kl, coefficient 1e-2) or as a reward
penalty (`kl_penalty_rewards`, PPO / REINFORCE++ style).

All estimators are Schulman's ("Approximating KL divergence", 2020) single-sample
estimators of KL(pi || pi_ref) from tokens sampled by pi, with logp = log pi(token),
ref_logp = log pi_ref(token):

    k1  = logp - ref_logp                      unbiased, high variance, can be < 0
    abs = |logp - ref_logp|
    k2  = 0.5 * (logp - ref_logp)^2            biased, low variance, >= 0
    k3  = exp(ref - logp) - (ref - logp) - 1   unbiased, low variance, >= 0

k3 (alias "low_var_kl", verl's name) clamps the log-ratio to [-20, 20] before exp() so that a
huge difference cannot overflow, and the result to [-10, 10], as verl does; gradients are
zero where either clamp is active. For small differences d, k3 ~ d^2 / 2 ~ k2.
"""

from __future__ import annotations

import torch

from harness.algos.losses import aggregate

KL_KINDS = ("k1", "kl", "abs", "k2", "mse", "k3", "low_var_kl")
K3_LOG_RATIO_CLAMP = 20.0
K3_CLAMP = 10.0


def kl_estimate(
    logp: torch.Tensor, ref_logp: torch.Tensor, kind: str = "low_var_kl"
) -> torch.Tensor:
    """Per-token KL estimate [B, L] from logp [B, L] (grad flows) and ref_logp [B, L]
    (treated as a constant). kind: k1 (alias kl), abs, k2 (alias mse), k3 (alias low_var_kl).
    """
    if logp.shape != ref_logp.shape:
        raise ValueError(f"logp {tuple(logp.shape)} and ref_logp {tuple(ref_logp.shape)} differ")
    diff = logp - ref_logp.detach()  # [B, L]
    if kind in ("k1", "kl"):
        return diff
    if kind == "abs":
        return diff.abs()
    if kind in ("k2", "mse"):
        return 0.5 * diff * diff
    if kind in ("k3", "low_var_kl"):
        log_ratio = (-diff).clamp(-K3_LOG_RATIO_CLAMP, K3_LOG_RATIO_CLAMP)  # [B, L] ref - logp
        k3 = torch.exp(log_ratio) - log_ratio - 1.0  # [B, L]
        return k3.clamp(-K3_CLAMP, K3_CLAMP)
    raise ValueError(f"unknown KL estimator {kind!r}; expected one of {KL_KINDS}")


def kl_loss(
    logp: torch.Tensor,
    ref_logp: torch.Tensor,
    mask: torch.Tensor,
    kind: str = "low_var_kl",
    agg: str = "token-mean",
    num_tokens: float | torch.Tensor | None = None,
    num_seqs: float | torch.Tensor | None = None,
    horizon: int | None = None,
) -> torch.Tensor:
    """KL as a loss term: aggregate(kl_estimate(logp, ref_logp, kind), mask, agg) -> scalar.

    The trainer adds kl_coef * this to the policy loss (the authors: low_var_kl, 1e-2,
    token-mean). Padding is selected away before the estimate, so garbage there is harmless.
    """
    if mask.shape != logp.shape:
        raise ValueError(f"mask {tuple(mask.shape)} must match logp {tuple(logp.shape)}")
    valid = mask.bool()  # [B, L]
    lp = torch.where(valid, logp, torch.zeros_like(logp))  # [B, L]
    ref = torch.where(valid, ref_logp, torch.zeros_like(ref_logp))  # [B, L]
    kl = kl_estimate(lp, ref, kind)  # [B, L]
    return aggregate(kl, mask, agg, num_tokens=num_tokens, num_seqs=num_seqs, horizon=horizon)


def kl_penalty_rewards(
    token_scores: torch.Tensor,
    logp: torch.Tensor,
    ref_logp: torch.Tensor,
    mask: torch.Tensor,
    kl_coef: float,
    kind: str = "k1",
) -> torch.Tensor:
    """KL as a reward penalty: token rewards = token_scores - kl_coef * kl, 0 at padding.

    token_scores [B, L] (e.g. `advantages.last_token_rewards(seq_rewards, mask)`), logp,
    ref_logp, mask [B, L] -> token rewards [B, L], detached (rewards carry no gradient).
    PPO/REINFORCE++ use k1 here; the authors' GRPO runs use `kl_loss` instead.
    """
    if not (token_scores.shape == logp.shape == ref_logp.shape == mask.shape):
        raise ValueError(
            "token_scores, logp, ref_logp and mask must share a shape, got "
            f"{tuple(token_scores.shape)}, {tuple(logp.shape)}, {tuple(ref_logp.shape)}, "
            f"{tuple(mask.shape)}"
        )
    valid = mask.bool()  # [B, L]
    with torch.no_grad():
        lp = torch.where(valid, logp, torch.zeros_like(logp))  # [B, L]
        ref = torch.where(valid, ref_logp, torch.zeros_like(ref_logp))  # [B, L]
        kl = kl_estimate(lp, ref, kind)  # [B, L]
        rewards = token_scores - kl_coef * kl  # [B, L]
        return torch.where(valid, rewards, torch.zeros_like(rewards))
