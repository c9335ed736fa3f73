"""M-RoPE positions: pinned to transformers' Qwen2.5-VL where its rule and the released
rule agree, and to hand-computed values where they differ (long videos)."""

import numpy as np
import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from harness.model.build import init_model
from harness.model.positions import linear_positions, mrope_positions, next_positions

V = 99  # video token id in these hand-built sequences


def _ids(before, units, h, w, after):
    return torch.tensor([1] * before + [V] * (units * h * w) + [2] * after)


def test_hand_computed_long_video():
    # 2 text, video of 3 units x 1x2 tokens, 1 s/unit at 2 tokens/s -> t = 0, 2, 4; 2 text.
    pos = mrope_positions(_ids(2, 3, 1, 2, 2), V, (3, 1, 2), 1.0, 2)
    expected = torch.tensor([
        [0, 1, 2, 2, 4, 4, 6, 6, 7, 8],   # time: text 0,1; video 2+{0,2,4}; resume at 6+1
        [0, 1, 2, 2, 2, 2, 2, 2, 7, 8],   # rows
        [0, 1, 2, 3, 2, 3, 2, 3, 7, 8],   # cols
    ])
    assert torch.equal(pos, expected)


def test_fractional_time_is_truncated_per_unit():
    pos = mrope_positions(_ids(0, 4, 1, 1, 0), V, (4, 1, 1), 0.3, 2)  # 0, 0.6, 1.2, 1.8
    assert pos[0].tolist() == [0, 0, 1, 1]


def test_no_video_is_linear():
    assert torch.equal(mrope_positions(torch.tensor([1, 2, 3]), V, (1, 1, 1), 1.0, 2),
                       linear_positions(3).expand(3, -1))


def test_wrong_token_count_is_an_error():
    with pytest.raises(ValueError, match="one span"):
        mrope_positions(_ids(1, 2, 1, 1, 1), V, (3, 1, 1), 1.0, 2)


def test_next_positions_continue_after_the_max():
    pos = mrope_positions(_ids(2, 3, 1, 2, 2), V, (3, 1, 2), 1.0, 2)
    assert next_positions(pos, 2).tolist() == [[9, 10]] * 3
    assert next_positions(linear_positions(4), 2).tolist() == [4, 5]


@settings(max_examples=40, deadline=None)
@given(
    before=st.integers(1, 6), after=st.integers(1, 6), units=st.integers(1, 4),
    h=st.integers(1, 8), w=st.integers(1, 8), spu=st.sampled_from([0.05, 0.5, 1.0, 2.0]),
)
def test_matches_transformers_where_rules_agree(before, after, units, h, w, spu):
    """transformers' get_rope_index resumes text at start+max(h, w) instead of max+1; the two
    agree when the temporal extent stays below the spatial one (time positions up to 6 here,
    e.g. 0, 2, 4, 6 for 4 units at 1 s on an 8x8 grid)."""
    model = _hf_model()
    tps = model.config.vision_config.tokens_per_second
    assume(int((units - 1) * spu * tps) < max(h, w))
    m = model.config.vision_config.spatial_merge_size
    ids = _ids(before, units, h, w, after)
    ids[ids == V] = model.config.video_token_id
    ours = mrope_positions(ids, model.config.video_token_id, (units, h, w), spu, tps)
    hf, _ = model.model.get_rope_index(
        ids[None], mm_token_type_ids=(ids == model.config.video_token_id).int()[None] * 2,
        video_grid_thw=torch.tensor([[units, h * m, w * m]]),
        second_per_grid_ts=torch.tensor([spu]),
    )
    assert torch.equal(ours, hf[:, 0])


_CACHE = {}


def _hf_model():
    if "m" not in _CACHE:
        _CACHE["m"] = init_model("qwen2_5_vl", "tiny").model
    return _CACHE["m"]


def test_qwen_prompt_positions_feed_the_same_logits_as_hf_forward():
    """Our path (cached embeddings + our positions) gives HF's own logits for a short-spacing
    video, where both position rules agree: the embeddings and positions are what HF uses."""
    model = init_model("qwen2_5_vl", "tiny")
    rng = np.random.default_rng(1)
    frames = rng.integers(0, 256, (4, 32, 32, 3), dtype=np.uint8)
    ts = np.arange(4) * 0.25  # 0.5 s per 2-frame unit: time positions 0 and 1, below the 2x2 grid
    pixels = model.preprocess(frames, ts)
    video = model.encode_video(pixels)
    prompt = model.build_prompt(model.chat_prompt_ids("Where?"), video)
    with torch.no_grad():
        ours = model.lm_head(model.hidden_states(prompt.embeds[None], prompt.positions[:, None],
                                                 torch.ones(1, len(prompt), dtype=torch.long)))
        u, h, w = pixels.units.shape[0], *pixels.grid_hw
        hf = model.model(
            input_ids=prompt.input_ids[None],
            pixel_values_videos=pixels.units.reshape(u * h * w, -1),
            video_grid_thw=torch.tensor([[u, h, w]]),
            second_per_grid_ts=torch.tensor([pixels.seconds_per_unit]),
            mm_token_type_ids=(prompt.input_ids == model.video_token_id).int()[None] * 2,
        ).logits
    torch.testing.assert_close(ours, hf, rtol=1e-4, atol=1e-5)


def test_time_positions_reach_past_zero_and_match_transformers():
    """An explicit case with a real time axis: 4 units 1 s apart on an 8x8 token grid."""
    model = _hf_model()
    tps = model.config.vision_config.tokens_per_second
    m = model.config.vision_config.spatial_merge_size
    ids = _ids(3, 4, 8, 8, 2)
    ids[ids == V] = model.config.video_token_id
    ours = mrope_positions(ids, model.config.video_token_id, (4, 8, 8), 1.0, tps)
    start = 3
    assert sorted(set((ours[0, start : start + 256] - start).tolist())) == [0, 2, 4, 6]
    hf, _ = model.model.get_rope_index(
        ids[None], mm_token_type_ids=(ids == model.config.video_token_id).int()[None] * 2,
        video_grid_thw=torch.tensor([[4, 8 * m, 8 * m]]), second_per_grid_ts=torch.tensor([1.0]),
    )
    assert torch.equal(ours, hf[:, 0])
