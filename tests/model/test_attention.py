"""The shared-prefix and padding-free passes are exact: packed-row attention equals
attention under the dense mask it stands for, and a prompt's G responses behind one copy of
it, and several prompts' groups in one unpadded row, get the log-probs and gradients of
separate sequences through the LLM's own attention."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.model.attention import RowLayout, rows_attention
from harness.model.batch import pack_groups, pack_sequences, response_logprobs
from harness.model.build import init_model


def _segments(rows: list[tuple[int, list[int]]]) -> torch.Tensor:
    """rows: (prefix length, response lengths) -> [B, L] segments, padded with -1."""
    width = max(p + sum(rs) for p, rs in rows)
    seg = torch.full((len(rows), width), -1)
    for b, (p, rs) in enumerate(rows):
        seg[b, :p] = 0
        at = p
        for g, r in enumerate(rs, start=1):
            seg[b, at : at + r] = g
            at += r
    return seg


def _dense_mask(seg: torch.Tensor, grp: torch.Tensor | None = None) -> torch.Tensor:
    """[B, L, L] written from the definition, one query and key at a time: same group (one
    per row without `grp`), not later, and a prefix key or the query's own response."""
    b, length = seg.shape
    grp = torch.zeros_like(seg) if grp is None else grp
    mask = torch.zeros(b, length, length, dtype=torch.bool)
    for i in range(b):
        for t in range(length):
            for j in range(t + 1):
                s_t, s_j = int(seg[i, t]), int(seg[i, j])
                mask[i, t, j] = s_t >= 0 and grp[i, t] == grp[i, j] and (s_j == 0 or s_j == s_t)
            mask[i, t, t] = True  # padding queries see themselves (outputs unused)
    return mask


rows_strategy = st.lists(st.tuples(st.integers(1, 12), st.lists(st.integers(0, 6), min_size=1, max_size=4)),
                         min_size=1, max_size=3)


@settings(max_examples=40, deadline=None)
@given(rows=rows_strategy, heads=st.integers(1, 3), seed=st.integers(0, 2**16))
def test_rows_attention_equals_the_dense_mask_it_stands_for(rows, heads, seed):
    seg = _segments(rows)
    b, length = seg.shape
    gen = torch.Generator().manual_seed(seed)
    q, k, v = (torch.randn(b, heads, length, 8, generator=gen, requires_grad=True) for _ in range(3))
    real = seg >= 0  # [B, L]
    ours = rows_attention(q, k, v, RowLayout(seg), None)
    want = F.scaled_dot_product_attention(q, k, v, attn_mask=_dense_mask(seg)[:, None])
    torch.testing.assert_close(ours[real.expand(heads, -1, -1).transpose(0, 1)],
                               want[real.expand(heads, -1, -1).transpose(0, 1)], rtol=1e-5, atol=1e-5)
    weights = torch.randn(ours.shape, generator=gen) * real[:, None, :, None]
    grads = torch.autograd.grad((ours * weights).sum(), (q, k, v))
    grads_want = torch.autograd.grad((want * weights).sum(), (q, k, v))
    for g, w in zip(grads, grads_want, strict=True):
        torch.testing.assert_close(g, w, rtol=1e-4, atol=1e-5)


def _grouped(rows: list[list[tuple[int, list[int]]]], pad: int) -> tuple[torch.Tensor, torch.Tensor]:
    """rows: each a list of groups (prefix length, response lengths), one after another, then
    `pad` padding tokens -> (segments, groups) [B, L]."""
    width = max(sum(p + sum(rs) for p, rs in row) for row in rows) + pad
    seg, grp = torch.full((len(rows), width), -1), torch.full((len(rows), width), -1)
    for b, row in enumerate(rows):
        at = 0
        for i, (p, rs) in enumerate(row):
            seg[b, at : at + p] = 0
            grp[b, at : at + p + sum(rs)] = i
            at += p
            for g, r in enumerate(rs, start=1):
                seg[b, at : at + r] = g
                at += r
    return seg, grp


@settings(max_examples=40, deadline=None)
@given(rows=st.lists(rows_strategy, min_size=1, max_size=2), pad=st.integers(0, 3), heads=st.integers(1, 2),
       seed=st.integers(0, 2**16))
def test_padding_free_rows_attention_equals_the_dense_mask(rows, pad, heads, seed):
    """Several groups one after another in a row (and SP padding at its end): each token
    sees only its own group, as the dense mask written from the definition says."""
    seg, grp = _grouped(rows, pad)
    b, length = seg.shape
    gen = torch.Generator().manual_seed(seed)
    q, k, v = (torch.randn(b, heads, length, 8, generator=gen, requires_grad=True) for _ in range(3))
    real = (seg >= 0)[:, None, :, None]  # [B, 1, L, 1]
    ours = rows_attention(q, k, v, RowLayout(seg, grp), None)
    want = F.scaled_dot_product_attention(q, k, v, attn_mask=_dense_mask(seg, grp)[:, None])
    torch.testing.assert_close(ours * real, want * real, rtol=1e-5, atol=1e-5)
    weights = torch.randn(ours.shape, generator=gen) * real
    grads = torch.autograd.grad((ours * weights).sum(), (q, k, v))
    grads_want = torch.autograd.grad((want * weights).sum(), (q, k, v))
    for g, w in zip(grads, grads_want, strict=True):
        torch.testing.assert_close(g, w, rtol=1e-4, atol=1e-5)


def test_one_response_per_row_is_plain_causal():
    seg = _segments([(3, [2]), (5, [4])])
    assert not RowLayout(seg).shares_prefix
    assert RowLayout(_segments([(3, [2, 1])])).shares_prefix


FAMILIES = ["vila", "qwen2_5_vl"]


@pytest.fixture(scope="module", params=FAMILIES)
def model(request):
    return init_model(request.param, "tiny", seed=0)


def _prompts_and_responses(model, cases, seed):
    """cases: (frames, question length, [response lengths]) per prompt."""
    rng = np.random.default_rng(seed)
    prompts, responses = [], []
    for frames, q_len, r_lens in cases:
        frames *= model.frames_per_unit * (2 if model.family == "qwen2_5_vl" else 1)
        video = model.encode_frames(rng.integers(0, 256, (frames, 32, 48, 3), dtype=np.uint8),
                                    np.arange(frames) * 0.5)
        prompts.append(model.build_prompt(model.chat_prompt_ids("q" * q_len), video))
        responses.append([torch.from_numpy(rng.integers(5, 500, r)) for r in r_lens])
    return prompts, responses


cases_strategy = st.lists(st.tuples(st.integers(1, 3), st.integers(1, 20), st.lists(st.integers(1, 9), min_size=1,
                                                                                     max_size=5)),
                          min_size=1, max_size=3)


@pytest.mark.parametrize("padding_free", [False, True])
@settings(max_examples=8, deadline=None)
@given(cases=cases_strategy, seed=st.integers(0, 1000))
def test_shared_prefix_logprobs_and_gradients_equal_separate_sequences(model, padding_free, cases, seed):
    """Log-probs equal the LLM's own forward on each [prompt | response] alone; the gradient
    of a weighted sum equals the one-row-per-response packing's (right-padded rows). With
    `padding_free` all prompts' groups lie in one unpadded row."""
    with torch.no_grad():
        prompts, responses = _prompts_and_responses(model, cases, seed)
        packed = pack_groups(model, prompts, responses, padding_free)
        assert packed.embeds.shape[0] == (1 if padding_free else len(prompts))
        if padding_free:
            assert (packed.segments >= 0).all()  # no padding
        shared = response_logprobs(model, packed)  # [N, R]
        flat = [(p, r) for p, rs in zip(prompts, responses, strict=True) for r in rs]
        for n, (p, r) in enumerate(flat):
            torch.testing.assert_close(shared[n, : r.shape[0]], model.response_logprobs(p, r), rtol=1e-5, atol=1e-5)
            assert (shared[n, r.shape[0]:] == 0).all()

    weights = torch.randn(shared.shape, generator=torch.Generator().manual_seed(seed))

    def grads(pack):
        model.zero_grad()
        prompts, responses = _prompts_and_responses(model, cases, seed)  # a fresh graph
        (response_logprobs(model, pack(prompts, responses)) * weights).sum().backward()
        return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    one_row = grads(lambda ps, rs: pack_groups(model, ps, rs, padding_free))
    per_response = grads(lambda ps, rs: pack_sequences(model, [p for p, g in zip(ps, rs, strict=True) for _ in g],
                                                       [r for g in rs for r in g]))
    assert one_row.keys() == per_response.keys()
    scale = max(float(g.abs().max()) for g in per_response.values())
    for name, g in per_response.items():
        torch.testing.assert_close(one_row[name], g, rtol=0, atol=1e-5 * max(1.0, scale), msg=name)


def test_pack_groups_refuses_a_prompt_without_responses(model):
    prompts, responses = _prompts_and_responses(model, [(1, 3, [2])], 0)
    with pytest.raises(ValueError, match="at least one response"):
        pack_groups(model, prompts, [[]])
    with pytest.raises(ValueError, match="1 prompts but 2 response lists"):
        pack_groups(model, prompts, responses * 2)
