"""Tests for harness.data.embed_cache: exact keys, bitwise hits, corruption handling, atomicity."""

from __future__ import annotations

import json
import logging
import multiprocessing
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from harness.data import embed_cache
from harness.data.embed_cache import (
    CACHE_FORMAT_VERSION,
    EmbedCache,
    make_key,
    video_fingerprint,
    weights_fingerprint,
)

SAMPLER = {"num_frames": 8, "sample_fps": None, "image_size": 384}


def _all_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


# ----------------------------------------------------------------------------- fingerprints


def test_video_fingerprint_follows_content_not_name(tmp_path: Path) -> None:
    a = tmp_path / "a.mp4"
    a.write_bytes(b"\x00video bytes" * 1000)
    b = tmp_path / "sub" / "renamed.mp4"
    b.parent.mkdir()
    shutil.copy(a, b)
    assert video_fingerprint(a) == video_fingerprint(b)
    data = bytearray(a.read_bytes())
    data[5000] ^= 1
    b.write_bytes(bytes(data))
    assert video_fingerprint(a) != video_fingerprint(b)
    b.write_bytes(a.read_bytes() + b"\x00")
    assert video_fingerprint(a) != video_fingerprint(b)


def test_video_fingerprint_large_file_samples_blocks(tmp_path: Path) -> None:
    size = embed_cache.FULL_HASH_LIMIT + 3 * 1024 * 1024  # sampled mode
    path = tmp_path / "big.mp4"
    with path.open("wb") as f:
        f.truncate(size)  # sparse: fast to write and to read
    base = video_fingerprint(path)

    def poke(offset: int) -> str:
        with path.open("r+b") as f:
            f.seek(offset)
            old = f.read(1)
            f.seek(offset)
            f.write(bytes([old[0] ^ 0xFF]))
        fp = video_fingerprint(path)
        with path.open("r+b") as f:  # restore
            f.seek(offset)
            f.write(old)
        return fp

    assert poke(10) != base  # first block
    assert poke(size - 10) != base  # last block
    # Documented limitation: a same-size edit between sampled blocks is not seen.
    gap = embed_cache.SAMPLE_BLOCK_SIZE + (size - embed_cache.SAMPLE_BLOCK_SIZE) // 62
    assert poke(gap) == base
    assert video_fingerprint(path) == base


def test_weights_fingerprint() -> None:
    torch.manual_seed(0)
    module = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.LayerNorm(3))
    fp = weights_fingerprint(module)
    assert fp == weights_fingerprint(module.state_dict())
    assert fp == weights_fingerprint(dict(reversed(list(module.state_dict().items()))))
    state = {k: v.clone() for k, v in module.state_dict().items()}
    state["0.weight"][1, 2] += 1e-6
    assert weights_fingerprint(state) != fp
    assert weights_fingerprint({k: v.double() for k, v in module.state_dict().items()}) != fp
    renamed = {("x." + k): v for k, v in module.state_dict().items()}
    assert weights_fingerprint(renamed) != fp
    w = torch.randn(5, 6)
    assert weights_fingerprint({"w": w}) == weights_fingerprint({"w": w.t().contiguous().t()})
    assert weights_fingerprint({"w": w}) != weights_fingerprint({"w": w.reshape(6, 5)})
    assert weights_fingerprint({"w": w.bfloat16()}) != weights_fingerprint({"w": w})
    with pytest.raises(TypeError):
        weights_fingerprint({"w": 1.0})


def test_make_key_is_exact(tmp_path: Path) -> None:
    a = tmp_path / "a.mp4"
    a.write_bytes(b"abc" * 100)
    copy = tmp_path / "copy_with_another_name.mp4"
    shutil.copy(a, copy)
    other = tmp_path / "other.mp4"
    other.write_bytes(b"abd" * 100)
    key = make_key(a, SAMPLER, "w1")
    assert len(key) == 64 and int(key, 16) >= 0
    assert make_key(copy, SAMPLER, "w1") == key
    assert make_key(a, dict(reversed(list(SAMPLER.items()))), "w1") == key
    assert make_key(other, SAMPLER, "w1") != key
    assert make_key(a, SAMPLER, "w2") != key
    assert make_key(a, {**SAMPLER, "num_frames": 16}, "w1") != key
    assert make_key(a, {**SAMPLER, "sample_fps": 1.0}, "w1") != key
    assert make_key(a, {**SAMPLER, "extra": 0}, "w1") != key
    with pytest.raises(TypeError):
        make_key(a, {"bad": object()}, "w1")


def test_key_depends_on_format_version(tmp_path: Path, monkeypatch) -> None:
    a = tmp_path / "a.mp4"
    a.write_bytes(b"abc")
    key = make_key(a, SAMPLER, "w")
    monkeypatch.setattr(embed_cache, "CACHE_FORMAT_VERSION", CACHE_FORMAT_VERSION + 1)
    assert make_key(a, SAMPLER, "w") != key


# ----------------------------------------------------------------------------- cache


def _key(n: int) -> str:
    return f"{n:064x}"


class _Counter:
    """compute_fn that counts its calls and returns a fixed tensor."""

    def __init__(self, tensor: torch.Tensor) -> None:
        self.tensor, self.calls = tensor, 0

    def __call__(self) -> torch.Tensor:
        self.calls += 1
        return self.tensor.clone()


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_hit_equals_recompute_bitwise(tmp_path: Path, dtype: torch.dtype) -> None:
    torch.manual_seed(0)
    expected = torch.randn(3, 5, 7).to(dtype)  # [frames, tokens, dim]
    cache = EmbedCache(tmp_path)
    compute = _Counter(expected)
    first = cache.get_or_compute(_key(1), compute, meta={"video": "a.mp4"})
    second = cache.get_or_compute(_key(1), compute)
    assert compute.calls == 1
    assert second.dtype == dtype and second.shape == expected.shape
    assert torch.equal(first.view(torch.uint8), expected.view(torch.uint8))
    assert torch.equal(second.view(torch.uint8), expected.view(torch.uint8))
    assert cache.stats() == {"hits": 1, "misses": 1, "corrupt": 0, "writes": 1}
    # A fresh instance (another process, a later run) reads the same bytes.
    again = EmbedCache(tmp_path).get(_key(1))
    assert again is not None and torch.equal(again.view(torch.uint8), expected.view(torch.uint8))


def test_different_keys_miss(tmp_path: Path) -> None:
    video = tmp_path / "v.mp4"
    video.write_bytes(b"\x01" * 4096)
    cache = EmbedCache(tmp_path / "cache")
    cache.put(make_key(video, SAMPLER, "w1"), torch.ones(2, 3))
    assert cache.get(make_key(video, SAMPLER, "w2")) is None
    assert cache.get(make_key(video, {**SAMPLER, "num_frames": 9}, "w1")) is None
    assert cache.get(make_key(video, SAMPLER, "w1")) is not None
    assert (cache.hits, cache.misses, cache.corrupt) == (1, 2, 0)


def test_views_and_non_contiguous_tensors_are_stored_by_value(tmp_path: Path) -> None:
    cache = EmbedCache(tmp_path)
    base = torch.arange(60.0).reshape(6, 10)
    cache.put(_key(1), base[2:4])
    cache.put(_key(2), base.t())
    assert torch.equal(cache.get(_key(1)), base[2:4])
    assert torch.equal(cache.get(_key(2)), base.t())


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _flip_last_byte(path: Path) -> None:  # inside the tensor data
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))


def _flip_header_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[20] ^= 0xFF
    path.write_bytes(bytes(data))


def _garbage(path: Path) -> None:
    path.write_bytes(b"this is not a safetensors file" * 10)


def _empty(path: Path) -> None:
    path.write_bytes(b"")


def _rewrite_metadata(path: Path, **changes: str) -> None:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        metadata = {**f.metadata(), **changes}
        tensor = f.get_tensor("embedding")
    save_file({"embedding": tensor}, str(path), metadata=metadata)


def _other_key(path: Path) -> None:
    _rewrite_metadata(path, key=_key(999))


def _old_version(path: Path) -> None:
    _rewrite_metadata(path, format_version=str(CACHE_FORMAT_VERSION - 1))


def _wrong_checksum(path: Path) -> None:
    _rewrite_metadata(path, sha256="0" * 64)


def _other_tensor_same_metadata(path: Path) -> None:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        metadata = f.metadata()
        tensor = f.get_tensor("embedding")
    save_file({"embedding": tensor + 1}, str(path), metadata=metadata)


@pytest.mark.parametrize(
    "damage",
    [
        _truncate,
        _flip_last_byte,
        _flip_header_byte,
        _garbage,
        _empty,
        _other_key,
        _old_version,
        _wrong_checksum,
        _other_tensor_same_metadata,
    ],
)
def test_damaged_entry_is_detected_counted_and_recomputed(tmp_path: Path, caplog, damage) -> None:
    torch.manual_seed(0)
    expected = torch.randn(4, 6).bfloat16()
    cache = EmbedCache(tmp_path)
    path = cache.put(_key(7), expected)
    damage(path)
    compute = _Counter(expected)
    with caplog.at_level(logging.WARNING, logger="harness.data.embed_cache"):
        result = cache.get_or_compute(_key(7), compute)
    assert compute.calls == 1
    assert torch.equal(result, expected)
    assert cache.corrupt == 1 and cache.misses == 1 and cache.writes == 2
    assert any(str(path) in r.getMessage() and r.levelno == logging.WARNING for r in caplog.records)
    # The recomputed entry replaced the damaged one and is sound.
    assert torch.equal(cache.get(_key(7)), expected) and cache.hits == 1


def test_put_is_atomic_and_leaves_no_temp_files(tmp_path: Path, monkeypatch) -> None:
    cache = EmbedCache(tmp_path)
    for i in range(5):
        cache.put(_key(i), torch.full((3,), float(i)))
    files = _all_files(tmp_path)
    assert len(files) == 5 and all(p.suffix == ".safetensors" for p in files)

    def failing_save(tensors, filename, metadata=None):
        Path(filename).write_bytes(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(embed_cache, "save_file", failing_save)
    with pytest.raises(OSError, match="disk full"):
        cache.put(_key(1), torch.zeros(3))
    with pytest.raises(OSError, match="disk full"):
        cache.put(_key(99), torch.zeros(3))
    assert _all_files(tmp_path) == files  # no temp files, no half-written entry
    assert torch.equal(cache.get(_key(1)), torch.full((3,), 1.0))  # old entry intact
    assert cache.get(_key(99)) is None


def test_rejects_bad_keys_and_values(tmp_path: Path) -> None:
    cache = EmbedCache(tmp_path)
    for bad in ("../../etc/passwd", "abc", "A" * 64, _key(1) + "0", "g" * 64):
        with pytest.raises(ValueError):
            cache.get(bad)
    with pytest.raises(TypeError):
        cache.put(_key(1), [1, 2, 3])
    with pytest.raises(TypeError):
        cache.get_or_compute(_key(1), lambda: "not a tensor")


def test_meta_is_stored(tmp_path: Path) -> None:
    from safetensors import safe_open

    cache = EmbedCache(tmp_path)
    path = cache.put(_key(3), torch.zeros(2, 2), {"video": "x.mp4", "frames": 8})
    with safe_open(str(path), framework="pt") as f:
        metadata = f.metadata()
    assert json.loads(metadata["meta"]) == {"video": "x.mp4", "frames": 8}
    assert metadata["key"] == _key(3) and metadata["dtype"] == "torch.float32"
    assert json.loads(metadata["shape"]) == [2, 2]


def _writer(root: str, key: str, rounds: int) -> None:
    cache = EmbedCache(root)
    expected = torch.arange(4096, dtype=torch.float32).reshape(64, 64)
    for _ in range(rounds):
        cache.put(key, expected)
        got = cache.get(key)
        # The entry may be replaced between put and get, never seen half-written.
        assert got is not None and torch.equal(got, expected)
    assert cache.corrupt == 0


def test_concurrent_puts_of_the_same_key(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("spawn")  # fork after torch init can deadlock
    key = _key(42)
    procs = [ctx.Process(target=_writer, args=(str(tmp_path), key, 40)) for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=60)
    assert [p.exitcode for p in procs] == [0, 0]
    cache = EmbedCache(tmp_path)
    assert torch.equal(cache.get(key), torch.arange(4096, dtype=torch.float32).reshape(64, 64))
    assert [p.name for p in _all_files(tmp_path)] == [f"{key}.safetensors"]
