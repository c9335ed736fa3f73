"""The `toy` size's VAE is fit briefly to the toy world before any RL: pictures (and
videos) of one coloured shape on a plain background, as the toy prompts ask for
(harness/gen/toy_world.py draws them).

Why: the released VAEs were trained on natural images, so their latents can express any
picture; a VAE with random weights cannot (measured: optimising its latents directly
reaches a shape_match reward of only 0.16-0.54 on some prompts), and RL of the transformer
could then never show what it learns. Afterwards the latent normalisation is set as the
released configs define it: SD3's `shift_factor` / `scaling_factor` (latents = (z - shift)
* scale) and Wan's per-channel `latents_mean` / `latents_std`, from the fitted latents.
"""

from __future__ import annotations

import torch

from harness.gen import toy_world

# measured (cosine-decayed lr): the wan VAE's reconstructions of toy videos score
# motion_match 0.59 after 1,200 steps and 0.74 after 1,600 (the drawn videos: 0.99)
FIT_STEPS = {"sd3": 1500, "wan": 2000}


def fit_toy_vae(vae, kind: str, steps: int | None = None, seed: int = 0, frames: int = 5) -> dict:
    """Fit `vae` (in place) to reconstruct the toy world; returns the final loss and the
    latent normalisation written into its config."""
    g = torch.Generator().manual_seed(seed)
    steps = FIT_STEPS[kind] if steps is None else steps
    vae.requires_grad_(True).train()
    opt = torch.optim.Adam(vae.parameters(), lr=2e-3)
    decay = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    loss = torch.tensor(0.0)
    for _ in range(steps):
        x = toy_world.batch(kind, 16 if kind == "sd3" else 8, g, frames=frames)[0] * 2 - 1  # [-1, 1]
        post = vae.encode(x).latent_dist
        z = post.mean + post.std * torch.randn(post.mean.shape, generator=g)
        recon = vae.decode(z).sample
        kl = 0.5 * (post.mean**2 + post.var - 1 - post.logvar).mean()
        loss = ((recon - x) ** 2).mean() + 1e-4 * kl
        opt.zero_grad()
        loss.backward()
        opt.step()
        decay.step()
    vae.eval()
    with torch.no_grad():
        z = vae.encode(toy_world.batch(kind, 64 if kind == "sd3" else 32, g, frames=frames)[0] * 2 - 1).latent_dist.mean
    if kind == "sd3":
        norm = {"shift_factor": float(z.mean()), "scaling_factor": float(1 / z.std())}
    else:
        dims = (0, 2, 3, 4)
        norm = {"latents_mean": z.mean(dim=dims).tolist(), "latents_std": z.std(dim=dims).tolist()}
    vae.register_to_config(**norm)
    vae.requires_grad_(False)
    return {"loss": float(loss.detach()), **norm}
