"""The `toy` models' base training: a short flow-matching pretraining of the transformer on
the toy world (pictures for sd3, videos for wan; harness/gen/toy_world.py), so that RL
starts, as Flow-GRPO does, from a model that can draw (the released SD3.5 and Wan2.1 were
pretrained on billions of pictures and videos).

Measured before this existed (reproduce/LOG.md, session 13): from random transformer
weights, Flow-GRPO learned a global colour shift in 80 steps but not where to put a colour,
let alone which one for which prompt, in a few hundred. Each caption is kept with
probability `caption_keep` and otherwise empty, so the base model follows its prompt only
partly (and learns the unconditional branch guidance needs); RL is left the prompt
following to improve.

Loss (rectified flow, as SD3 and Wan train): x_s = (1 - s) x_0 + s e, target v = e - x_0,
s drawn logit-normal (SD3's default timestep sampling), mean squared error of the
predicted v.
"""

from __future__ import annotations

import torch

from harness.gen import toy_world
from harness.gen.models import GenModel

# measured on held-out prompts (guidance 4.5): sd3 shape_match ~0.26 after 1,650 steps; wan
# motion_match 0.10 untrained, 0.15 after 500 steps, 0.21 after 1,000, 0.25 after 1,500
PRETRAIN_STEPS = {"sd3": 1500, "wan": 1500}
CAPTION_KEEP = 0.5


def pretrain_toy(model: GenModel, steps: int | None = None, caption_keep: float = CAPTION_KEEP, seed: int = 0,
                 batch: int = 32, lr: float = 1e-3) -> float:
    """Flow-matching pretraining of `model.transformer` (in place); returns the last loss."""
    g = torch.Generator().manual_seed(seed)
    steps = PRETRAIN_STEPS[model.kind] if steps is None else steps
    opt = torch.optim.AdamW(model.transformer.parameters(), lr=lr, weight_decay=1e-4)
    model.transformer.train()
    loss = torch.tensor(0.0)
    for _ in range(steps):
        pixels, captions = toy_world.batch(model.kind, batch, g)
        if model.kind == "wan":
            pixels = pixels.transpose(1, 2)  # [B, F, 3, H, W], as `encode` takes videos
        keep = torch.rand(batch, generator=g) < caption_keep
        with torch.no_grad():
            x0 = model.encode(pixels)  # [B, C, ...]
            cond = model.encode_text([c if k else "" for c, k in zip(captions, keep.tolist(), strict=True)])
        noise = torch.randn(x0.shape, generator=g)
        s = torch.sigmoid(torch.randn(batch, generator=g))  # logit-normal(0, 1)
        s_ = s.view(-1, *[1] * (x0.dim() - 1))
        v = model.velocity((1 - s_) * x0 + s_ * noise, s, cond, None, 1.0)
        loss = ((v - (noise - x0)) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.transformer.eval()
    return float(loss.detach())
