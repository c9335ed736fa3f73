"""Video embeddings for one training step.

With `reuse=True` (MR-SP) each prompt's video is encoded once per step and the same
embeddings serve every rollout, every log-prob pass and the update. With `reuse=False`
(the baseline, as systems without MR-SP do) every request encodes again. The vision tower
is frozen in RL, so both modes give identical numbers; only the cost differs, and
`encoder_calls` counts it.
"""

from __future__ import annotations

import torch

from harness.data.video import VideoClip
from harness.model.interface import VideoEmbeds, VideoLM


class StepVideoCache:
    def __init__(self, model: VideoLM, reuse: bool):
        self.model = model
        self.reuse = reuse
        self.encoder_calls = 0
        self._step: dict[str, VideoEmbeds] = {}

    def get(self, key: str, clip: VideoClip) -> VideoEmbeds:
        if self.reuse and key in self._step:
            return self._step[key]
        with torch.no_grad():
            video = self.model.encode_frames(clip.frames, clip.timestamps)
        self.encoder_calls += 1
        if self.reuse:
            self._step[key] = video
        return video

    def new_step(self) -> None:
        """Drop the previous step's embeddings (the batch's videos change every step)."""
        self._step.clear()
