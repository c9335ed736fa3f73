"""Video embeddings for one training step, and across steps and runs on disk.

With `reuse=True` (MR-SP) each prompt's video is encoded once per step and the same
embeddings serve every rollout, every log-prob pass and the update. With `reuse=False`
(the baseline, as systems without MR-SP do) every request encodes again. The vision tower
is frozen in RL, so both modes give identical numbers; only the cost differs, and
`encoder_calls` counts it.

`DiskEmbeds` (`train.embed_cache_dir`, `harness eval --embed-cache`) keeps each video's
embeddings in the content-keyed on-disk cache (harness/data/embed_cache.py), so a video is
decoded and encoded once across epochs and runs: the key covers the file's bytes, the frame
sampler, the encoder's settings and weights, the device type and the autocast dtype (a GPU or
bf16 encoding differs in its last bits from a CPU fp32 one), so a hit is the embedding this
run would compute. It needs a frozen encoder (the recipes check).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from harness.data.dataset import Medium
from harness.data.embed_cache import EmbedCache, make_key, weights_fingerprint
from harness.data.video import VideoClip
from harness.errors import HarnessError
from harness.model.interface import MediaEmbeds, VideoLM


class DiskEmbeds:
    """Embeddings of videos under one model and one frame sampler, in `root`."""

    def __init__(self, root: str | Path, model: VideoLM, sampler: Mapping[str, object]) -> None:
        self.cache = EmbedCache(root)
        self.model = model
        self.sampler = dict(sampler)
        tower, projector = model.vision_modules()
        # qwen's merger lives inside its tower: the same tensors under two names hash alike
        weights = {**{f"tower.{k}": v for k, v in tower.state_dict().items()},
                   **{f"projector.{k}": v for k, v in projector.state_dict().items()}}
        self.weights = weights_fingerprint(weights)
        self._keys: dict[tuple[str, int, int], str] = {}

    def key(self, path: str | Path) -> str | None:
        """The cache key of `path` under this run's settings (the file hashed once per
        (path, size, mtime)); None when there is no such file (the decoder says why)."""
        if not Path(path).is_file():
            return None
        st = Path(path).stat()
        memo = (str(path), st.st_size, st.st_mtime_ns)
        if memo not in self._keys:
            dev = self.model.device.type
            autocast = str(torch.get_autocast_dtype(dev)) if torch.is_autocast_enabled(dev) else None
            settings = {"sampler": self.sampler, "encoder": self.model.encoder_settings(), "device": dev,
                        "autocast": autocast, "dtype": str(next(self.model.parameters()).dtype)}
            self._keys[memo] = make_key(path, settings, self.weights)
        return self._keys[memo]

    def has(self, key: str | None) -> bool:
        return key is not None and self.cache.path_for(key).is_file()

    def read(self, key: str | None, group: dist.ProcessGroup | None = None) -> tuple[MediaEmbeds, dict] | None:
        """(embeddings on the model's device, what was stored about the clip) or None. With
        `group`, None unless every rank of it has the entry: encoding a miss is collective."""
        found = None if key is None else self.cache.get_with_meta(key, device=self.model.device)
        if group is not None:
            hit = torch.tensor([found is not None], dtype=torch.int32)
            dist.all_reduce(hit, op=dist.ReduceOp.MIN, group=group)
            found = found if hit.item() else None
        if found is None:
            return None
        embeds, meta = found
        return MediaEmbeds(embeds, tuple(meta["grid_hw"]), float(meta["seconds_per_unit"])), meta

    def write(self, key: str, video: MediaEmbeds, clip: VideoClip) -> None:
        self.cache.put(key, video.embeds, {
            "grid_hw": list(video.grid_hw), "seconds_per_unit": video.seconds_per_unit,
            "indices": np.asarray(clip.indices).tolist(), "video_fps": clip.video_fps,
            "duration": clip.duration})


def check_frozen_encoder(model: VideoLM, what: str) -> None:
    """The disk cache holds embeddings of fixed weights: a training encoder is refused."""
    tower, projector = model.vision_modules()
    if any(p.requires_grad for m in (tower, projector) for p in m.parameters()):
        raise HarnessError(f"{what} needs a frozen vision tower and projector (train.freeze_vision and "
                           f"train.freeze_projector true): a trained encoder's embeddings change every step")


class StepVideoCache:
    """`sp_group`: when given, each video's frames are split across the group's ranks
    (MR-SP stage 1) and the embeddings all-gathered; every rank gets the whole video.
    `disk`: read each video from the on-disk cache first and store what had to be encoded."""

    def __init__(self, model: VideoLM, reuse: bool, sp_group: dist.ProcessGroup | None = None,
                 disk: DiskEmbeds | None = None):
        if disk is not None and not reuse:
            raise HarnessError("the on-disk embedding cache (train.embed_cache_dir) and the no-cache baseline "
                               "(train.cache_video_embeds=false) exclude each other: drop one")
        self.model = model
        self.reuse = reuse
        self.sp_group = sp_group
        self.disk = disk
        self.encoder_calls = 0
        self.disk_hits = 0
        self._step: dict[str, MediaEmbeds] = {}

    def get(self, key: str, clip: VideoClip | None, path: str | Path | None = None,
            load: Callable[[], VideoClip | None] | None = None) -> MediaEmbeds:
        """The video's embeddings. With the disk cache, `path` names the video file; `clip`
        may then be None (the cache had it when the prompt was drawn) and `load` decodes it
        should the entry have gone since."""
        if self.reuse and key in self._step:
            return self._step[key]
        video = self._from_disk(path)
        if video is None:
            if clip is None:
                clip = load() if load is not None else None
                if clip is None:
                    raise HarnessError(f"{path}: its cached embeddings went missing and the video cannot be decoded")
            video = self._encode(clip)
            if self.disk is not None and (self.sp_group is None or dist.get_rank(self.sp_group) == 0):
                self.disk.write(self.disk.key(path), video, clip)  # the file was decoded: it exists
        if self.reuse:
            self._step[key] = video
        return video

    def get_medium(self, key: str, medium: Medium, load: Callable[[], object] | None = None) -> MediaEmbeds:
        """A record's medium's embeddings: a video as `get` (the disk cache is for videos);
        an image or audio track encoded once per step (with reuse), whole on every rank of
        the SP group for images, split over it where the family splits audio. `load`
        decodes the medium when it was not loaded."""
        if medium.kind == "video":
            return self.get(key, medium.data, medium.path, load=load)
        if self.reuse and key in self._step:
            return self._step[key]
        data = medium.data if medium.data is not None else (load() if load is not None else None)
        if data is None:
            raise HarnessError(f"{medium.path}: the {medium.kind} cannot be decoded")
        with torch.no_grad():
            embeds = self.model.encode_medium(medium.kind, data, self.sp_group)
        self.encoder_calls += 1
        if self.reuse:
            self._step[key] = embeds
        return embeds

    def _from_disk(self, path: str | Path | None) -> MediaEmbeds | None:
        """The disk's entry, if every rank of the SP group has it (the group then encodes
        nothing; if any rank misses, all encode together: encoding is collective)."""
        if self.disk is None:
            return None
        found = self.disk.read(self.disk.key(path), self.sp_group)
        if found is None:
            return None
        self.disk_hits += 1
        return found[0]

    def _encode(self, clip: VideoClip) -> MediaEmbeds:
        with torch.no_grad():
            video = self.model.encode_frames(clip.frames, clip.timestamps, clip.frame_seconds, self.sp_group)
        self.encoder_calls += 1
        return video

    def new_step(self) -> None:
        """Drop the previous step's embeddings (the batch's videos change every step)."""
        self._step.clear()
