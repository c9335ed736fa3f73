import math

import pytest
import torch

from harness.algos.kl import kl_estimate, kl_loss, kl_penalty_rewards


def assert_close(actual, expected, **kw):
    torch.testing.assert_close(actual, torch.as_tensor(expected, dtype=actual.dtype), **kw)


# logp - ref = [0.5, 0, -1]
LOGP = torch.tensor([[-1.0, -2.0, -3.0]], dtype=torch.float64)
REF = torch.tensor([[-1.5, -2.0, -2.0]], dtype=torch.float64)


def k3(d):  # d = logp - ref; k3 = exp(-d) + d - 1
    return math.exp(-d) + d - 1


def test_estimators_by_hand():
    assert_close(kl_estimate(LOGP, REF, "k1"), [[0.5, 0.0, -1.0]])
    assert_close(kl_estimate(LOGP, REF, "kl"), [[0.5, 0.0, -1.0]])
    assert_close(kl_estimate(LOGP, REF, "abs"), [[0.5, 0.0, 1.0]])
    assert_close(kl_estimate(LOGP, REF, "k2"), [[0.125, 0.0, 0.5]])
    assert_close(kl_estimate(LOGP, REF, "mse"), [[0.125, 0.0, 0.5]])
    # k3: exp(-.5) + .5 - 1 = 0.10653; 0; exp(1) - 1 - 1 = 0.71828
    assert_close(kl_estimate(LOGP, REF, "k3"), [[k3(0.5), 0.0, k3(-1.0)]])
    assert_close(kl_estimate(LOGP, REF, "low_var_kl"), [[0.1065306597, 0.0, 0.7182818285]])
    assert_close(kl_estimate(LOGP, REF), kl_estimate(LOGP, REF, "k3"))  # default: low_var_kl


def test_k3_nonnegative_and_close_to_k2_for_small_differences():
    g = torch.Generator().manual_seed(0)
    logp = torch.randn(8, 64, generator=g, dtype=torch.float64) * 3
    ref = torch.randn(8, 64, generator=g, dtype=torch.float64) * 3
    assert (kl_estimate(logp, ref, "k3") >= 0).all()
    small = ref + 1e-3 * torch.randn(8, 64, generator=g, dtype=torch.float64)
    # k3 = d^2/2 - d^3/6 + ...: relative gap to k2 is about |d|/3
    torch.testing.assert_close(
        kl_estimate(small, ref, "k3"), kl_estimate(small, ref, "k2"), rtol=5e-3, atol=1e-12
    )


def test_k3_clamps_huge_differences():
    # ref - logp = +1000 -> clamp 20 -> e^20 - 21 -> clamp 10; -1000 -> e^-20 + 19 -> clamp 10
    logp = torch.tensor([[-1000.0, 0.0, -1.0]], requires_grad=True)
    ref = torch.tensor([[0.0, -1000.0, -1.0]])
    out = kl_estimate(logp, ref, "k3")
    assert_close(out, [[10.0, 10.0, 0.0]])
    (g,) = torch.autograd.grad(out.sum(), logp)
    assert torch.isfinite(g).all() and g[0, :2].eq(0).all()


def test_unknown_kind():
    with pytest.raises(ValueError, match="unknown KL estimator 'full'"):
        kl_estimate(LOGP, REF, "full")


def test_kl_loss_token_mean_with_mask():
    # k1 over valid tokens 0 and 2: (0.5 - 1) / 2; masked NaN ignored
    logp = LOGP.clone()
    logp[0, 1] = float("nan")
    mask = torch.tensor([[1, 0, 1]])
    assert_close(kl_loss(logp, REF, mask, kind="k1"), -0.25)
    assert_close(kl_loss(logp, REF, mask), (k3(0.5) + k3(-1.0)) / 2)
    x = LOGP.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(kl_loss(x, REF, mask, kind="k2"), x)
    # d/dlogp 0.5 d^2 = d, over 2 tokens; masked position gets 0
    assert_close(g, [[0.25, 0.0, -0.5]])


def test_kl_penalty_rewards_by_hand():
    # scores - 0.5 * k1 = [0 - .25, 0 - 0, 1 + .5]; position 3 is padding -> 0
    scores = torch.tensor([[0.0, 0.0, 1.0, 7.0]], dtype=torch.float64)
    logp = torch.cat([LOGP, torch.tensor([[5.0]], dtype=torch.float64)], dim=1)
    ref = torch.cat([REF, torch.tensor([[0.0]], dtype=torch.float64)], dim=1)
    out = kl_penalty_rewards(scores, logp, ref, torch.tensor([[1, 1, 1, 0]]), kl_coef=0.5)
    assert_close(out, [[-0.25, 0.0, 1.5, 0.0]])
    assert not out.requires_grad
