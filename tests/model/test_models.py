"""Both families on CPU: encode, prompt, forward, backward, generate, save/load."""

import numpy as np
import pytest
import torch

from harness.model.build import count_parameters, detect_family, init_model, load_model
from harness.model.interface import splice_media


def _prompt(model, frames):
    video = model.encode_frames(*frames)
    return model.build_prompt(model.chat_prompt_ids("Which object appeared first?"), video), video


def test_video_rows_are_spliced_at_the_placeholder(tiny_model, frames):
    prompt, video = _prompt(tiny_model, frames)
    start, end = prompt.spans[0][1:]
    media_text = tiny_model.embed_tokens(torch.tensor(tiny_model.media_text_ids, dtype=torch.long))  # [E, D]
    rows = tiny_model.media_rows(video, media_text)  # vila: each frame + its end token
    assert end - start == rows.shape[0] >= video.num_tokens
    assert torch.equal(prompt.embeds[start:end], rows)
    t = video.embeds.shape[1]
    per_unit = rows.reshape(video.embeds.shape[0], -1, rows.shape[-1])[:, :t]  # [U, T, D]
    assert torch.equal(per_unit, video.embeds)
    assert (prompt.input_ids[start:end] == tiny_model.video_token_id).all()
    assert (prompt.input_ids[:start] != tiny_model.video_token_id).all()


def test_splice_rejects_missing_double_or_swapped_placeholders():
    embeds, ids = torch.zeros(4, 2), {"video": 9, "image": 8}
    video = [("video", 9, torch.ones(3, 2))]
    with pytest.raises(ValueError, match=r"placeholders \[\] do not match"):
        splice_media(torch.tensor([1, 2, 3, 4]), embeds, video, ids)
    with pytest.raises(ValueError, match=r"\['video', 'video'\] do not match"):
        splice_media(torch.tensor([9, 2, 9, 4]), embeds, video, ids)
    image_then_video = [("image", 8, torch.ones(2, 2)), ("video", 9, torch.ones(3, 2))]
    with pytest.raises(ValueError, match=r"\['video', 'image'\] do not match"):
        splice_media(torch.tensor([9, 2, 8, 4]), embeds, image_then_video, ids)


def test_splice_places_every_medium_in_order():
    ids = torch.tensor([1, 8, 2, 9, 3])
    text = torch.arange(5.0)[:, None].expand(5, 2)  # [5, 2]: row i holds i
    media = [("image", 8, torch.full((2, 2), -1.0)), ("video", 9, torch.full((3, 2), -2.0))]
    out_ids, out, spans = splice_media(ids, text, media, {"image": 8, "video": 9})
    assert spans == (("image", 1, 3), ("video", 4, 7))
    assert out_ids.tolist() == [1, 8, 8, 2, 9, 9, 9, 3]
    assert out[:, 0].tolist() == [0, -1, -1, 2, -2, -2, -2, 4]


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


@pytest.mark.parametrize("family", ["vila", "qwen2_5_vl"])
def test_encoding_in_chunks_equals_one_tower_call(family):
    """The tower runs `encode_chunk` units per call (its hidden states of thousands of frames
    at once would not fit); the embeddings equal one call over all units."""
    model = init_model(family, "tiny", seed=0).eval()
    frames = 20 if family == "qwen2_5_vl" else 10  # 10 units either way
    pixels = model.preprocess(np.random.default_rng(0).integers(0, 256, (frames, 32, 48, 3), dtype=np.uint8),
                              np.arange(frames) * 0.5)
    with torch.no_grad():
        whole = model.encode_unit_block(pixels)  # [U, T, D]
        model.encode_chunk = 3
        chunked = model.encode_units(pixels)
    assert whole.shape[0] == 10
    torch.testing.assert_close(chunked, whole, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("family", ["vila", "qwen2_5_vl"])
def test_logits_in_chunks_give_the_same_logprobs_and_gradients(family, monkeypatch):
    """The LM head runs `LOGIT_CHUNK` response tokens at a time (checkpointed: backward
    recomputes a chunk's logits); log-probs and gradients equal all tokens at once."""
    from harness.model import batch as batch_mod

    model = init_model(family, "tiny", seed=0)
    rng = np.random.default_rng(0)
    frames = 4
    with torch.no_grad():
        video = model.encode_frames(rng.integers(0, 256, (frames, 32, 48, 3), dtype=np.uint8), np.arange(frames) * 0.5)
    responses = [[torch.from_numpy(rng.integers(5, 500, r)) for r in (7, 2, 5)]]

    def run(chunk):
        monkeypatch.setattr(batch_mod, "LOGIT_CHUNK", chunk)
        model.zero_grad()
        prompt = model.build_prompt(model.chat_prompt_ids("what?"), video)  # a fresh graph
        logp = batch_mod.response_logprobs(model, batch_mod.pack_groups(model, [prompt], responses, True))
        (logp * torch.arange(logp.numel()).reshape(logp.shape)).sum().backward()
        return logp.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    (whole, g_whole), (chunked, g_chunked) = run(10_000), run(3)
    torch.testing.assert_close(chunked, whole, rtol=1e-6, atol=1e-6)
    assert g_whole.keys() == g_chunked.keys()
    scale = max(float(g.abs().max()) for g in g_whole.values())  # gradients summed in another order
    for name, g in g_whole.items():
        torch.testing.assert_close(g_chunked[name], g, rtol=0, atol=1e-6 * max(1.0, scale), msg=name)
