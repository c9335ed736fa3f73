"""The `toy` image model's base training: a short flow-matching pretraining of the
transformer on pictures of the toy world, so that RL starts, as Flow-GRPO does, from a
model that can draw (the released SD3.5 was pretrained on billions of pictures).

Measured before this existed (reproduce/LOG.md, session 13): from random transformer
weights, Flow-GRPO learned a global colour shift in 80 steps but not where to put a colour,
let alone which one for which prompt, in a few hundred. Each picture's caption is kept with
probability `caption_keep` and otherwise empty, so the base model follows its prompt only
partly (and learns the unconditional branch guidance needs); RL is left the prompt
following to improve.

Loss (rectified flow, as SD3 trains): x_s = (1 - s) x_0 + s e, target v = e - x_0, s drawn
logit-normal (SD3's default timestep sampling), mean squared error of the predicted v.
"""

from __future__ import annotations

import random

import torch

from harness.algos.gen_rewards import PALETTE, REGIONS, SHAPES
from harness.gen.models import GenModel
from harness.gen.toy_vae import BACKGROUNDS

PRETRAIN_STEPS = 1500  # measured: held-out shape_match ~0.26 after 1,650 steps, 0.60 after 2,400, 0.71 after 3,900
CAPTION_KEEP = 0.5


def _captioned_pictures(n: int, size: int, rng: random.Random) -> tuple[torch.Tensor, list[str]]:
    from harness.algos.gen_rewards import shape_mask

    images, captions = [], []
    for _ in range(n):
        colour, shape, region = rng.choice(list(PALETTE)), rng.choice(SHAPES), rng.choice(REGIONS)
        img = torch.tensor(rng.choice(BACKGROUNDS)).view(3, 1, 1).expand(3, size, size).clone()
        img[:, shape_mask(shape, region, size, size)] = torch.tensor(PALETTE[colour]).view(3, 1)
        images.append(img)
        captions.append(f"a photo of a {colour} {shape} in the {region}")
    return torch.stack(images), captions


def pretrain_toy_sd3(model: GenModel, steps: int = PRETRAIN_STEPS, caption_keep: float = CAPTION_KEEP,
                     seed: int = 0, size: int = 32, batch: int = 32, lr: float = 1e-3) -> float:
    """Flow-matching pretraining of `model.transformer` (in place); returns the last loss."""
    rng, g = random.Random(seed), torch.Generator().manual_seed(seed)
    vae = model.pipe.vae
    opt = torch.optim.AdamW(model.transformer.parameters(), lr=lr, weight_decay=1e-4)
    model.transformer.train()
    loss = torch.tensor(0.0)
    for _ in range(steps):
        images, captions = _captioned_pictures(batch, size, rng)
        captions = [c if rng.random() < caption_keep else "" for c in captions]
        with torch.no_grad():
            z = vae.encode(images * 2 - 1).latent_dist.mean
            x0 = (z - vae.config.shift_factor) * vae.config.scaling_factor  # the latents the transformer sees
            cond = model.encode_text(captions)
        noise = torch.randn(x0.shape, generator=g)
        s = torch.sigmoid(torch.randn(batch, generator=g))  # logit-normal(0, 1)
        xs = (1 - s.view(-1, 1, 1, 1)) * x0 + s.view(-1, 1, 1, 1) * noise
        v = model.velocity(xs, s, cond, None, 1.0)
        loss = ((v - (noise - x0)) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.transformer.eval()
    return float(loss.detach())
