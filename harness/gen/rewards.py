"""Rewards of generated images / videos, chosen by `reward.name`:

- `shape_match` (images) and `motion_match` (videos): programmatic, need the prompt
  (harness/algos/gen_rewards.py);
- `brisque`: no-reference image quality, the authors' reward (Long-RL
  examples/reward_function/diffusion.py): BRISQUE mapped to `clamp(1 - score / 100, 0, 1)`,
  higher is better; a video scores the mean of max(1, F // 8) of its frames (evenly spaced
  here, where the authors draw them at random). The score is the `brisque` package's
  (the original LIVE-trained SVR shipped with it; the authors' piq build fetches its SVR
  weights from the internet at first use, so its raw numbers differ);
- `clip_score`: a learned model from a local folder (`reward.model_path`: a transformers CLIP
  model and processor: CLIP itself, or PickScore, which is one): the cosine of the image and
  prompt embeddings times the model's logit scale, divided by `reward.scale` (PickScore: 26,
  as Flow-GRPO does); a video scores its frames' mean;
- `module:function`: a plug-in, called as `fn(pixels, prompts, metadata) -> [B] floats`
  (pixels [B, 3, H, W] or [B, F, 3, H, W] in [0, 1]), or, when its first parameter is named
  `reward_inputs`, as Long-RL's diffusion rewards are: `fn([{"images": [3, H, W]} or
  {"videos": [F, 3, H, W]}, ...])` returning dicts whose "overall" is the reward.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from harness.algos import gen_rewards

RewardFn = Callable[[torch.Tensor, list[str], list[dict]], list[float]]
BUILTIN = ("shape_match", "motion_match", "brisque", "clip_score")


@dataclass
class GenReward:
    name: str
    fn: RewardFn
    check: Callable[[str], None] | None = None  # raises UnscorablePrompt for a prompt it cannot score

    def __call__(self, pixels: torch.Tensor, prompts: list[str], metadata: list[dict]) -> torch.Tensor:
        scores = torch.as_tensor(self.fn(pixels, prompts, metadata), dtype=torch.float32).reshape(-1)
        if scores.shape[0] != pixels.shape[0]:
            raise ValueError(f"reward {self.name} returned {scores.shape[0]} scores for {pixels.shape[0]} samples")
        return scores


def load_gen_reward(name: str, model_path: str | None = None, scale: float = 1.0) -> GenReward:
    if name == "shape_match":
        return GenReward(name, lambda px, p, m: gen_rewards.shape_match(_images(px, name), p),
                         gen_rewards.image_request)
    if name == "motion_match":
        return GenReward(name, lambda px, p, m: gen_rewards.motion_match(_videos(px, name), p),
                         gen_rewards.video_request)
    if name == "brisque":
        return GenReward(name, BrisqueReward())
    if name == "clip_score":
        if model_path is None:
            raise ValueError("reward.name=clip_score needs reward.model_path: a local CLIP / PickScore folder")
        return GenReward(name, ClipScore(model_path, scale))
    if ":" in name:
        return GenReward(name, _plug_in(name))
    raise ValueError(f"unknown reward {name!r}: one of {', '.join(BUILTIN)} or a module:function plug-in")


def _images(pixels: torch.Tensor, name: str) -> torch.Tensor:
    if pixels.dim() != 4:
        raise ValueError(f"reward {name} scores images [B, 3, H, W]; got {tuple(pixels.shape)} (a video model?)")
    return pixels


def _videos(pixels: torch.Tensor, name: str) -> torch.Tensor:
    if pixels.dim() != 5:
        raise ValueError(f"reward {name} scores videos [B, F, 3, H, W]; got {tuple(pixels.shape)} (an image model?)")
    return pixels


def _plug_in(spec: str) -> RewardFn:
    module, _, attr = spec.partition(":")
    try:
        fn = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as err:
        raise ValueError(f"reward plug-in {spec!r} cannot be loaded: {err}") from None
    params = list(inspect.signature(fn).parameters)
    if params and params[0] == "reward_inputs":  # Long-RL's batch reward functions
        def long_rl(pixels, prompts, metadata):
            key = "videos" if pixels.dim() == 5 else "images"
            return [float(r["overall"]) for r in fn([{key: p} for p in pixels])]
        return long_rl
    return fn


class BrisqueReward:
    """Long-RL's mapping of BRISQUE (lower is better, about 0-100) to [0, 1], higher better.
    The `brisque` package imports numba, whose objects break vLLM's kernel scan of
    `sys.modules` in the same process (measured: every vLLM engine start then fails), so
    the scores are computed in one worker process, started on first use."""

    def __init__(self):
        self._pool = None

    def __call__(self, pixels: torch.Tensor, prompts: list[str], metadata: list[dict]) -> list[float]:
        samples = []
        for sample in pixels:
            frames = sample[None] if sample.dim() == 3 else sample  # [F, 3, H, W]
            picks = np.linspace(0, frames.shape[0] - 1, max(1, frames.shape[0] // 8)).round().astype(int)
            samples.append([_uint8(frames[i]) for i in picks])
        if self._pool is None:
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor

            self._pool = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"))
        raw = self._pool.submit(_brisque_scores, samples).result()
        return [float(np.clip(1 - r / 100, 0.0, 1.0)) for r in raw]


def _brisque_scores(samples: list[list[np.ndarray]]) -> list[float]:
    """The mean raw BRISQUE score of each sample's frames (runs in the worker process)."""
    from brisque import BRISQUE

    scorer = BRISQUE(url=False)
    return [float(np.mean([scorer.score(frame) for frame in frames])) for frames in samples]


def _uint8(image: torch.Tensor) -> np.ndarray:
    return (image.detach().float().clamp(0, 1) * 255).round().byte().permute(1, 2, 0).cpu().numpy()


class ClipScore:
    """Cosine of image and text embeddings x logit scale / `scale` (a CLIP-style model)."""

    def __init__(self, path: str, scale: float):
        from transformers import AutoModel, AutoProcessor

        self.model = AutoModel.from_pretrained(path).eval()
        self.processor = AutoProcessor.from_pretrained(path)
        self.scale = scale

    @torch.no_grad()
    def __call__(self, pixels: torch.Tensor, prompts: list[str], metadata: list[dict]) -> list[float]:
        frames = pixels if pixels.dim() == 5 else pixels[:, None]  # [B, F, 3, H, W]
        b, f = frames.shape[:2]
        images = [_uint8(x) for x in frames.reshape(b * f, *frames.shape[2:])]
        inputs = self.processor(text=[p for p in prompts for _ in range(f)], images=images, return_tensors="pt",
                                padding=True, truncation=True)
        out = self.model(**inputs)
        img = torch.nn.functional.normalize(out.image_embeds, dim=-1)
        txt = torch.nn.functional.normalize(out.text_embeds, dim=-1)
        score = (img * txt).sum(-1) * self.model.logit_scale.exp() / self.scale  # [B*F]
        return score.reshape(b, f).mean(dim=1).tolist()
