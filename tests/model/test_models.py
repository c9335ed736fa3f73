"""Both families on CPU: encode, prompt, forward, backward, generate, save/load."""

import numpy as np
import pytest
import torch

from harness.model.build import count_parameters, detect_family, init_model, load_model
from harness.model.interface import splice_video


def _prompt(model, frames):
    video = model.encode_frames(*frames)
    return model.build_prompt(model.chat_prompt_ids("Which object appeared first?"), video), video


def test_video_rows_are_spliced_at_the_placeholder(tiny_model, frames):
    prompt, video = _prompt(tiny_model, frames)
    start, end = prompt.video_span
    rows = tiny_model.video_rows(video, prompt.embeds)  # vila: each frame + its end token
    assert end - start == rows.shape[0] >= video.num_tokens
    assert torch.equal(prompt.embeds[start:end], rows)
    t = video.embeds.shape[1]
    per_unit = rows.reshape(video.embeds.shape[0], -1, rows.shape[-1])[:, :t]  # [U, T, D]
    assert torch.equal(per_unit, video.embeds)
    assert (prompt.input_ids[start:end] == tiny_model.video_token_id).all()
    assert (prompt.input_ids[:start] != tiny_model.video_token_id).all()


def test_splice_rejects_missing_or_double_placeholder():
    embeds = torch.zeros(4, 2)
    with pytest.raises(ValueError, match="exactly one video placeholder"):
        splice_video(torch.tensor([1, 2, 3, 4]), embeds, torch.ones(3, 2), video_id=9)
    with pytest.raises(ValueError, match="found 2"):
        splice_video(torch.tensor([9, 2, 9, 4]), embeds, torch.ones(3, 2), video_id=9)


def test_units_encode_independently(tiny_model, frames):
    """Encoding a slice of units equals the same rows of encoding all (MR-SP stage 1)."""
    pixels = tiny_model.preprocess(*frames)
    full = tiny_model.encode_video(pixels).embeds
    u = pixels.units.shape[0]
    parts = [tiny_model.encode_video(pixels.select(a, b)).embeds for a, b in [(0, 1), (1, u)]]
    torch.testing.assert_close(torch.cat(parts), full, rtol=1e-5, atol=1e-6)


def test_video_changes_the_output(tiny_model, frames):
    prompt, _ = _prompt(tiny_model, frames)
    other = (255 - frames[0], frames[1])
    prompt2, _ = _prompt(tiny_model, other)
    response = torch.tensor([5, 6, 7])
    assert not torch.allclose(
        tiny_model.response_logprobs(prompt, response), tiny_model.response_logprobs(prompt2, response)
    )


def test_backward_reaches_llm_and_vision(tiny_model, frames):
    tiny_model.zero_grad()
    prompt, _ = _prompt(tiny_model, frames)
    loss = -tiny_model.response_logprobs(prompt, torch.tensor([5, 6, 7])).sum()
    loss.backward()
    grads = {name: p.grad for name, p in tiny_model.named_parameters()}
    assert all(g is not None and torch.isfinite(g).all() for g in grads.values() if g is not None)
    assert any(g is not None and g.abs().sum() > 0 for n, g in grads.items() if "embed_tokens" in n)
    vision = [g for n, g in grads.items() if ("vision_tower" in n or "visual" in n) and g is not None]
    assert vision and any(g.abs().sum() > 0 for g in vision)
    tiny_model.zero_grad()


def test_greedy_generate_matches_teacher_forced_argmax(tiny_model, frames):
    """The KV-cached decode uses the same positions as a full forward pass: every greedy
    token is the argmax of the full-sequence logits at its step."""
    from harness.rollout.engine import SamplingConfig
    from harness.rollout.hf_engine import HFEngine

    prompt, _ = _prompt(tiny_model, frames)
    (result,) = HFEngine(tiny_model).generate([prompt], SamplingConfig(greedy=True, max_new_tokens=6))
    out = result.token_ids
    assert 1 <= out.shape[0] <= 6
    with torch.no_grad():
        for k in range(out.shape[0]):
            lp_tok = tiny_model.response_logprobs(prompt, out[: k + 1])[-1]
            # the chosen token's log-prob is the max over the vocabulary at that step
            embeds = torch.cat([prompt.embeds, tiny_model.embed_tokens(out[:k])])
            from harness.model.positions import next_positions

            pos = torch.cat([prompt.positions, next_positions(prompt.positions, k)], dim=-1)
            hidden = tiny_model.hidden_states(embeds[None], pos.unsqueeze(-2), torch.ones(1, embeds.shape[0], dtype=torch.long))
            logp = torch.log_softmax(tiny_model.lm_head(hidden[0, -1]).float(), -1)
            assert int(logp.argmax()) == int(out[k])
            torch.testing.assert_close(lp_tok, logp.max(), rtol=1e-4, atol=1e-5)


def test_save_load_round_trip_gives_identical_logprobs(tiny_model, frames, tmp_path):
    prompt, _ = _prompt(tiny_model, frames)
    response = torch.tensor([11, 12, 13, 14])
    before = tiny_model.response_logprobs(prompt, response)
    tiny_model.save_pretrained(tmp_path / "ckpt")
    assert detect_family(tmp_path / "ckpt") == tiny_model.family
    loaded = load_model(tmp_path / "ckpt")
    prompt2, _ = _prompt(loaded, frames)
    assert torch.equal(loaded.response_logprobs(prompt2, response), before)
    assert len(loaded.tokenizer) == len(tiny_model.tokenizer)


def test_vila_checkpoint_layout(tmp_path):
    model = init_model("vila", "tiny")
    model.save_pretrained(tmp_path)
    for part in ["config.json", "llm/config.json", "llm/tokenizer_config.json",
                 "vision_tower/config.json", "vision_tower/preprocessor_config.json",
                 "mm_projector/config.json", "mm_projector/model.safetensors"]:
        assert (tmp_path / part).exists(), part


def test_vocab_equals_tokenizer_length(tiny_model):
    emb = tiny_model.language_model.get_input_embeddings().weight
    assert emb.shape[0] == len(tiny_model.tokenizer)


def test_7b_builds_on_meta_with_published_sizes():
    vila = init_model("vila", "7b")
    counts = count_parameters(vila)
    assert 7.5e9 < counts["llm"] < 7.7e9  # Qwen2.5-7B: 7.62B
    assert 4.2e8 < counts["vision_tower"] < 4.4e8  # SigLIP so400m
    assert all(p.device.type == "meta" for p in vila.parameters())
    qwen = init_model("qwen2_5_vl", "7b")
    assert 8.2e9 < sum(p.numel() for p in qwen.parameters()) < 8.4e9  # Qwen2.5-VL-7B: 8.29B


def test_bad_family_and_size_are_clear():
    with pytest.raises(ValueError, match="unknown model size"):
        init_model("vila", "huge")
    with pytest.raises(ValueError, match="unknown model family"):
        init_model("llava", "tiny")


def test_load_rejects_unknown_folder(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_model(tmp_path / "nope")
    (tmp_path / "x").mkdir()
    with pytest.raises(ValueError, match="not a recognised checkpoint"):
        load_model(tmp_path / "x")


def test_real_frame_count_odd_for_qwen_pads_last_frame(frames):
    model = init_model("qwen2_5_vl", "tiny")
    f, ts = frames
    pixels = model.preprocess(f[:7], ts[:7])
    assert pixels.units.shape[0] == 4  # 7 frames -> 4 units of 2 (last frame repeated)
    assert np.isclose(pixels.seconds_per_unit, 1.0)


def test_set_trainable_freezes_the_named_parts(tiny_model):
    tower, projector = tiny_model.vision_modules()
    tiny_model.set_trainable(vision=False, projector=True)
    assert not any(p.requires_grad for n, p in tower.named_parameters() if not n.startswith("merger"))
    assert all(p.requires_grad for p in projector.parameters())
    assert all(p.requires_grad for p in tiny_model.language_model.parameters())
    tiny_model.set_trainable(vision=False, projector=False)
    assert not any(p.requires_grad for p in projector.parameters())
    tiny_model.set_trainable(vision=True, projector=True)
