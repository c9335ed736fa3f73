"""Rollouts of a flow-matching model as an SDE, recording each denoising step's Gaussian
log-probability (Flow-GRPO), and the re-scoring of stored steps for the update.

Randomness is per sample: the initial latent and every step's noise come from a generator
seeded by the sample's own key (run seed, step, the prompt's place in the global draw, its
index in the group), so a sample is the same whichever rank draws it and in whatever batch.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from harness.algos.flow_grpo import SDEStep, sde_step
from harness.gen.models import GenModel, TextCond


@dataclass
class Trajectory:
    latents: torch.Tensor  # [B, N+1, ...]: x at each sigma of the schedule (index 0: the initial noise)
    log_probs: torch.Tensor  # [B, N]: each step's log-probability under the sampling policy
    sigmas: torch.Tensor  # [N+1]

    def select(self, idx: list[int]) -> Trajectory:
        return Trajectory(self.latents[idx], self.log_probs[idx], self.sigmas)


def sample_key(seed: int, step: int, prompt: int, index: int) -> int:
    """One sample's generator seed (a fixed mix of its coordinates, the same on every rank)."""
    return (seed * 1_000_003 + step * 7_919 + prompt * 131 + index) % (2**63 - 1)


@torch.no_grad()
def rollout(model: GenModel, cond: TextCond, uncond: TextCond | None, keys: list[int], shape: tuple[int, ...],
            num_steps: int, guidance: float, noise_level: float) -> Trajectory:
    """Sample len(keys) latents of `shape` in one batch (cond [B] rows, one per sample;
    `uncond` [1] the negative prompt's, or None without guidance), `num_steps` SDE steps.
    With noise_level 0 it is the ODE (Euler) sampler and the log-probs are meaningless."""
    gens = [torch.Generator().manual_seed(k) for k in keys]
    x = torch.stack([torch.randn(shape, generator=g) for g in gens]).to(model.device)  # [B, ...]
    sigmas = model.sigmas(num_steps)
    b = x.shape[0]
    neg = None if uncond is None else uncond.select([0] * b)
    latents, log_probs = [x], []
    for i in range(num_steps):
        s = torch.full((b,), float(sigmas[i]))
        v = model.velocity(x, s, cond, neg, guidance)
        noise = torch.stack([torch.randn(shape, generator=g) for g in gens]).to(x.device)
        out = sde_step(x, v, s, float(sigmas[i + 1]), float(sigmas[1]), noise_level, noise=noise)
        x = out.prev_sample
        latents.append(x)
        log_probs.append(out.log_prob)
    return Trajectory(torch.stack(latents, dim=1), torch.stack(log_probs, dim=1), sigmas)


def score_step(model: GenModel, traj: Trajectory, j: int, cond: TextCond, uncond: TextCond | None,
               guidance: float, noise_level: float) -> SDEStep:
    """Step j of stored trajectories under `model` (gradients flow where the caller allows):
    the log-probability of the stored x_{j+1} given the stored x_j, the step's mean and std."""
    sigmas = traj.sigmas
    b = traj.latents.shape[0]
    x = traj.latents[:, j]
    s = torch.full((b,), float(sigmas[j]))
    neg = None if uncond is None else uncond.select([0] * b)
    v = model.velocity(x, s, cond, neg, guidance)
    return sde_step(x, v, s, float(sigmas[j + 1]), float(sigmas[1]), noise_level, prev_sample=traj.latents[:, j + 1])
