"""MR-SP equivalence on 2 processes (gloo): stage-1 encoding and stage-2 log-probs and
gradients equal the single-process results, for both families."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.model.sp import padded_length
from harness.parallel.comm import chunk_bounds
from harness.parallel.ulysses import spread_kv_heads
from tests.parallel import workers
from tests.parallel.launch import run_distributed

FAMILIES = ["vila", "qwen2_5_vl"]


@given(n=st.integers(0, 200), parts=st.integers(1, 9))
def test_chunk_bounds_partition_contiguously_and_evenly(n, parts):
    bounds = [chunk_bounds(n, parts, i) for i in range(parts)]
    assert bounds[0][0] == 0 and bounds[-1][1] == n
    assert all(a[1] == b[0] for a, b in zip(bounds, bounds[1:], strict=False))
    sizes = [b - a for a, b in bounds]
    assert max(sizes) - min(sizes) <= 1


@given(length=st.integers(1, 500), sp=st.integers(1, 8))
def test_padded_length(length, sp):
    total = padded_length(length, sp)
    assert total % sp == 0 and length <= total < length + sp


def test_kv_head_spreading():
    assert spread_kv_heads(4, 28, 4) == 1  # Qwen2.5-7B, SP 4
    assert spread_kv_heads(2, 4, 4) == 2  # tiny: 2 KV heads over 4 ranks -> repeat twice
    assert spread_kv_heads(4, 28, 8) == 0  # LongVILA-7B over SP 8: ulysses_attention pads the heads


@pytest.mark.distributed
@pytest.mark.parametrize("family", FAMILIES)
def test_stage1_parallel_encoding_equals_single_process(family):
    counts = [1, 2, 5, 8, 7] if family == "vila" else [2, 4, 6, 10]  # qwen: units of 2 frames
    for errors in run_distributed(workers.stage1_encode, 2, family, counts):
        assert max(errors) < 1e-5, errors


def _cases(seed: int, n: int) -> list[tuple[int, int, int]]:
    """Varied (frames, question length, response length): lengths that do and do not
    divide by the SP size, short and long responses."""
    rng = np.random.default_rng(seed)
    return [(int(rng.integers(1, 5)) * 2, int(rng.integers(1, 30)), int(rng.integers(1, 12))) for _ in range(n)]


@pytest.mark.distributed
@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("seed", [0, 1])
def test_stage2_logprobs_and_gradients_equal_single_process(family, seed):
    for res in run_distributed(workers.stage2_logprobs_and_grads, 2, family, _cases(seed, 3), seed):
        assert res["missing"] == []
        assert res["logp_err"] < 1e-4, res
        assert res["grad_err"] < 1e-4 * max(1.0, res["grad_scale"]), res


@pytest.mark.distributed
@pytest.mark.parametrize("family", FAMILIES)
def test_stage2_independent_of_micro_batch_and_order(family):
    for res in run_distributed(workers.stage2_batch_invariance, 2, family, _cases(5, 4), 5):
        assert res["max_err"] < 1e-4, res


@pytest.mark.distributed
@settings(max_examples=3, deadline=None, derandomize=True)
@given(cases=st.lists(st.tuples(st.sampled_from([2, 4, 6]), st.integers(1, 40), st.integers(1, 16)),
                      min_size=1, max_size=4), padding_free=st.booleans())
def test_stage2_equivalence_over_drawn_lengths(cases, padding_free):
    """Hypothesis draws prompt (frames, question) and response lengths, padded rows or one
    unpadded row; SP=2 equals SP=1."""
    for res in run_distributed(workers.stage2_logprobs_and_grads, 2, "vila", cases, 7, False, False, padding_free):
        assert res["logp_err"] < 1e-4 and res["grad_err"] < 1e-4 * max(1.0, res["grad_scale"]), res


@pytest.mark.distributed
@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize(("checkpointing", "padding_free"), [(False, False), (True, False), (True, True)])
def test_stage2_shared_prefix_equals_single_process(family, checkpointing, padding_free):
    """Each prompt's responses behind one copy of it, split over the SP group (and with
    activation checkpointing, whose recomputation runs the all-to-alls again; and all
    prompts in one unpadded row): the log-probs and gradients of separate single-process
    sequences."""
    cases = [(4, 7, (3, 1, 5)), (2, 20, (6,)), (6, 3, (2, 9))]
    for res in run_distributed(workers.stage2_logprobs_and_grads, 2, family, cases, 3, True, checkpointing,
                               padding_free):
        assert res["missing"] == []
        assert res["logp_err"] < 1e-4, res
        assert res["grad_err"] < 1e-4 * max(1.0, res["grad_scale"]), res


@pytest.mark.distributed
@settings(max_examples=3, deadline=None, derandomize=True)
@given(cases=st.lists(st.tuples(st.sampled_from([2, 4, 6]), st.integers(1, 40),
                                st.lists(st.integers(1, 12), min_size=1, max_size=5).map(tuple)),
                      min_size=1, max_size=3),
       family=st.sampled_from(FAMILIES), padding_free=st.booleans())
def test_stage2_shared_prefix_over_drawn_lengths(cases, family, padding_free):
    """Hypothesis draws prompts, G and response lengths, padded or not; SP=2 shared-prefix
    equals SP=1."""
    for res in run_distributed(workers.stage2_logprobs_and_grads, 2, family, cases, 11, True, False, padding_free):
        assert res["logp_err"] < 1e-4 and res["grad_err"] < 1e-4 * max(1.0, res["grad_scale"]), res


@pytest.mark.distributed
@settings(max_examples=4, deadline=None, derandomize=True)
@given(shape=st.sampled_from([(3, 1), (3, 3), (6, 3), (5, 5), (4, 2)]), length=st.integers(1, 19),
       seed=st.integers(0, 99))
def test_ulysses_attention_with_any_head_count_equals_one_process(shape, length, seed):
    """Heads the SP size does not divide (LongVILA-7B: 28 over SP 8) are padded; KV heads are
    repeated where that suffices; outputs and gradients equal one process's."""
    heads, kv_heads = shape
    for out_err, grad_err in run_distributed(workers.ulysses_vs_single, 2, heads, kv_heads, length, seed):
        assert out_err < 1e-5 and grad_err < 1e-5, (out_err, grad_err)
