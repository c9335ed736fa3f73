"""Flow-GRPO's math (arXiv 2505.05470): a flow-matching sampler turned into an SDE whose
every denoising step is a Gaussian policy, the clipped ratio loss over a trajectory's
steps, the `flow_grpo` KL to the reference, and per-prompt group advantages.

Conventions (diffusers' flow matching): x_sigma = (1 - sigma) x_0 + sigma * noise, the
model predicts the velocity v = noise - x_0, sampling runs sigma from 1 down to 0, and a
step goes from `sigma` to `sigma_next` < sigma (dt = sigma_next - sigma < 0).

The SDE with the same marginals as the ODE dx = v dt, with noise scale
    std_dev_t = noise_level * sqrt(sigma / (1 - sigma))
(at sigma = 1 the denominator takes the schedule's second sigma instead, as the reference
code does, so the first step stays finite), has the Euler-Maruyama step
    mean = x (1 + std_dev_t^2 / (2 sigma) dt) + v (1 + std_dev_t^2 (1 - sigma) / (2 sigma)) dt
    x_next = mean + std_dev_t sqrt(-dt) * eps,       eps ~ N(0, I)
and the step's log-probability of x_next is the Gaussian's, averaged (not summed) over
the latent's elements: a per-element mean keeps the ratio of a 64x64x16 latent in range.
With noise_level 0 the step is the plain Euler (ODE) step.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass
class SDEStep:
    prev_sample: torch.Tensor  # [B, ...] x at sigma_next
    log_prob: torch.Tensor  # [B] the Gaussian log-density of prev_sample, mean over elements
    mean: torch.Tensor  # [B, ...] the step's mean
    std_dev_t: torch.Tensor  # [B, 1, ...] noise scale, without sqrt(-dt)
    step_std: torch.Tensor  # [B, 1, ...] the Gaussian's std: std_dev_t * sqrt(-dt)


def _per_sample(x: torch.Tensor | float, like: torch.Tensor) -> torch.Tensor:
    """A scalar or [B] value as [B, 1, ..., 1] to broadcast over `like` [B, ...]."""
    x = torch.as_tensor(x, dtype=torch.float32, device=like.device)
    return x.reshape(-1, *([1] * (like.dim() - 1)))


def sde_step(sample: torch.Tensor, velocity: torch.Tensor, sigma, sigma_next, sigma_max: float,
             noise_level: float, prev_sample: torch.Tensor | None = None,
             noise: torch.Tensor | None = None) -> SDEStep:
    """One denoising step as a Gaussian policy. sample, velocity [B, ...]; sigma, sigma_next:
    scalars or [B]; `sigma_max`: the schedule's second sigma (stands in for sigma = 1 in the
    noise scale's denominator). Give `prev_sample` to score a stored step, else `noise`
    [B, ...] (standard normal) to take one. Computed in float32 whatever the inputs' dtype
    (bf16 overflows in the squares)."""
    if (prev_sample is None) == (noise is None):
        raise ValueError("give exactly one of prev_sample (to score a step) and noise (to take one)")
    x, v = sample.float(), velocity.float()
    s, s_next = _per_sample(sigma, x), _per_sample(sigma_next, x)  # [B, 1, ...]
    dt = s_next - s
    std_dev_t = torch.sqrt(s / (1 - torch.where(s == 1, torch.full_like(s, sigma_max), s))) * noise_level
    mean = x * (1 + std_dev_t**2 / (2 * s) * dt) + v * (1 + std_dev_t**2 * (1 - s) / (2 * s)) * dt
    step_std = std_dev_t * torch.sqrt(-dt)
    if prev_sample is None:
        prev_sample = mean + step_std * noise.float()
    prev = prev_sample.detach().float()
    log_prob = -((prev - mean) ** 2) / (2 * step_std**2) - torch.log(step_std) - 0.5 * math.log(2 * math.pi)
    return SDEStep(prev, log_prob.mean(dim=tuple(range(1, x.dim()))), mean, std_dev_t, step_std)


def flow_grpo_kl(mean: torch.Tensor, ref_mean: torch.Tensor, std_dev_t: torch.Tensor) -> torch.Tensor:
    """Flow-GRPO's KL between the policy's and the reference's step Gaussians [B]: the two
    share their std, so KL = |mean - ref_mean|^2 / (2 std^2) per element; the reference
    code divides by std_dev_t^2 (without the step's sqrt(-dt)), i.e. the exact KL times
    |dt| per step, and averages over elements. We do the same."""
    dims = tuple(range(1, mean.dim()))
    return ((mean.float() - ref_mean.float()) ** 2).mean(dim=dims) / (2 * std_dev_t.reshape(-1) ** 2)


def clipped_loss(log_prob: torch.Tensor, old_log_prob: torch.Tensor, advantages: torch.Tensor,
                 clip_range: float) -> tuple[torch.Tensor, torch.Tensor]:
    """PPO's clipped surrogate per sample [B] for one denoising step, and whether each
    sample's ratio left [1 - clip, 1 + clip] [B] (bool). The ratio is taken from the raw
    log-prob difference (Flow-GRPO clamps the ratio, not its log)."""
    ratio = torch.exp(log_prob - old_log_prob)
    unclipped = -advantages * ratio
    clipped = -advantages * torch.clamp(ratio, 1 - clip_range, 1 + clip_range)
    return torch.maximum(unclipped, clipped), (ratio - 1).abs() > clip_range


def step_loss(new: SDEStep, old_log_prob: torch.Tensor, advantages: torch.Tensor, clip_range: float,
              ref_mean: torch.Tensor | None = None, kl_coef: float = 0.0) -> tuple[torch.Tensor, dict[str, float]]:
    """One denoising step's loss over a micro-batch, summed over its samples (the caller
    divides by every rank's samples x trained steps): the clipped surrogate plus kl_coef x
    the flow_grpo KL to the reference's step mean `ref_mean` (None: no KL term). Also the
    sums of the KL, of the clipped samples, and of Flow-GRPO's approx_kl
    0.5 (log_prob - old)^2."""
    surrogate, clipped = clipped_loss(new.log_prob, old_log_prob, advantages, clip_range)
    loss = surrogate.sum()
    stats = {"clip": float(clipped.float().sum()),
             "approx_kl": float(0.5 * ((new.log_prob.detach() - old_log_prob) ** 2).sum())}
    if ref_mean is not None:
        kl = flow_grpo_kl(new.mean, ref_mean, new.std_dev_t)  # [b]
        loss = loss + kl_coef * kl.sum()
        stats["kl"] = float(kl.detach().sum())
    return loss, stats


def group_advantages(rewards: torch.Tensor, groups: torch.Tensor, *, clip: float,
                     global_std: torch.Tensor | float | None = None, eps: float = 1e-4) -> torch.Tensor:
    """Per-prompt advantages [N]: (r - the mean of the prompt's group) / (the group's
    population std, or `global_std`: the std of every reward of the step, all ranks', as
    Flow-GRPO's `global_std` option) + eps; then clipped to [-clip, clip].
    rewards [N] float, groups [N] int (each group whole on this rank)."""
    rewards = rewards.double()
    adv = torch.empty_like(rewards)
    for g in groups.unique():
        idx = groups == g
        r = rewards[idx]
        std = r.std(unbiased=False) if global_std is None else torch.as_tensor(global_std, dtype=torch.float64)
        adv[idx] = (r - r.mean()) / (std + eps)
    return adv.clamp(-clip, clip).float()


def pooled_std(count: float, total: float, total_sq: float) -> float:
    """Population std from a count, a sum and a sum of squares (over every rank's rewards)."""
    mean = total / count
    return math.sqrt(max(total_sq / count - mean * mean, 0.0))


def trained_steps(num_steps: int, timestep_fraction: float) -> list[int]:
    """The denoising steps a trajectory trains on: the first int(num_steps * fraction), in
    order (Flow-GRPO's 0.99 of 10 steps trains 9, all but the last)."""
    if not 0 < timestep_fraction <= 1:
        raise ValueError(f"timestep_fraction must be in (0, 1], got {timestep_fraction}")
    k = int(num_steps * timestep_fraction)
    if k < 1:
        raise ValueError(f"timestep_fraction {timestep_fraction} of {num_steps} steps trains none")
    return list(range(k))
