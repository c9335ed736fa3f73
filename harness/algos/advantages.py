"""Advantage estimators: GRPO (and Dr.GRPO), RLOO, REINFORCE++, plus DAPO's group filter.

Outcome-reward estimators take one scalar reward per sample and a `group_ids` tensor that
says which samples answer the same prompt. Groups are found by id, never by position: the
samples of a group need not be contiguous or sorted. (The authors' batch reordering for load
balance broke the assumption that a prompt's n rollouts sit next to each other, docs/reference.md
pitfall 3; here every estimator is invariant under any permutation of the batch.)

Group statistics are computed in float64 and the result is cast back to the rewards' dtype
(float32 if the rewards are not floating point). Advantages carry no gradient.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch


def _check_groups(rewards: torch.Tensor, group_ids: torch.Tensor) -> None:
    if rewards.dim() != 1 or group_ids.dim() != 1:
        raise ValueError(
            f"rewards and group_ids must be 1-D, got shapes {tuple(rewards.shape)} "
            f"and {tuple(group_ids.shape)}"
        )
    if rewards.shape != group_ids.shape:
        raise ValueError(
            f"rewards {tuple(rewards.shape)} and group_ids {tuple(group_ids.shape)} differ in length"
        )
    if group_ids.is_floating_point() or group_ids.is_complex() or group_ids.dtype == torch.bool:
        raise ValueError(f"group_ids must be an integer tensor, got {group_ids.dtype}")


def _out_dtype(rewards: torch.Tensor) -> torch.dtype:
    return rewards.dtype if rewards.is_floating_point() else torch.float32


def _group_sums(
    values: torch.Tensor, group_ids: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-group sum and count of `values`, and each sample's group index.

    Returns (sums [G], counts [G], inverse [N]) with G the number of distinct ids; the
    float64 sums/counts are indexed by `inverse` to get each sample's group value.
    """
    _, inverse = torch.unique(group_ids, return_inverse=True)  # [N] in [0, G)
    num_groups = int(inverse.max()) + 1 if inverse.numel() else 0
    v = values.detach().to(torch.float64)  # [N]
    sums = torch.zeros(num_groups, dtype=torch.float64, device=v.device)  # [G]
    sums.index_add_(0, inverse, v)
    counts = torch.zeros(num_groups, dtype=torch.float64, device=v.device)  # [G]
    counts.index_add_(0, inverse, torch.ones_like(v))
    return sums, counts, inverse


def grpo_advantages(
    rewards: torch.Tensor,
    group_ids: torch.Tensor,
    eps: float = 1e-6,
    scale_by_std: bool = True,
) -> torch.Tensor:
    """GRPO outcome advantage: A_i = (r_i - mean_g) / (std_g + eps) over sample i's group g.

    rewards [N] float, group_ids [N] integer (samples of one prompt share an id, in any
    order) -> advantages [N].

    std_g is the *unbiased* standard deviation (divide by n_g - 1), as `torch.std` computes
    it and as verl/EasyR1 (and so the authors) use it; eps = 1e-6 is the authors' value. A
    group whose rewards are all equal gets 0 for every sample.

    A group of one sample gets advantage 0 (there is nothing to compare it with). verl
    instead sets mean 0, std 1 for such a group, so a lone sample's advantage is its raw
    reward; with the authors' n >= 5 rollouts per prompt a lone sample only arises after
    filtering, where a zero learning signal is the safer choice.

    `scale_by_std=False` is Dr.GRPO (Liu et al. 2025): A_i = r_i - mean_g, no division,
    which removes GRPO's bias towards groups with little reward variance.
    """
    _check_groups(rewards, group_ids)
    if rewards.numel() == 0:
        return rewards.detach().to(_out_dtype(rewards)).clone()
    r = rewards.detach().to(torch.float64)  # [N]
    sums, counts, inv = _group_sums(r, group_ids)  # [G], [G], [N]
    mean = sums / counts  # [G]
    centered = r - mean[inv]  # [N]
    alone = counts[inv] < 2  # [N]
    if scale_by_std:
        sq = torch.zeros_like(sums).index_add_(0, inv, centered * centered)  # [G]
        std = torch.sqrt(sq / (counts - 1).clamp(min=1))  # [G] unbiased
        adv = centered / (std[inv] + eps)  # [N]
    else:
        adv = centered  # [N]
    adv = torch.where(alone, torch.zeros_like(adv), adv)  # [N]
    return adv.to(_out_dtype(rewards))


def rloo_advantages(rewards: torch.Tensor, group_ids: torch.Tensor) -> torch.Tensor:
    """RLOO (leave-one-out) advantage: A_i = r_i - mean of the *other* samples of the group.

    rewards [N], group_ids [N] integer -> [N]. Equals n/(n-1) * (r_i - mean_g), the form
    verl writes it in. A group of one sample gets 0.
    """
    _check_groups(rewards, group_ids)
    if rewards.numel() == 0:
        return rewards.detach().to(_out_dtype(rewards)).clone()
    r = rewards.detach().to(torch.float64)  # [N]
    sums, counts, inv = _group_sums(r, group_ids)  # [G], [G], [N]
    n = counts[inv]  # [N]
    others_mean = (sums[inv] - r) / (n - 1).clamp(min=1)  # [N]
    adv = torch.where(n < 2, torch.zeros_like(r), r - others_mean)  # [N]
    return adv.to(_out_dtype(rewards))


def dapo_keep_mask(rewards: torch.Tensor, group_ids: torch.Tensor) -> torch.Tensor:
    """DAPO dynamic sampling filter: bool [N], False for every sample of a group whose
    rewards are all (exactly) equal, i.e. whose GRPO advantages would all be zero.

    A group of one sample is trivially all-equal and is dropped too. Exact comparison
    matches DAPO's `std == 0` test for rewards computed the same way for every sample.
    """
    _check_groups(rewards, group_ids)
    if rewards.numel() == 0:
        return torch.zeros(0, dtype=torch.bool, device=rewards.device)
    _, inv = torch.unique(group_ids, return_inverse=True)  # [N]
    num_groups = int(inv.max()) + 1
    r = rewards.detach().to(torch.float64)  # [N]
    hi = torch.full((num_groups,), -torch.inf, dtype=torch.float64, device=r.device)
    lo = torch.full((num_groups,), torch.inf, dtype=torch.float64, device=r.device)
    hi = hi.scatter_reduce(0, inv, r, reduce="amax")  # [G]
    lo = lo.scatter_reduce(0, inv, r, reduce="amin")  # [G]
    return (hi > lo)[inv]  # [N]


def mean_band_keep_mask(rewards: torch.Tensor, group_ids: torch.Tensor, low: float, high: float) -> torch.Tensor:
    """The authors' online filter (Long-RL `algorithm.online_filtering`): bool [N], True for
    every sample of a group whose mean reward lies strictly between `low` and `high`
    (their defaults 0.01 and 0.99). With rewards in {0, 1} this equals `dapo_keep_mask`; with
    weighted rewards (0.9 accuracy + 0.1 format) it keeps groups whose rewards are all equal
    at a mean inside the band (e.g. every answer right, no format: 0.9), which carry no
    learning signal, and `dapo_keep_mask` does not."""
    _check_groups(rewards, group_ids)
    if rewards.numel() == 0:
        return torch.zeros(0, dtype=torch.bool, device=rewards.device)
    _, inv = torch.unique(group_ids, return_inverse=True)  # [N]
    r = rewards.detach().to(torch.float64)
    sums = torch.zeros(int(inv.max()) + 1, dtype=torch.float64, device=r.device).index_add_(0, inv, r)  # [G]
    counts = torch.bincount(inv).to(torch.float64)  # [G]
    means = (sums / counts)[inv]  # [N]
    return (means > low) & (means < high)


def broadcast_to_tokens(adv: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Give every valid response token its sequence's advantage: adv [N], mask [N, L] -> [N, L]
    (0 at masked-out positions)."""
    if adv.dim() != 1 or mask.dim() != 2 or mask.shape[0] != adv.shape[0]:
        raise ValueError(
            f"expected adv [N] and mask [N, L], got {tuple(adv.shape)} and {tuple(mask.shape)}"
        )
    return adv[:, None] * mask.to(adv.dtype)  # [N, L]


def last_token_rewards(seq_rewards: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Place each sequence's scalar reward on its last valid token: seq_rewards [B],
    mask [B, L] -> token rewards [B, L] (zeros elsewhere; a row with no valid token gets
    nothing)."""
    if seq_rewards.dim() != 1 or mask.dim() != 2 or mask.shape[0] != seq_rewards.shape[0]:
        raise ValueError(
            f"expected seq_rewards [B] and mask [B, L], got {tuple(seq_rewards.shape)} "
            f"and {tuple(mask.shape)}"
        )
    valid = mask.bool()  # [B, L]
    dtype = _out_dtype(seq_rewards)
    out = torch.zeros(valid.shape, dtype=dtype, device=seq_rewards.device)  # [B, L]
    pos = torch.arange(valid.shape[1], device=valid.device).expand_as(valid)  # [B, L]
    last = torch.where(valid, pos, torch.full_like(pos, -1)).max(dim=1).values  # [B]
    rows = (last >= 0).nonzero(as_tuple=True)[0]  # [B']
    out[rows, last[rows]] = seq_rewards.detach().to(dtype)[rows]
    return out


def reinforce_pp_returns(
    token_rewards: torch.Tensor, mask: torch.Tensor, gamma: float = 1.0
) -> torch.Tensor:
    """Discounted return-to-go per token: G_t = sum_{k >= t, valid} gamma^(#valid between) r_k.

    token_rewards [B, L], mask [B, L] -> returns [B, L], 0 at masked positions. Masked
    positions neither contribute reward nor count as a discount step (the running return
    passes through them), so a hole in the mask behaves as if those tokens were removed;
    for ordinary right-padded responses this equals verl's loop, which resets the running
    return at padding.
    """
    if token_rewards.shape != mask.shape or token_rewards.dim() != 2:
        raise ValueError(
            f"token_rewards and mask must both be [B, L], got {tuple(token_rewards.shape)} "
            f"and {tuple(mask.shape)}"
        )
    valid = mask.bool()  # [B, L]
    r = token_rewards.detach()  # [B, L]
    if gamma == 1.0:  # undiscounted: a reverse cumulative sum, no loop over L
        kept = torch.where(valid, r, torch.zeros_like(r))  # [B, L]
        togo = kept.flip(1).cumsum(1).flip(1)  # [B, L]
        return torch.where(valid, togo, torch.zeros_like(togo))
    returns = torch.zeros_like(r)  # [B, L]
    running = torch.zeros_like(r[:, 0])  # [B]
    for t in range(r.shape[1] - 1, -1, -1):
        running = torch.where(valid[:, t], r[:, t] + gamma * running, running)  # [B]
        returns[:, t] = torch.where(valid[:, t], running, torch.zeros_like(running))
    return returns


def whiten(
    values: torch.Tensor, mask: torch.Tensor, shift_mean: bool = True, eps: float = 1e-8,
    reduce: Callable[[list[float]], list[float]] | None = None,
) -> torch.Tensor:
    """Masked whitening: (v - mean) / sqrt(var + eps) over all valid entries together.

    values, mask: same shape -> same shape, 0 at masked positions. var is unbiased
    (n - 1), as in verl's `masked_whiten`; with fewer than two valid entries var is taken
    as 0. `shift_mean=False` adds the mean back (scales only). `reduce`: sums
    [count, sum, sum of squares] over the processes that hold the rest of the batch (data
    parallelism), so each whitens with the whole batch's mean and variance.
    """
    if values.shape != mask.shape:
        raise ValueError(f"values {tuple(values.shape)} and mask {tuple(mask.shape)} differ")
    valid = mask.bool()
    v = values.detach()
    zeros = torch.zeros_like(v)
    kept = torch.where(valid, v, zeros).double()
    moments = [float(valid.sum()), float(kept.sum()), float((kept * kept).sum())]
    n, total, squares = reduce(moments) if reduce is not None else moments
    mean = total / max(n, 1.0)
    var = max(squares - n * mean * mean, 0.0) / max(n - 1.0, 1.0)  # float64: no cancellation to speak of
    out = torch.where(valid, v - mean, zeros) / math.sqrt(var + eps)
    if not shift_mean:
        out = out + mean
    return torch.where(valid, out, zeros)


def reinforce_pp_advantages(
    seq_rewards: torch.Tensor,
    mask: torch.Tensor,
    kl: torch.Tensor | None = None,
    kl_coef: float = 0.0,
    gamma: float = 1.0,
    reduce: Callable[[list[float]], list[float]] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """REINFORCE++ (Hu 2025): token advantages from whitened discounted returns.

    seq_rewards [B], mask [B, L], kl [B, L] or None (a per-token KL estimate against the
    reference policy, see `kl.kl_estimate`) -> (advantages [B, L], returns [B, L]).

    token reward r_t = -kl_coef * kl_t, plus the sequence reward at the last valid token;
    returns G_t by `reinforce_pp_returns(r, mask, gamma)`; advantages = whiten(G) over every
    valid token of the batch (no per-group baseline: REINFORCE++ is batch-normalised;
    `reduce` as for `whiten` when the batch is spread over processes).
    """
    token_rewards = last_token_rewards(seq_rewards, mask)  # [B, L]
    if kl is not None:
        if kl.shape != mask.shape:
            raise ValueError(f"kl {tuple(kl.shape)} must match mask {tuple(mask.shape)}")
        penalty = kl.detach().to(token_rewards.dtype) * mask.to(token_rewards.dtype)  # [B, L]
        token_rewards = token_rewards - kl_coef * penalty  # [B, L]
    returns = reinforce_pp_returns(token_rewards, mask, gamma)  # [B, L]
    advantages = whiten(returns, mask, reduce=reduce)  # [B, L]
    return advantages, returns
