"""The toy SD3-style and Wan-style models: our ODE sampler is diffusers' own pipeline
(same latents out), guidance is uncond + g (cond - uncond), the SDE rollout's recorded
log-probs are what re-scoring the stored steps gives, samples do not depend on their
batch, and a saved folder loads back as diffusers' pipeline with the same outputs."""

from __future__ import annotations

import pytest
import torch

from harness.gen.models import GenModel
from harness.gen.sample import rollout, sample_key, score_step
from harness.gen.toy import init_gen_model

SHAPES = {"sd3": dict(height=32, width=32), "wan": dict(height=16, width=16, num_frames=5)}


@pytest.fixture(scope="module", params=["sd3", "wan"])
def model(request):
    return init_gen_model(request.param, "tiny", seed=0)


def _shape(model):
    s = SHAPES[model.kind]
    return model.latent_shape(s["height"], s["width"], s.get("num_frames", 1))


def test_ode_sampler_is_the_diffusers_pipeline(model):
    prompts = ["a red square in the top left", "a blue circle moving left"]
    cond, uncond = model.encode_text(prompts), model.encode_text([""])
    traj = rollout(model, cond, uncond, [1, 2], _shape(model), num_steps=4, guidance=4.5, noise_level=0.0)
    x0 = traj.latents[:, 0]
    out = model.pipe(prompt=prompts, negative_prompt="", num_inference_steps=4, guidance_scale=4.5, latents=x0.clone(),
                     output_type="latent", max_sequence_length=model.max_text_len, **SHAPES[model.kind]).images \
        if model.kind == "sd3" else \
        model.pipe(prompt=prompts, negative_prompt="", num_inference_steps=4, guidance_scale=4.5, latents=x0.clone(),
                   output_type="latent", max_sequence_length=model.max_text_len, **SHAPES[model.kind]).frames
    torch.testing.assert_close(traj.latents[:, -1], out.float(), rtol=1e-4, atol=1e-5)


def test_guidance_combines_two_passes(model):
    cond, uncond = model.encode_text(["a red square", "a green ball"]), model.encode_text([""])
    x = torch.randn(2, *_shape(model))
    s = torch.tensor([0.7, 0.3])
    guided = model.velocity(x, s, cond, uncond.select([0, 0]), 3.0)
    c = model.velocity(x, s, cond, None, 1.0)
    u = model.velocity(x, s, uncond.select([0, 0]), None, 1.0)
    torch.testing.assert_close(guided, u + 3.0 * (c - u), rtol=1e-5, atol=1e-5)


def test_rollout_log_probs_are_the_rescored_steps_and_samples_ignore_their_batch(model):
    prompts = ["a red square", "a blue circle", "a white ball"]
    cond, uncond = model.encode_text(prompts), model.encode_text([""])
    keys = [sample_key(0, 3, p, 0) for p in range(3)]
    traj = rollout(model, cond, uncond, keys, _shape(model), num_steps=3, guidance=2.0, noise_level=0.7)
    assert traj.latents.shape == (3, 4, *_shape(model)) and traj.log_probs.shape == (3, 3)
    with torch.no_grad():
        for j in range(3):
            again = score_step(model, traj, j, cond, uncond, 2.0, 0.7)
            torch.testing.assert_close(again.log_prob, traj.log_probs[:, j], rtol=1e-5, atol=1e-5)
    alone = rollout(model, cond.select([1]), uncond, keys[1:2], _shape(model), 3, 2.0, 0.7)
    torch.testing.assert_close(alone.latents[0], traj.latents[1], rtol=1e-4, atol=1e-5)
    other = rollout(model, cond.select([1]), uncond, [keys[1] + 1], _shape(model), 3, 2.0, 0.7)
    assert not torch.allclose(other.latents[0, -1], traj.latents[1, -1])


def test_decode_gives_pixels_in_range(model):
    pixels = model.decode(torch.randn(2, *_shape(model)))
    want = (2, 3, 32, 32) if model.kind == "sd3" else (2, 5, 3, 16, 16)
    assert pixels.shape == want and pixels.min() >= 0 and pixels.max() <= 1


def test_saved_folder_loads_with_the_same_outputs(model, tmp_path):
    model.save_pretrained(tmp_path / "m")
    again = GenModel.from_pretrained(tmp_path / "m")
    assert (again.kind, again.shift, again.max_text_len) == (model.kind, model.shift, model.max_text_len)
    assert set(again.state_dict()) == set(model.state_dict()) and all(k.startswith("transformer.")
                                                                       for k in model.state_dict())
    cond = model.encode_text(["a red square"])
    torch.testing.assert_close(again.encode_text(["a red square"]).embeds, cond.embeds)
    x, s = torch.randn(1, *_shape(model)), torch.tensor([0.5])
    torch.testing.assert_close(again.velocity(x, s, cond, None, 1.0), model.velocity(x, s, cond, None, 1.0))


def test_bad_sizes_and_folders_are_named(model, tmp_path):
    with pytest.raises(ValueError, match="multiples of"):
        model.latent_shape(30, 32, 5)
    if model.kind == "wan":
        with pytest.raises(ValueError, match="1 \\+ 2k frames"):
            model.latent_shape(16, 16, 4)
    with pytest.raises(FileNotFoundError, match="model_index.json"):
        GenModel.from_pretrained(tmp_path)


@pytest.mark.parametrize("kind", ["sd3", "wan"])
def test_toy_vae_fit_learns_the_toy_world_and_normalises_its_latents(kind):
    """A few steps of the toy size's VAE fit lower its reconstruction error and leave the
    latent normalisation the pipeline applies (SD3: shift/scale; Wan: per-channel mean/std)
    such that the encoded toy world has zero mean and unit std."""
    from harness.gen import toy_vae, toy_world

    model = init_gen_model(kind, "tiny", seed=0)
    vae = model.pipe.vae
    g = torch.Generator().manual_seed(1)
    pixels = toy_world.batch(kind, 8 if kind == "sd3" else 4, g)[0]  # [B, 3, (F,) H, W] in [0, 1]
    x = pixels * 2 - 1

    def error() -> float:
        with torch.no_grad():
            return float(((vae.decode(vae.encode(x).latent_dist.mean).sample - x) ** 2).mean())

    before = error()
    toy_vae.fit_toy_vae(vae, kind, steps=40, seed=0)
    assert error() < 0.7 * before
    assert not any(p.requires_grad for p in vae.parameters())
    with torch.no_grad():
        z = vae.encode(x).latent_dist.mean
    if kind == "sd3":
        normed = (z - vae.config.shift_factor) * vae.config.scaling_factor
    else:
        mean = torch.tensor(vae.config.latents_mean).view(1, -1, 1, 1, 1)
        normed = (z - mean) / torch.tensor(vae.config.latents_std).view(1, -1, 1, 1, 1)
    assert abs(float(normed.mean())) < 0.3 and 0.6 < float(normed.std()) < 1.5
    # the model's own encode applies the same normalisation (videos given as [B, F, 3, H, W])
    torch.testing.assert_close(model.encode(pixels if kind == "sd3" else pixels.transpose(1, 2)), normed)


@pytest.mark.parametrize("kind", ["sd3", "wan"])
def test_toy_pretraining_lowers_the_flow_matching_loss(kind):
    """The toy models' base training (rectified flow on captioned toy pictures or videos)."""
    from harness.gen.toy_pretrain import pretrain_toy

    model = init_gen_model(kind, "tiny", seed=0)
    first = pretrain_toy(model, steps=1, seed=0, batch=16)
    last = pretrain_toy(model, steps=60, seed=1, batch=16)
    assert last < 0.8 * first
    assert not model.transformer.training


def test_toy_world_draws_what_its_captions_say():
    """Scored by the rewards (written apart from the drawing): the pictures' shapes and the
    videos' moving colours match their own captions, and a caption swapped for another
    scores worse."""
    from harness.algos.gen_rewards import motion_match, shape_match
    from harness.gen import toy_world

    g = torch.Generator().manual_seed(0)
    videos, captions = toy_world.videos(32, 5, 16, g)
    frames = videos.transpose(1, 2)  # [B, F, 3, H, W]
    assert float(motion_match(frames, captions).min()) > 0.8
    assert float(motion_match(frames, captions[1:] + captions[:1]).mean()) < 0.6
    pictures, captions = toy_world.pictures(32, 32, g)
    own = shape_match(pictures, captions)
    assert float(own.mean()) > 0.6 and float(own.mean()) > float(shape_match(pictures, captions[::-1]).mean()) + 0.2
