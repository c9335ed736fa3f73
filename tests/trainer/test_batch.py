import numpy as np
import pytest
import torch

from harness.model.batch import pack_sequences, response_logprobs
from harness.model.build import init_model


@pytest.fixture(scope="module", params=["vila", "qwen2_5_vl"])
def model(request):
    return init_model(request.param, "tiny")


def _prompt(model, k, frames):
    rng = np.random.default_rng(k)
    video = model.encode_frames(rng.integers(0, 256, (frames, 48, 64, 3), dtype=np.uint8), np.arange(frames) * 0.5)
    return model.build_prompt(model.chat_prompt_ids("q" * (k + 1)), video)


def test_packed_logprobs_equal_unbatched(model):
    """Padding, masks and positions in the packed batch change nothing: every row's
    response log-probs equal the single-sequence computation."""
    prompts = [_prompt(model, k, f) for k, f in [(0, 4), (1, 8), (2, 6)]]
    responses = [torch.tensor([5, 6, 7]), torch.tensor([8]), torch.tensor([9, 10, 11, 12, 13])]
    with torch.no_grad():
        batch = pack_sequences(model, prompts, responses)
        packed = response_logprobs(model, batch)
        for i, (p, r) in enumerate(zip(prompts, responses, strict=True)):
            alone = model.response_logprobs(p, r)
            torch.testing.assert_close(packed[i, : r.shape[0]], alone, rtol=1e-5, atol=1e-5)
            assert (packed[i, r.shape[0]:] == 0).all()
    assert batch.response_mask.sum() == sum(r.shape[0] for r in responses)


def test_length_mismatch_is_an_error(model):
    with pytest.raises(ValueError, match="2 prompts but 1 responses"):
        p = _prompt(model, 0, 2)
        pack_sequences(model, [p, p], [torch.tensor([1])])
