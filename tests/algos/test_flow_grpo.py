"""Flow-GRPO's SDE step, KL, loss and advantages against closed forms and hand values."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.distributions import Normal, kl_divergence

from harness.algos.flow_grpo import (
    clipped_loss,
    flow_grpo_kl,
    group_advantages,
    pooled_std,
    sde_step,
    trained_steps,
)


@settings(max_examples=40, deadline=None)
@given(sigma=st.floats(0.05, 0.95), frac=st.floats(0.05, 0.9), level=st.floats(0.1, 1.0),
       shape=st.sampled_from([(2, 3), (1, 4, 2, 2), (3, 2, 2, 2, 2)]), seed=st.integers(0, 999))
def test_step_mean_std_and_log_prob_are_the_closed_form(sigma, frac, level, shape, seed):
    """mean = x + dt [v + std^2 / (2 sigma) (x + (1 - sigma) v)] (the reverse SDE's drift),
    std = level sqrt(sigma / (1 - sigma)) sqrt(-dt), and the log-prob is the Gaussian's,
    averaged over elements; any latent rank (image [B, C, H, W], video [B, C, F, H, W])."""
    g = torch.Generator().manual_seed(seed)
    x, v, eps = (torch.randn(shape, generator=g, dtype=torch.float64) for _ in range(3))
    nxt = sigma * (1 - frac)
    out = sde_step(x, v, sigma, nxt, sigma_max=0.97, noise_level=level, noise=eps)
    dt = nxt - sigma
    std = level * math.sqrt(sigma / (1 - sigma))
    mean = x + dt * (v + std**2 / (2 * sigma) * (x + (1 - sigma) * v))
    torch.testing.assert_close(out.mean, mean.float(), rtol=1e-5, atol=1e-5)
    step_std = std * math.sqrt(-dt)
    torch.testing.assert_close(out.prev_sample, (mean + step_std * eps).float(), rtol=1e-5, atol=1e-5)
    ref = Normal(mean, step_std).log_prob(out.prev_sample.double()).mean(dim=tuple(range(1, len(shape))))
    torch.testing.assert_close(out.log_prob, ref.float(), rtol=1e-4, atol=1e-4)
    again = sde_step(x, v, sigma, nxt, sigma_max=0.97, noise_level=level, prev_sample=out.prev_sample)
    torch.testing.assert_close(again.log_prob, out.log_prob)


def test_sigma_one_uses_the_second_sigma_and_level_zero_is_euler():
    x, v = torch.randn(2, 4), torch.randn(2, 4)
    out = sde_step(x, v, torch.tensor([1.0, 0.5]), torch.tensor([0.9, 0.4]), sigma_max=0.9, noise_level=0.7,
                   noise=torch.zeros(2, 4))
    assert out.std_dev_t.reshape(-1).tolist() == pytest.approx([0.7 * math.sqrt(1 / 0.1), 0.7])
    euler = sde_step(x, v, 0.5, 0.4, sigma_max=0.9, noise_level=0.0, noise=torch.randn(2, 4))
    torch.testing.assert_close(euler.prev_sample, x - 0.1 * v)
    with pytest.raises(ValueError, match="exactly one"):
        sde_step(x, v, 0.5, 0.4, sigma_max=0.9, noise_level=0.7)


def test_the_sde_keeps_the_flow_marginals():
    """For data at one point c, x_sigma ~ N((1 - sigma) c, sigma^2) and the exact velocity is
    (x - c) / sigma. Many small SDE steps from sigma 0.9 to 0.3 must land on the same
    marginal as the ODE: mean 0.7 c, std 0.3 (the point of the conversion)."""
    g = torch.Generator().manual_seed(0)
    c = torch.tensor([1.5, -2.0])
    x = 0.1 * c + 0.9 * torch.randn(40000, 2, generator=g)
    sigmas = torch.linspace(0.9, 0.3, 401)
    for s, s_next in zip(sigmas[:-1], sigmas[1:], strict=True):
        x = sde_step(x, (x - c) / s, s, s_next, sigma_max=0.99, noise_level=0.7,
                     noise=torch.randn(x.shape, generator=g)).prev_sample
    torch.testing.assert_close(x.mean(0), 0.7 * c, atol=0.02, rtol=0)
    torch.testing.assert_close(x.std(0), torch.full((2,), 0.3), atol=0.01, rtol=0)


def test_kl_is_the_gaussian_kl_times_the_step_length():
    """Both step Gaussians share their std; Flow-GRPO divides by std_dev_t^2, without the
    step's sqrt(-dt): the exact KL (per element, averaged) times |dt|."""
    x, v, v_ref = torch.randn(3, 2, 4), torch.randn(3, 2, 4), torch.randn(3, 2, 4)
    a = sde_step(x, v, 0.6, 0.5, sigma_max=0.9, noise_level=0.7, noise=torch.zeros_like(x))
    b = sde_step(x, v_ref, 0.6, 0.5, sigma_max=0.9, noise_level=0.7, noise=torch.zeros_like(x))
    exact = kl_divergence(Normal(a.mean, a.step_std), Normal(b.mean, b.step_std)).mean(dim=(1, 2))
    torch.testing.assert_close(flow_grpo_kl(a.mean, b.mean, a.std_dev_t), exact * 0.1, rtol=1e-4, atol=1e-6)


def test_clipped_loss_hand_values():
    logp = torch.tensor([0.0, math.log(1.5), math.log(0.5), math.log(1.05)])
    old = torch.zeros(4)
    adv = torch.tensor([1.0, 1.0, -2.0, -1.0])
    loss, clipped = clipped_loss(logp, old, adv, clip_range=0.1)
    # ratio 1: -1; 1.5 with A>0: max(-1.5, -1.1) = -1.1; 0.5 with A<0: max(1.0, 1.8) = 1.8; 1.05 inside: 1.05
    torch.testing.assert_close(loss, torch.tensor([-1.0, -1.1, 1.8, 1.05]))
    assert clipped.tolist() == [False, True, True, False]


def test_group_advantages_hand_values():
    r = torch.tensor([1.0, 0.0, 2.0, 2.0, 4.0, 0.0])
    groups = torch.tensor([0, 0, 0, 1, 1, 1])
    per = group_advantages(r, groups, clip=5.0, eps=0.0)
    s0 = math.sqrt(2 / 3)
    s1 = math.sqrt(8 / 3)
    torch.testing.assert_close(per, torch.tensor([0.0, -1 / s0, 1 / s0, 0.0, 2 / s1, -2 / s1]))
    every = pooled_std(6, float(r.sum()), float((r**2).sum()))
    assert every == pytest.approx(float(r.std(unbiased=False)))
    glob = group_advantages(r, groups, clip=1.0, global_std=every, eps=0.0)
    torch.testing.assert_close(glob, (torch.tensor([0.0, -1, 1, 0, 2, -2]) / every).clamp(-1, 1))
    assert group_advantages(torch.ones(3), torch.zeros(3, dtype=torch.long), clip=5.0).abs().max() == 0


def test_trained_steps():
    assert trained_steps(10, 0.99) == list(range(9))
    assert trained_steps(4, 1.0) == [0, 1, 2, 3]
    with pytest.raises(ValueError):
        trained_steps(4, 0.1)
