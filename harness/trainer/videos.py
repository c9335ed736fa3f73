"""Video embeddings for one training step.

With `reuse=True` (MR-SP) each prompt's video is encoded once per step and the same
embeddings serve every rollout, every log-prob pass and the update. With `reuse=False`
(the baseline, as systems without MR-SP do) every request encodes again. The vision tower
is frozen in RL, so both modes give identical numbers; only the cost differs, and
`encoder_calls` counts it.
"""

from __future__ import annotations

import torch
import torch.distributed as dist

from harness.data.video import VideoClip
from harness.model.interface import VideoEmbeds, VideoLM
from harness.parallel.encode import encode_split


class StepVideoCache:
    """`sp_group`: when given, each video's frames are split across the group's ranks
    (MR-SP stage 1) and the embeddings all-gathered; every rank gets the whole video."""

    def __init__(self, model: VideoLM, reuse: bool, sp_group: dist.ProcessGroup | None = None):
        self.model = model
        self.reuse = reuse
        self.sp_group = sp_group
        self.encoder_calls = 0
        self._step: dict[str, VideoEmbeds] = {}

    def get(self, key: str, clip: VideoClip) -> VideoEmbeds:
        if self.reuse and key in self._step:
            return self._step[key]
        with torch.no_grad():
            pixels = self.model.preprocess(clip.frames, clip.timestamps, clip.frame_seconds)
            embeds = encode_split(pixels.units.shape[0],
                                  lambda a, b: self.model.encode_units(pixels.select(a, b)),
                                  self.sp_group)  # [U, T, D]
            video = VideoEmbeds(embeds, self.model.token_grid(pixels), pixels.seconds_per_unit)
        self.encoder_calls += 1
        if self.reuse:
            self._step[key] = video
        return video

    def new_step(self) -> None:
        """Drop the previous step's embeddings (the batch's videos change every step)."""
        self._step.clear()
