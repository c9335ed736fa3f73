import math

import pytest
import torch

from harness.algos.losses import aggregate, entropy_from_logits, masked_mean, policy_loss


def assert_close(actual, expected, **kw):
    torch.testing.assert_close(actual, torch.as_tensor(expected, dtype=actual.dtype), **kw)


# ---------------------------------------------------------------- aggregate

LOSS = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
MASK = torch.tensor([[1, 1, 0], [1, 0, 0]])


def test_aggregate_modes_by_hand():
    # valid: row 0 -> 1, 2; row 1 -> 4
    assert_close(aggregate(LOSS, MASK, "token-mean"), (1 + 2 + 4) / 3)
    assert_close(aggregate(LOSS, MASK, "seq-mean-token-mean"), (1.5 + 4.0) / 2)
    assert_close(aggregate(LOSS, MASK, "seq-mean-token-sum"), (3.0 + 4.0) / 2)
    # Dr.GRPO: (1/G) sum_i sum_t loss / horizon, with the constant horizon (max response length)
    assert_close(aggregate(LOSS, MASK, "seq-mean-token-sum-norm", horizon=8), (3.0 + 4.0) / 2 / 8)


def test_dr_grpo_aggregation_needs_its_horizon():
    with pytest.raises(ValueError, match="horizon"):
        aggregate(LOSS, MASK, "seq-mean-token-sum-norm")


def test_aggregate_empty_rows_no_nan():
    # row 1 has no valid token: it adds 0 and is not counted as a sequence
    mask = torch.tensor([[1, 1, 0], [0, 0, 0]])
    assert_close(aggregate(LOSS, mask, "token-mean"), 1.5)
    assert_close(aggregate(LOSS, mask, "seq-mean-token-mean"), 1.5)
    assert_close(aggregate(LOSS, mask, "seq-mean-token-sum"), 3.0)
    x = LOSS.clone().requires_grad_(True)
    for mode in ("token-mean", "seq-mean-token-mean", "seq-mean-token-sum"):
        out = aggregate(x, torch.zeros(2, 3), mode)
        assert out.item() == 0.0
        (g,) = torch.autograd.grad(out, x)
        assert torch.equal(g, torch.zeros_like(g))


def test_aggregate_ignores_garbage_under_mask():
    garbage = LOSS.clone()
    garbage[~MASK.bool()] = float("nan")
    for mode in ("token-mean", "seq-mean-token-mean", "seq-mean-token-sum"):
        assert_close(aggregate(garbage, MASK, mode), aggregate(LOSS, MASK, mode))


@pytest.mark.parametrize("mode", ["token-mean", "seq-mean-token-mean", "seq-mean-token-sum", "seq-mean-token-sum-norm"])
def test_aggregate_micro_batches_sum_to_full_batch(mode):
    g = torch.Generator().manual_seed(0)
    loss = torch.randn(5, 7, generator=g, dtype=torch.float64)
    mask = torch.rand(5, 7, generator=g) > 0.4
    mask[2] = False
    full = aggregate(loss, mask, mode, horizon=7)
    n_tok = mask.sum()
    n_seq = mask.any(dim=1).sum()
    parts = [
        aggregate(loss[a:b], mask[a:b], mode, num_tokens=n_tok, num_seqs=n_seq, horizon=7)
        for a, b in ((0, 1), (1, 3), (3, 5))
    ]
    assert_close(sum(parts), full)


def test_aggregate_errors():
    with pytest.raises(ValueError, match="unknown loss aggregation mode 'seq-mean'"):
        aggregate(LOSS, MASK, "seq-mean")
    with pytest.raises(ValueError, match=r"\[B, L\]"):
        aggregate(LOSS, MASK[:, :2])


def test_masked_mean():
    assert_close(masked_mean(LOSS, MASK), 7 / 3)
    assert_close(masked_mean(LOSS, MASK, dim=1), [1.5, 4.0])
    assert masked_mean(LOSS, torch.zeros(2, 3)).item() == 0.0


# ---------------------------------------------------------------- policy loss

# One token per clip branch (clip_low .2, clip_high .3, dual clip 3):
#   0: ratio 1.1, A= 2: inside          pg = -2.2                     grad -A*r = -2.2
#   1: ratio 1.5, A= 1: above 1.3, A>0  max(-1.5, -1.3) = -1.3        clipped, grad 0
#   2: ratio 0.5, A=-1: below 0.8, A<0  max(0.5, 0.8) = 0.8           clipped, grad 0
#   3: ratio 5.0, A=-1: dual clip       max(5, 1.3) = 5 -> min(5, 3)  = 3, grad 0
#   4: ratio 1.5, A=-1: above, A<0      max(1.5, 1.3) = 1.5           unclipped, grad 1.5
#   5: ratio 0.5, A= 1: below, A>0      max(-0.5, -0.8) = -0.5        unclipped, grad -0.5
RATIOS = [1.1, 1.5, 0.5, 5.0, 1.5, 0.5]
ADVS = [2.0, 1.0, -1.0, -1.0, -1.0, 1.0]
PG = [-2.2, -1.3, 0.8, 3.0, 1.5, -0.5]
GRAD = [-2.2, 0.0, 0.0, 0.0, 1.5, -0.5]


def branch_case(dtype=torch.float64):
    old = torch.tensor([[-1.0, -2.0, -0.5, -3.0, -1.5, -0.7]], dtype=dtype)
    logp = (old + torch.tensor([RATIOS], dtype=dtype).log()).requires_grad_(True)
    adv = torch.tensor([ADVS], dtype=dtype)
    return logp, old, adv, torch.ones(1, 6)


def test_policy_loss_each_branch_by_hand():
    logp, old, adv, mask = branch_case()
    loss, stats = policy_loss(logp, old, adv, mask)
    assert_close(loss, sum(PG) / 6)  # token-mean: 1.3 / 6
    (g,) = torch.autograd.grad(loss, logp)
    # d pg / d logp = -A * ratio on the unclipped branch, 0 where any clip is active
    assert_close(g, [[x / 6 for x in GRAD]])
    assert stats["clip_frac"] == pytest.approx(2 / 6)  # tokens 1, 2
    assert stats["clip_frac_high"] == pytest.approx(1 / 6)
    assert stats["clip_frac_low"] == pytest.approx(1 / 6)
    assert stats["dual_clip_frac"] == pytest.approx(1 / 6)  # token 3
    assert stats["ratio_mean"] == pytest.approx(sum(RATIOS) / 6)
    assert stats["ratio_max"] == pytest.approx(5.0)
    assert stats["ratio_min"] == pytest.approx(0.5)
    assert stats["approx_kl"] == pytest.approx(sum(-math.log(r) for r in RATIOS) / 6)
    assert stats["approx_kl_k3"] == pytest.approx(sum(r - 1 - math.log(r) for r in RATIOS) / 6)
    assert all(isinstance(v, float) for v in stats.values())


def test_policy_loss_without_dual_clip():
    # token 3 keeps pg = 5 and its gradient -A*r = 5
    logp, old, adv, mask = branch_case()
    loss, stats = policy_loss(logp, old, adv, mask, dual_clip=None)
    pg = list(PG)
    pg[3] = 5.0
    assert_close(loss, sum(pg) / 6)
    (g,) = torch.autograd.grad(loss, logp)
    assert g[0, 3].item() == pytest.approx(5.0 / 6)
    assert stats["dual_clip_frac"] == 0.0


def test_policy_loss_symmetric_dapo_clip():
    # clip_high .28: token 1 clipped at 1.28 -> -1.28
    logp, old, adv, mask = branch_case()
    loss, _ = policy_loss(logp[:, :2], old[:, :2], adv[:, :2], mask[:, :2], clip_high=0.28)
    assert_close(loss, (-2.2 - 1.28) / 2)


def test_policy_loss_huge_log_ratio_is_finite():
    # log ratio 50 is clamped to 20 before exp: no inf, gradient 0 through the clamp
    old = torch.zeros(1, 2, dtype=torch.float64)
    logp = torch.tensor([[50.0, -50.0]], dtype=torch.float64, requires_grad=True)
    adv = torch.tensor([[1.0, 1.0]], dtype=torch.float64)
    loss, stats = policy_loss(logp, old, adv, torch.ones(1, 2))
    # token 0: ratio e^20 clipped at 1.3 -> -1.3; token 1: ratio e^-20, A>0 unclipped -> -e^-20
    assert_close(loss, (-1.3 - math.exp(-20)) / 2)
    (g,) = torch.autograd.grad(loss, logp)
    assert torch.isfinite(g).all() and g[0, 0] == 0.0
    assert math.isfinite(stats["ratio_max"])


def test_policy_loss_masked_values_change_nothing():
    logp, old, adv, _ = branch_case()
    mask = torch.tensor([[1, 1, 0, 1, 0, 1]])
    loss, stats = policy_loss(logp, old, adv, mask)
    (g,) = torch.autograd.grad(loss, logp)
    # valid tokens 0, 1, 3, 5: (-2.2 - 1.3 + 3 - 0.5) / 4
    assert_close(loss, -1.0 / 4)
    bad = torch.tensor([[0, 0, 1, 0, 1, 0]], dtype=torch.bool)
    logp2 = torch.where(bad, torch.tensor(float("nan"), dtype=logp.dtype), logp.detach())
    logp2.requires_grad_(True)
    old2 = torch.where(bad, torch.tensor(1e4, dtype=old.dtype), old)
    adv2 = torch.where(bad, torch.tensor(-1e6, dtype=adv.dtype), adv)
    loss2, stats2 = policy_loss(logp2, old2, adv2, mask)
    (g2,) = torch.autograd.grad(loss2, logp2)
    assert_close(loss2, loss)
    assert_close(g2, g)
    assert g2[bad].eq(0).all()
    assert stats2 == pytest.approx(stats)


def test_policy_loss_seq_mean_mode():
    # rows [-2.2, -1.3, 0.8] and [3, 1.5, -0.5], second row's last token masked:
    # seq-mean-token-mean = ((-2.7/3) + (4.5/2)) / 2
    logp, old, adv, _ = branch_case()
    mask = torch.tensor([[1, 1, 1], [1, 1, 0]])
    loss, _ = policy_loss(
        logp.reshape(2, 3), old.reshape(2, 3), adv.reshape(2, 3), mask, agg="seq-mean-token-mean"
    )
    assert_close(loss, ((-2.7 / 3) + (4.5 / 2)) / 2)


def test_policy_loss_validates():
    logp, old, adv, mask = branch_case()
    with pytest.raises(ValueError, match="dual_clip"):
        policy_loss(logp, old, adv, mask, dual_clip=0.5)
    with pytest.raises(ValueError, match="share a shape"):
        policy_loss(logp, old[:, :3], adv, mask)
    with pytest.raises(ValueError, match="unknown loss aggregation"):
        policy_loss(logp, old, adv, mask, agg="mean")


def test_policy_loss_no_valid_tokens():
    logp, old, adv, _ = branch_case()
    loss, stats = policy_loss(logp, old, adv, torch.zeros(1, 6))
    assert loss.item() == 0.0
    assert all(v == 0.0 for v in stats.values())


# ---------------------------------------------------------------- entropy


def test_entropy_by_hand():
    # uniform over 4 -> log 4; one finite logit among -inf -> 0
    logits = torch.tensor([[0.0, 0.0, 0.0, 0.0], [2.0, -math.inf, -math.inf, -math.inf]])
    logits.requires_grad_(True)
    h = entropy_from_logits(logits)
    assert_close(h, [math.log(4), 0.0], atol=1e-6, rtol=0)
    (g,) = torch.autograd.grad(h.sum(), logits)
    assert torch.isfinite(g).all()


def test_entropy_matches_definition_and_is_stable():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 5, 11, generator=g, dtype=torch.float64)
    p = logits.softmax(-1)
    assert_close(entropy_from_logits(logits), -(p * p.log()).sum(-1))
    # shifting logits by a huge constant changes nothing
    assert_close(entropy_from_logits(logits + 1e4), entropy_from_logits(logits), atol=1e-8, rtol=0)
    h = entropy_from_logits(logits.to(torch.bfloat16))
    assert h.dtype == torch.float32 and h.shape == (3, 5)
