"""Inference with the prompt's sequence split over ranks (harness/parallel/sp_decode.py,
harness/rollout/sp_engine.py): decode attention over a sequence-split KV cache equals
attention over all keys, and SP 2 greedy decoding answers as one process does."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.parallel import workers
from tests.parallel.launch import run_distributed


@pytest.mark.distributed
@settings(max_examples=4, deadline=None, derandomize=True)
@given(prompt_len=st.integers(1, 23), new=st.integers(1, 5), heads=st.integers(1, 3), seed=st.integers(0, 99),
       data=st.data())
def test_decode_attention_over_a_split_cache_equals_full_attention(prompt_len, new, heads, seed, data):
    """Drawn prompt lengths (a rank may hold only SP padding), generated-token counts and
    queries per step."""
    q_len = data.draw(st.integers(1, new))
    for err in run_distributed(workers.sp_decode_vs_full, 2, prompt_len, new, q_len, heads, seed):
        assert err < 1e-5, err


@pytest.mark.distributed
@pytest.mark.parametrize("family", ["vila", "qwen2_5_vl"])
def test_sp_greedy_engine_answers_as_one_process(family):
    cases = [(4, 3), (6, 17), (2, 1)]
    for rank_result in run_distributed(workers.sp_engine_vs_hf, 2, family, cases, 10):
        for same, logp_err in rank_result:
            assert same and logp_err < 1e-4, rank_result
