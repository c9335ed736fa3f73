"""On-disk cache of video embeddings, keyed by content.

A key is the sha256 of (video content fingerprint, sampler settings, encoder weights
fingerprint, CACHE_FORMAT_VERSION), so a hit is exact: renaming or copying a video still hits;
changing its bytes, the sampler (frame count, fps, resolution...) or the encoder's weights
misses. (The authors keyed by file name and disabled the cache on a mismatch; docs/reference.md
pitfall 5.)

Each entry is one safetensors file holding the tensor plus metadata (key, format version,
shape, dtype, sha256 of the tensor bytes, caller's meta), written atomically (temp file in the
same directory, fsync, os.replace), so readers and concurrent writers of the same key only ever
see a complete file. A file that cannot be parsed, belongs to another key or version, or fails
its checksum is logged, counted in `corrupt`, deleted and treated as a miss; the cache never
turns itself off.

This module uses torch and safetensors only (it must not import harness.model).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

CACHE_FORMAT_VERSION = 1  # bump when the stored layout or the meaning of a key changes

# Files up to this size are hashed whole; larger ones by sampled blocks (see video_fingerprint).
FULL_HASH_LIMIT = 64 * 1024 * 1024
SAMPLE_BLOCKS = 32
SAMPLE_BLOCK_SIZE = 1024 * 1024

_TENSOR_NAME = "embedding"
_KEY_RE = re.compile(r"[0-9a-f]{64}")

logger = logging.getLogger(__name__)


def _tensor_bytes(t: torch.Tensor) -> memoryview:
    """Raw bytes of a tensor in row-major order, for any dtype (bf16 included)."""
    if t.device.type == "meta":
        raise ValueError("cannot read the bytes of a meta tensor")
    flat = t.detach().to("cpu").contiguous().reshape(-1)
    return memoryview(flat.view(torch.uint8).numpy())


def _tensor_sha256(t: torch.Tensor) -> str:
    return hashlib.sha256(_tensor_bytes(t)).hexdigest()


def video_fingerprint(path: str | Path) -> str:
    """sha256 identifying a video file by content (not by name), hex.

    Files up to 64 MiB: size + all bytes. Larger files: size + 32 blocks of 1 MiB at evenly
    spaced offsets (first and last MiB included), so fingerprinting an hour-long video reads
    32 MiB, not gigabytes. Stable across renames and copies; changes when the size changes or
    any sampled byte changes. An edit confined to unsampled bytes of a large file that keeps its
    size is not seen; re-encoding or trimming a video changes its size or container headers.
    """
    p = Path(path)
    size = p.stat().st_size
    h = hashlib.sha256()
    h.update(f"video-fingerprint-v1 size={size};".encode())
    with p.open("rb") as f:
        if size <= FULL_HASH_LIMIT:
            for chunk in iter(lambda: f.read(SAMPLE_BLOCK_SIZE), b""):
                h.update(chunk)
        else:
            last = size - SAMPLE_BLOCK_SIZE
            for k in range(SAMPLE_BLOCKS):
                f.seek(k * last // (SAMPLE_BLOCKS - 1))
                h.update(f.read(SAMPLE_BLOCK_SIZE))
    return h.hexdigest()


def weights_fingerprint(weights: torch.nn.Module | Mapping[str, torch.Tensor]) -> str:
    """sha256 over a module's state_dict (or a mapping of tensors), hex.

    Hashes, in sorted name order, each name, dtype, shape and the raw bytes, so any change of a
    value, dtype, shape or name changes it, and the device or memory layout does not. Pass the
    frozen encoder (vision tower + projector), not the whole model: the LLM's weights change
    every RL step and do not affect video embeddings.
    """
    state = weights.state_dict() if isinstance(weights, torch.nn.Module) else weights
    h = hashlib.sha256()
    h.update(b"weights-fingerprint-v1;")
    for name in sorted(state):
        t = state[name]
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"state entry {name!r} is a {type(t).__name__}, not a tensor")
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)};".encode())
        h.update(_tensor_bytes(t))
    return h.hexdigest()


def make_key(video_path: str | Path, sampler: Mapping[str, object], weights_fp: str) -> str:
    """Cache key (64 hex chars) for one video under one sampler setting and one encoder.

    `sampler` holds everything that decides which pixels reach the encoder (e.g. num_frames,
    sample_fps, image_size, min/max pixels); it must be JSON-serialisable, and values are
    compared by their JSON form (so 64 and 64.0 are different settings, never merged).
    """
    payload = {
        "format_version": CACHE_FORMAT_VERSION,
        "video": video_fingerprint(video_path),
        "sampler": dict(sampler),
        "weights": weights_fp,
    }
    blob = json.dumps(payload, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(blob.encode()).hexdigest()


class EmbedCache:
    """Content-keyed embedding cache in a directory (safe to share between processes).

    Counters (per instance): every `get` is one hit or one miss; `corrupt` counts entries found
    damaged and deleted (each of those lookups is also a miss); `writes` counts `put`s.
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.hits = 0
        self.misses = 0
        self.corrupt = 0
        self.writes = 0

    def path_for(self, key: str) -> Path:
        if not isinstance(key, str) or not _KEY_RE.fullmatch(key):
            raise ValueError(
                f"cache key must be 64 lowercase hex chars (see make_key), got {key!r}"
            )
        # Two-level layout keeps directories small with many thousands of videos.
        return self.root / key[:2] / f"{key}.safetensors"

    def stats(self) -> dict[str, int]:
        return {
            "hits": self.hits,
            "misses": self.misses,
            "corrupt": self.corrupt,
            "writes": self.writes,
        }

    def get(self, key: str, *, device: str | torch.device = "cpu") -> torch.Tensor | None:
        """The stored tensor for `key` on `device`, or None (missing, or damaged and deleted)."""
        found = self.get_with_meta(key, device=device)
        return None if found is None else found[0]

    def get_with_meta(self, key: str, *, device: str | torch.device = "cpu"
                      ) -> tuple[torch.Tensor, dict] | None:
        """(tensor on `device`, the `meta` given to `put`), or None as `get`."""
        path = self.path_for(key)
        if not path.exists():
            self.misses += 1
            return None
        tensor, problem, meta = self._read(path, key)
        if problem is not None:
            self._discard(path, problem)
            self.misses += 1
            return None
        self.hits += 1
        return tensor.to(device), meta

    def put(self, key: str, tensor: torch.Tensor, meta: Mapping[str, object] | None = None) -> Path:
        """Store `tensor` under `key` atomically; `meta` (JSON-serialisable) is kept alongside."""
        path = self.path_for(key)
        if not isinstance(tensor, torch.Tensor):
            raise TypeError(f"can only cache tensors, got {type(tensor).__name__}")
        data = tensor.detach().to("cpu").contiguous()  # no clone: embeddings can be GBs
        metadata = {
            "key": key,
            "format_version": str(CACHE_FORMAT_VERSION),
            "shape": json.dumps(list(data.shape)),
            "dtype": str(data.dtype),
            "sha256": _tensor_sha256(data),
            "meta": json.dumps(dict(meta or {}), sort_keys=True, allow_nan=False),
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{key[:16]}.", suffix=".tmp")
        os.close(fd)
        try:
            save_file({_TENSOR_NAME: data}, tmp_name, metadata=metadata)
            with open(tmp_name, "rb") as f:
                os.fsync(f.fileno())  # the bytes are on disk before the name points at them
            os.replace(tmp_name, path)  # atomic: readers see the old file or the new, never half
        except BaseException:
            Path(tmp_name).unlink(missing_ok=True)
            raise
        self._fsync_dir(path.parent)
        self.writes += 1
        return path

    def get_or_compute(
        self,
        key: str,
        compute_fn: Callable[[], torch.Tensor],
        *,
        meta: Mapping[str, object] | None = None,
        device: str | torch.device = "cpu",
    ) -> torch.Tensor:
        """The cached tensor, or `compute_fn()` stored then returned; on `device` either way."""
        cached = self.get(key, device=device)
        if cached is not None:
            return cached
        tensor = compute_fn()
        self.put(key, tensor, meta)
        return tensor.to(device)

    # -------------------------------------------------------------------------- internals

    def _read(self, path: Path, key: str) -> tuple[torch.Tensor | None, str | None, dict]:
        """(tensor, None, meta) when the entry is sound, else (None, why it is not, {})."""
        try:
            with safe_open(str(path), framework="pt") as f:
                metadata = f.metadata() or {}
                names = list(f.keys())
                if names != [_TENSOR_NAME]:
                    return None, f"unexpected tensors {names}", {}
                tensor = f.get_tensor(_TENSOR_NAME)
        except (SafetensorError, OSError, ValueError, RuntimeError) as err:
            return None, f"unreadable safetensors file ({type(err).__name__}: {err})", {}
        if metadata.get("format_version") != str(CACHE_FORMAT_VERSION):
            return (
                None,
                f"format version {metadata.get('format_version')!r} != {CACHE_FORMAT_VERSION}",
                {},
            )
        if metadata.get("key") != key:
            return None, f"stored key {metadata.get('key')!r} differs from requested key", {}
        if metadata.get("shape") != json.dumps(list(tensor.shape)) or metadata.get("dtype") != str(
            tensor.dtype
        ):
            return None, "stored shape/dtype do not match the tensor", {}
        if metadata.get("sha256") != _tensor_sha256(tensor):
            return None, "checksum mismatch", {}
        try:
            meta = json.loads(metadata.get("meta", "{}"))
        except json.JSONDecodeError as err:
            return None, f"unreadable meta ({err})", {}
        return tensor, None, meta

    def _discard(self, path: Path, reason: str) -> None:
        logger.warning("embedding cache: discarding %s: %s", path, reason)
        self.corrupt += 1
        # Another process may have just replaced it with a good copy; deleting that one costs a
        # recompute, never a wrong result.
        path.unlink(missing_ok=True)

    @staticmethod
    def _fsync_dir(directory: Path) -> None:
        # Makes the rename itself durable; not supported on every platform/filesystem.
        try:
            fd = os.open(directory, os.O_RDONLY)
        except OSError:
            return
        try:
            os.fsync(fd)
        except OSError:
            pass
        finally:
            os.close(fd)
