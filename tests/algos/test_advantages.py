import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.algos.advantages import (
    broadcast_to_tokens,
    dapo_keep_mask,
    grpo_advantages,
    last_token_rewards,
    mean_band_keep_mask,
    reinforce_pp_advantages,
    reinforce_pp_returns,
    rloo_advantages,
    whiten,
)

EPS = 1e-6


def t(x, dtype=torch.float64):
    return torch.tensor(x, dtype=dtype)


def ids(x):
    return torch.tensor(x, dtype=torch.long)


def assert_close(actual, expected, **kw):
    torch.testing.assert_close(actual, torch.as_tensor(expected, dtype=actual.dtype), **kw)


# ---------------------------------------------------------------- GRPO


def test_grpo_one_group_by_hand():
    # mean 0.75; deviations [.25, -.75, .25, .25]; sum sq 0.75; unbiased var 0.75/3 = 0.25
    # -> std 0.5; advantages = deviations / (0.5 + 1e-6) ~ [0.5, -1.5, 0.5, 0.5]
    adv = grpo_advantages(t([1.0, 0.0, 1.0, 1.0]), ids([0, 0, 0, 0]))
    d = 0.5 + EPS
    assert_close(adv, [0.25 / d, -0.75 / d, 0.25 / d, 0.25 / d])


def test_grpo_interleaved_groups_by_hand():
    # group 0 = samples 0, 2 -> rewards {1, 0}: mean .5, unbiased std sqrt(.5)
    # group 1 = samples 1, 3 -> rewards {2, 4}: mean 3,  unbiased std sqrt(2)
    adv = grpo_advantages(t([1.0, 2.0, 0.0, 4.0]), ids([0, 1, 0, 1]))
    s0, s1 = math.sqrt(0.5) + EPS, math.sqrt(2.0) + EPS
    assert_close(adv, [0.5 / s0, -1.0 / s1, -0.5 / s0, 1.0 / s1])


def test_grpo_matches_torch_std_reference():
    g = torch.Generator().manual_seed(0)
    rewards = torch.rand(12, generator=g, dtype=torch.float64)
    group = ids([3, 1, 3, 2, 1, 1, 3, 2, 2, 3, 1, 2])
    adv = grpo_advantages(rewards, group)
    for gid in group.unique():
        sel = group == gid
        r = rewards[sel]
        assert_close(adv[sel], (r - r.mean()) / (r.std() + EPS))  # torch.std: unbiased


def test_grpo_singleton_and_constant_groups_get_zero():
    # ids need not be small or contiguous; group 7 has one sample, group -3 is all equal
    adv = grpo_advantages(t([1.0, 0.0, 5.0, 0.3, 0.3]), ids([100, 100, 7, -3, -3]))
    d = math.sqrt(0.5) + EPS
    assert_close(adv, [0.5 / d, -0.5 / d, 0.0, 0.0, 0.0])


def test_dr_grpo_does_not_scale():
    adv = grpo_advantages(t([1.0, 0.0, 1.0, 1.0]), ids([0, 0, 0, 0]), scale_by_std=False)
    assert_close(adv, [0.25, -0.75, 0.25, 0.25])


def test_grpo_dtype_and_no_grad():
    r = torch.tensor([1.0, 0.0], requires_grad=True)
    adv = grpo_advantages(r, ids([0, 0]))
    assert adv.dtype == torch.float32 and not adv.requires_grad
    assert grpo_advantages(torch.tensor([1, 0]), ids([0, 0])).dtype == torch.float32
    assert grpo_advantages(t([]), ids([])).shape == (0,)


def test_grpo_rejects_bad_inputs():
    with pytest.raises(ValueError, match="integer"):
        grpo_advantages(t([1.0, 0.0]), t([0.0, 0.0]))
    with pytest.raises(ValueError, match="length"):
        grpo_advantages(t([1.0, 0.0]), ids([0, 0, 0]))
    with pytest.raises(ValueError, match="1-D"):
        grpo_advantages(t([[1.0, 0.0]]), ids([[0, 0]]))


@st.composite
def grouped_batches(draw):
    n = draw(st.integers(1, 24))
    rewards = draw(
        st.lists(st.sampled_from([0.0, 0.1, 0.5, 0.9, 1.0, -1.0]), min_size=n, max_size=n)
    )
    groups = draw(st.lists(st.integers(0, 5), min_size=n, max_size=n))
    perm = draw(st.permutations(range(n)))
    return t(rewards), ids(groups), torch.tensor(perm)


@settings(max_examples=60, deadline=None)
@given(grouped_batches(), st.booleans())
def test_advantages_invariant_under_permutation(batch, scale_by_std):
    # the authors' reordering broke "a group's samples are adjacent" (pitfall 3):
    # each sample's advantage must depend only on its group, not on where it sits
    rewards, group, perm = batch
    adv = grpo_advantages(rewards, group, scale_by_std=scale_by_std)
    adv_perm = grpo_advantages(rewards[perm], group[perm], scale_by_std=scale_by_std)
    assert_close(adv_perm, adv[perm])
    assert_close(rloo_advantages(rewards[perm], group[perm]), rloo_advantages(rewards, group)[perm])
    assert torch.equal(
        dapo_keep_mask(rewards[perm], group[perm]), dapo_keep_mask(rewards, group)[perm]
    )
    # and equal to computing on the contiguous (sorted by group) layout
    order = torch.argsort(group, stable=True)
    adv_sorted = grpo_advantages(rewards[order], group[order], scale_by_std=scale_by_std)
    assert_close(adv_sorted, adv[order])


# ---------------------------------------------------------------- RLOO


def test_rloo_by_hand():
    # sample 0: 1 - mean(0, 1, 1) = 1/3; sample 1: 0 - mean(1, 1, 1) = -1;
    # = n/(n-1) * (r - mean) = 4/3 * [.25, -.75, .25, .25]; lone sample (id 9) -> 0
    adv = rloo_advantages(t([1.0, 0.0, 1.0, 1.0, 7.0]), ids([0, 0, 0, 0, 9]))
    assert_close(adv, [1 / 3, -1.0, 1 / 3, 1 / 3, 0.0])


# ---------------------------------------------------------------- DAPO filter


def test_dapo_keep_mask():
    # group 0 all 1 -> drop; group 1 {0, 1} -> keep; group 2 all .5 -> drop; group 3 alone -> drop
    keep = dapo_keep_mask(t([1.0, 0.0, 0.5, 1.0, 1.0, 0.5, 2.0]), ids([0, 1, 2, 0, 1, 2, 3]))
    assert keep.tolist() == [False, True, False, False, True, False, False]


# ---------------------------------------------------------------- token helpers


def test_broadcast_to_tokens():
    out = broadcast_to_tokens(t([2.0, -1.0]), torch.tensor([[1, 1, 0], [1, 0, 0]]))
    assert_close(out, [[2.0, 2.0, 0.0], [-1.0, 0.0, 0.0]])
    with pytest.raises(ValueError):
        broadcast_to_tokens(t([1.0]), torch.ones(2, 3))


def test_last_token_rewards_handles_holes_and_empty_rows():
    mask = torch.tensor([[1, 1, 0, 0], [1, 0, 1, 0], [0, 0, 0, 0]])
    out = last_token_rewards(t([3.0, 5.0, 9.0]), mask)
    assert_close(out, [[0, 3.0, 0, 0], [0, 0, 5.0, 0], [0, 0, 0, 0]])


# ---------------------------------------------------------------- REINFORCE++


def test_returns_discounted_by_hand():
    # gamma .5: G2 = 3; G1 = 2 + .5*3 = 3.5; G0 = 1 + .5*3.5 = 2.75; padding -> 0
    out = reinforce_pp_returns(t([[1.0, 2.0, 3.0, 0.0]]), torch.tensor([[1, 1, 1, 0]]), gamma=0.5)
    assert_close(out, [[2.75, 3.5, 3.0, 0.0]])


def test_returns_skip_masked_positions():
    # the masked 9 adds nothing and costs no discount step: G0 = 1 + .5*2 = 2
    out = reinforce_pp_returns(t([[1.0, 9.0, 2.0]]), torch.tensor([[1, 0, 1]]), gamma=0.5)
    assert_close(out, [[2.0, 0.0, 2.0]])


def test_returns_undiscounted_fast_path_matches_loop():
    # gamma 1 uses a reverse cumsum; gamma 1 - 1e-12 takes the loop: same values
    g = torch.Generator().manual_seed(0)
    r = torch.randn(4, 9, generator=g, dtype=torch.float64)
    mask = torch.rand(4, 9, generator=g) > 0.3
    fast = reinforce_pp_returns(r, mask, gamma=1.0)
    assert_close(fast, reinforce_pp_returns(r, mask, gamma=1.0 - 1e-12))
    # by hand: [1, 9 (masked), 2] -> [3, 0, 2]
    out = reinforce_pp_returns(t([[1.0, 9.0, 2.0]]), torch.tensor([[1, 0, 1]]))
    assert_close(out, [[3.0, 0.0, 2.0]])


def test_whiten_by_hand():
    # valid [1, 2, 3]: mean 2, unbiased var (1 + 0 + 1)/2 = 1 -> [-1, 0, 1]; padding -> 0
    values, mask = t([1.0, 2.0, 3.0, 100.0]), torch.tensor([1, 1, 1, 0])
    s = math.sqrt(1.0 + 1e-8)
    assert_close(whiten(values, mask), [-1 / s, 0.0, 1 / s, 0.0])
    assert_close(whiten(values, mask, shift_mean=False), [-1 / s + 2, 2.0, 1 / s + 2, 0.0])


def test_reinforce_pp_advantages_by_hand():
    # seq rewards [1, 0] at the last valid token; gamma 1 -> returns [[1, 1, -], [0, 0, 0]]
    # valid returns 1,1,0,0,0: mean .4, centered [.6,.6,-.4,-.4,-.4], sum sq 1.2, var 1.2/4 = .3
    mask = torch.tensor([[1, 1, 0], [1, 1, 1]])
    adv, ret = reinforce_pp_advantages(t([1.0, 0.0]), mask)
    assert_close(ret, [[1.0, 1.0, 0.0], [0.0, 0.0, 0.0]])
    s = math.sqrt(0.3 + 1e-8)
    assert_close(adv, [[0.6 / s, 0.6 / s, 0.0], [-0.4 / s, -0.4 / s, -0.4 / s]])


def test_reinforce_pp_kl_penalty_by_hand():
    # token rewards = -0.1*kl + seq reward at last valid token (masked kl 9 ignored):
    # row 0: [-.05, 1 - .05, 0] -> returns [.9, .95, 0]
    # row 1: [-.1, -.1, -.1]    -> returns [-.3, -.2, -.1]
    mask = torch.tensor([[1, 1, 0], [1, 1, 1]])
    kl = t([[0.5, 0.5, 9.0], [1.0, 1.0, 1.0]])
    adv, ret = reinforce_pp_advantages(t([1.0, 0.0]), mask, kl=kl, kl_coef=0.1)
    assert_close(ret, [[0.9, 0.95, 0.0], [-0.3, -0.2, -0.1]])
    assert_close(adv, whiten(ret, mask))
    assert abs(float(adv[mask.bool()].mean())) < 1e-12


# ---------------------------------------------------------------- the authors' DAPO filter


def test_mean_band_keeps_what_the_authors_keep():
    """Weighted rewards (0.9 accuracy + 0.1 format): a group all right without format (0.9
    each) has no signal; the authors' band (0.01, 0.99) keeps it, `dapo_keep_mask` does not.
    All right with format (1.0) and all wrong without (0.0) fall outside the band."""
    rewards = t([0.9, 0.9, 1.0, 1.0, 0.0, 0.0, 1.0, 0.1])
    groups = ids([0, 0, 1, 1, 2, 2, 3, 3])
    band = mean_band_keep_mask(rewards, groups, 0.01, 0.99)
    assert band.tolist() == [True, True, False, False, False, False, True, True]
    assert dapo_keep_mask(rewards, groups).tolist() == [False] * 6 + [True, True]


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(0, 1), min_size=1, max_size=24), st.integers(1, 5))
def test_mean_band_equals_distinct_for_binary_rewards(bits, n_groups):
    rewards = t([float(b) for b in bits])
    groups = ids([i % n_groups for i in range(len(bits))])
    assert torch.equal(mean_band_keep_mask(rewards, groups, 0.01, 0.99), dapo_keep_mask(rewards, groups))


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 5), st.integers(1, 9), st.integers(0, 2**16))
def test_whitening_a_batch_split_over_processes_equals_whitening_it_whole(parts, width, seed):
    """What data-parallel REINFORCE++ relies on: each part whitened with the moments summed
    over all parts (the `reduce` a DP group would run) equals the whole batch whitened."""
    g = torch.Generator().manual_seed(seed)
    rows = parts * 2
    values = torch.randn(rows, width, generator=g, dtype=torch.float64)
    mask = torch.rand(rows, width, generator=g) > 0.3
    whole = whiten(values, mask)
    chunks = [(values[2 * k : 2 * k + 2], mask[2 * k : 2 * k + 2]) for k in range(parts)]
    moments = [[float(m.sum()), float(v[m].sum()), float((v[m] ** 2).sum())] for v, m in chunks]

    def reduce(_mine):
        return [sum(col) for col in zip(*moments, strict=True)]

    split = torch.cat([whiten(v, m, reduce=reduce) for v, m in chunks])
    assert_close(split, whole, rtol=1e-9, atol=1e-9)
