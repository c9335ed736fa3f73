"""The `toy` size's VAE is fit briefly to the toy world before any RL: pictures (and
videos) of one coloured shape on a plain background, as the toy prompts ask for.

Why: the released VAEs were trained on natural images, so their latents can express any
picture; a VAE with random weights cannot (measured: optimising its latents directly
reaches a shape_match reward of only 0.16-0.54 on some prompts), and RL of the transformer
could then never show what it learns. Only the VAE is fit, the transformer and text
encoders keep their random weights. Afterwards the latent normalisation is set as the
released configs define it: SD3's `shift_factor` / `scaling_factor` (latents = (z - shift)
* scale) and Wan's per-channel `latents_mean` / `latents_std`, from the fitted latents.
"""

from __future__ import annotations

import torch

from harness.algos.gen_rewards import DIRECTIONS, PALETTE, REGIONS, SHAPES, shape_mask

BACKGROUNDS = ((0.15, 0.15, 0.15), (0.5, 0.5, 0.5), (0.0, 0.0, 0.0))


def _pictures(n: int, size: int, g: torch.Generator) -> torch.Tensor:
    """n pictures [n, 3, size, size] in [0, 1]: one palette shape in a region."""
    colours, out = list(PALETTE.values()), []
    for _ in range(n):
        pick = [int(torch.randint(k, (1,), generator=g)) for k in (len(colours), len(SHAPES), len(REGIONS),
                                                                   len(BACKGROUNDS))]
        img = torch.tensor(BACKGROUNDS[pick[3]]).view(3, 1, 1).expand(3, size, size).clone()
        mask = shape_mask(SHAPES[pick[1]], REGIONS[pick[2]], size, size)
        img[:, mask] = torch.tensor(colours[pick[0]]).view(3, 1)
        out.append(img)
    return torch.stack(out)


def _videos(n: int, frames: int, size: int, g: torch.Generator) -> torch.Tensor:
    """n videos [n, 3, frames, size, size]: a palette square moving one way."""
    colours, out = list(PALETTE.values()), []
    side = size // 4
    for _ in range(n):
        c = colours[int(torch.randint(len(colours), (1,), generator=g))]
        dx, dy = list(DIRECTIONS.values())[int(torch.randint(len(DIRECTIONS), (1,), generator=g))]
        y0, x0 = (int(v) for v in torch.randint(side, size - 2 * side, (2,), generator=g))
        video = torch.full((3, frames, size, size), float(BACKGROUNDS[0][0]))
        for f in range(frames):
            y, x = int(y0 + dy * f), int(x0 + dx * f)
            video[:, f, max(y, 0) : y + side, max(x, 0) : x + side] = torch.tensor(c).view(3, 1, 1)
        out.append(video)
    return torch.stack(out)


FIT_STEPS = {"sd3": 1500, "wan": 600}  # measured: reconstructions then score 0.3-0.8 on shape_match (1000 steps)


def fit_toy_vae(vae, kind: str, steps: int | None = None, seed: int = 0, size: int = 32, frames: int = 5) -> dict:
    """Fit `vae` (in place) to reconstruct the toy world; returns the final loss and the
    latent normalisation written into its config."""
    g = torch.Generator().manual_seed(seed)
    steps = FIT_STEPS[kind] if steps is None else steps
    size = size if kind == "sd3" else size // 2  # the toy video is 16 x 16
    vae.requires_grad_(True).train()
    opt = torch.optim.Adam(vae.parameters(), lr=2e-3)
    for _ in range(steps):
        x = (_pictures(16, size, g) if kind == "sd3" else _videos(8, frames, size, g)) * 2 - 1  # [-1, 1]
        post = vae.encode(x).latent_dist
        z = post.mean + post.std * torch.randn(post.mean.shape, generator=g)
        recon = vae.decode(z).sample
        kl = 0.5 * (post.mean**2 + post.var - 1 - post.logvar).mean()
        loss = ((recon - x) ** 2).mean() + 1e-4 * kl
        opt.zero_grad()
        loss.backward()
        opt.step()
    vae.eval()
    with torch.no_grad():
        x = (_pictures(64, size, g) if kind == "sd3" else _videos(32, frames, size, g)) * 2 - 1
        z = vae.encode(x).latent_dist.mean
    if kind == "sd3":
        norm = {"shift_factor": float(z.mean()), "scaling_factor": float(1 / z.std())}
    else:
        dims = (0, 2, 3, 4)
        norm = {"latents_mean": z.mean(dim=dims).tolist(), "latents_std": z.std(dim=dims).tolist()}
    vae.register_to_config(**norm)
    vae.requires_grad_(False)
    return {"loss": float(loss.detach()), **norm}
