"""Checkpoints of the SFT and RL recipes; a resumed run continues exactly as an
uninterrupted one would (docs/design.md, "What must hold").

Layout of one checkpoint, `out_dir/checkpoints/step_000123/`:

- `model/`            the model in HF format (`model.save_pretrained`): loadable by
                      `harness.model.build.load_model`, and its LLM part by transformers.
                      A model whose frozen parts are large and never change (a generation
                      pipeline's text encoders and VAE) writes only what trains instead
                      (`save_trainable` / `load_trainable`, harness/gen/models.py).
- `trainer_state.pt`  optimizer and scheduler state dicts, the RNG states (python `random`,
                      numpy's global generator, torch CPU, every visible CUDA device), the
                      caller's `data_state`, `step` and `extra`.
- `meta.json`         step, time, harness version, the files with their sizes and sha256
                      (checked before a resume loads the checkpoint: `verify_checkpoint`).

Exactness rests on three things saved together: the weights and optimizer state, the RNG
states, and the data position (`data_state`: e.g. epoch, index into the epoch's permutation,
the permutation seed, given by the recipe). Save at the end of step `step`, after everything
that step draws from an RNG; a resumed run starts at `step + 1`.

A checkpoint is written into `step_XXXXXX.tmp-<pid>` and renamed into place, so a crash
mid-save never leaves a half checkpoint that `latest_checkpoint` would pick.

`trainer_state.pt` is read with `torch.load(weights_only=False)` because it holds numpy's RNG
state and python objects: only load checkpoints you (or your own runs) wrote.

The state is that of the calling process: one process saves (rank 0), with the unwrapped
model and a plain (unsharded) optimizer, or with the full weights and optimizer state that
every rank gathered first (`Strategy.gather_for_save`, harness/parallel/strategy.py). Loading
is per rank: every rank reads the full checkpoint, and the run's strategy keeps what the rank
holds of it (ZeRO-2/3: its own shards).
"""

from __future__ import annotations

import json
import logging
import os
import random
import re
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

import harness
from harness.errors import HarnessError
from harness.files import sha256_file
from harness.model.build import load_model
from harness.parallel.groups import SINGLE_PROCESS
from harness.parallel.strategy import Replicated

log = logging.getLogger(__name__)

CHECKPOINTS_DIR = "checkpoints"
_FINAL_NAME = re.compile(r"^step_(\d+)$")
_TMP_NAME = re.compile(r"^step_\d+\.tmp-\d+$")


class CheckpointError(HarnessError, RuntimeError):
    """A checkpoint is incomplete, unreadable, or does not fit the objects given to load it."""


def save_checkpoint(
    out_dir: str | Path,
    step: int,
    *,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer | dict[str, Any],
    scheduler: Any = None,
    data_state: dict[str, Any],
    extra: dict[str, Any] | None = None,
    keep_last: int | None = 2,
) -> Path:
    """Write `out_dir/checkpoints/step_{step:06d}/` and return its path.

    `model` needs `save_pretrained(dir)` (a `VideoLM`). `scheduler` is anything with
    `state_dict()`/`load_state_dict()` (torch LR schedulers). `data_state` and `extra` are
    plain dicts returned as they are by `load_checkpoint`. `optimizer` may be a state dict
    already gathered (sharded training). After the new checkpoint is on
    disk, older ones beyond the newest `keep_last` are deleted (None keeps all), and so are
    `.tmp-` folders left by crashed saves (only one process may save into an out_dir).
    """
    if keep_last is not None and keep_last < 1:
        raise ValueError(f"keep_last must be >= 1 or None, got {keep_last}")
    if not isinstance(data_state, dict):
        raise TypeError(f"data_state must be a dict, got {type(data_state).__name__}")
    root = Path(out_dir) / CHECKPOINTS_DIR
    final = root / f"step_{step:06d}"
    if final.exists():
        raise FileExistsError(f"checkpoint {final} already exists; refusing to overwrite it")
    _clear_crashed_saves(root)
    tmp = root / f"{final.name}.tmp-{os.getpid()}"
    tmp.mkdir()
    try:
        state = {
            "step": step,
            "optimizer": optimizer if isinstance(optimizer, dict) else optimizer.state_dict(),
            "scheduler": scheduler.state_dict() if scheduler is not None else None,
            "rng": _rng_state(),
            "data_state": data_state,
            "extra": extra or {},
        }
        _write_tree(tmp, step, model, state)
    except Exception as e:
        shutil.rmtree(tmp, ignore_errors=True)  # a failed save leaves nothing behind
        free = shutil.disk_usage(root).free / 2**30
        # torch reports a full disk as "iostream error" or "file write failed", without a path
        raise CheckpointError(f"writing checkpoint {final} failed ({str(e).splitlines()[0]}); {free:.1f} GiB "
                              f"free on its disk; the checkpoints before it are intact") from e
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    os.replace(tmp, final)
    _fsync_dir(root)

    if keep_last is not None:
        for old in list_checkpoints(out_dir)[:-keep_last]:
            if old != final:
                shutil.rmtree(old)
    return final


def _clear_crashed_saves(root: Path) -> None:
    root.mkdir(parents=True, exist_ok=True)
    for stale in root.iterdir():
        if _TMP_NAME.match(stale.name):
            shutil.rmtree(stale)


def _write_tree(tmp: Path, step: int, model: torch.nn.Module, state: dict[str, Any]) -> None:
    """The checkpoint's files in `tmp`: the model, the trainer state, and meta.json with each
    file's size and sha256; fsynced (durable before the rename, and the rename durable
    before pruning: otherwise a power loss could leave neither the new checkpoint nor the
    old ones)."""
    save = getattr(model, "save_trainable", None) or model.save_pretrained
    save(tmp / "model")
    torch.save(state, tmp / "trainer_state.pt")
    files = {str(p.relative_to(tmp)): {"size": p.stat().st_size, "sha256": sha256_file(p)}
             for p in sorted(tmp.rglob("*")) if p.is_file()}
    meta = {"step": step, "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "harness_version": harness.__version__, "files": files}
    (tmp / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    _fsync_tree(tmp)


def list_checkpoints(out_dir: str | Path) -> list[Path]:
    """Complete checkpoints (final name and a meta.json) under `out_dir`, oldest step first."""
    root = Path(out_dir) / CHECKPOINTS_DIR
    if not root.is_dir():
        return []
    found = [
        (int(m.group(1)), p)
        for p in root.iterdir()
        if (m := _FINAL_NAME.match(p.name)) and p.is_dir() and (p / "meta.json").is_file()
    ]
    return [p for _, p in sorted(found)]


def verify_checkpoint(path: str | Path) -> str | None:
    """Why a checkpoint's files differ from what its meta.json recorded when it was saved
    (a missing, resized or altered file), or None when they all match. Checkpoints saved
    before checksums were recorded are checked by size."""
    path = Path(path)
    try:
        files = json.loads((path / "meta.json").read_text())["files"]
    except (OSError, ValueError, KeyError) as err:
        return f"meta.json unreadable ({err})"
    for rel, want in files.items():
        f = path / rel
        if not f.is_file():
            return f"{rel} is missing"
        size = want["size"] if isinstance(want, dict) else want
        if f.stat().st_size != size:
            return f"{rel} has {f.stat().st_size} bytes, {size} were saved"
        if isinstance(want, dict) and sha256_file(f) != want["sha256"]:
            return f"{rel} differs from what was saved (sha256 mismatch)"
    return None


def latest_intact_checkpoint(out_dir: str | Path) -> Path | None:
    """The newest checkpoint whose files match their checksums. Each damaged newer one is
    named in a warning and renamed to `<name>.damaged[-N]` (kept for inspection, out of the
    way of the step that saves anew). Only the saving process may call this."""
    for path in reversed(list_checkpoints(out_dir)):
        problem = verify_checkpoint(path)
        if problem is None:
            return path
        log.warning("checkpoint %s is damaged (%s); trying the one before it", path, problem)
        n = 0
        while (aside := path.with_name(f"{path.name}.damaged{f'-{n}' if n else ''}")).exists():
            n += 1
        os.replace(path, aside)
    return None


def latest_checkpoint(out_dir: str | Path) -> Path | None:
    """The complete checkpoint with the highest step, or None (temp folders are ignored)."""
    found = list_checkpoints(out_dir)
    return found[-1] if found else None


def load_checkpoint(
    path: str | Path,
    *,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: Any = None,
    restore_rng: bool = True,
    strategy: Replicated | None = None,
) -> dict[str, Any]:
    """Restore a checkpoint into the given objects, in place; returns
    `{"step": int, "data_state": dict, "extra": dict}`.

    The weights are read with `load_model(path/"model")` (in the dtype of `model`) and copied
    with a strict `load_state_dict`, so a checkpoint of another architecture is an error.
    `optimizer`/`scheduler` left as None are not restored (evaluation, export). The RNG states
    are restored last, because building the loaded model draws from torch's RNG. `strategy`:
    how `model` and `optimizer` are held across ranks (default: whole, on this process).
    """
    path = Path(path)
    for name in ("meta.json", "model", "trainer_state.pt"):
        if not (path / name).exists():
            raise CheckpointError(f"{path} is not a complete checkpoint: missing {name}")
    try:
        state = torch.load(path / "trainer_state.pt", map_location="cpu", weights_only=False)
    except Exception as e:  # torch raises several types for truncated or garbled files
        raise CheckpointError(f"{path / 'trainer_state.pt'} is unreadable (corrupt or truncated?): {e}") from e
    missing = {"step", "optimizer", "scheduler", "rng", "data_state", "extra"} - set(state)
    if missing:
        raise CheckpointError(f"{path / 'trainer_state.pt'} lacks {sorted(missing)}")

    dtype = next((p.dtype for p in model.parameters() if p.is_floating_point()), torch.float32)
    try:
        if hasattr(model, "load_trainable"):
            weights = model.load_trainable(path / "model")
        else:
            weights = load_model(path / "model", dtype=dtype).state_dict()
    except Exception as e:  # safetensors, transformers and diffusers raise many types for damaged files
        raise CheckpointError(f"{path / 'model'} cannot be loaded (damaged?): {str(e).splitlines()[0]}") from e
    strategy = strategy or Replicated(SINGLE_PROCESS)
    try:
        # a model writing only what trains (`save_trainable`) reads back only that
        strategy.load_state(model, optimizer, weights, state["optimizer"],
                            trainable_only=hasattr(model, "load_trainable"))
    except RuntimeError as e:
        raise CheckpointError(f"{path} does not fit the given model or optimizer: {e}") from e
    del weights

    if scheduler is not None:
        if state["scheduler"] is None:
            raise CheckpointError(f"{path} holds no scheduler state, but a scheduler was given")
        scheduler.load_state_dict(state["scheduler"])
    if restore_rng:
        _set_rng_state(state["rng"], path)
    return {"step": state["step"], "data_state": state["data_state"], "extra": state["extra"]}


def _rng_state() -> dict[str, Any]:
    return {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def _set_rng_state(rng: dict[str, Any], path: Path) -> None:
    devices = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if len(rng["cuda"]) != devices:
        # Resuming on other hardware cannot continue the same random stream.
        raise CheckpointError(
            f"{path} was saved with {len(rng['cuda'])} CUDA device(s), this process sees "
            f"{devices}; pass restore_rng=False to load it anyway (the run will not be exact)"
        )
    random.setstate(rng["python"])
    np.random.set_state(rng["numpy"])
    torch.set_rng_state(rng["torch"])
    if devices:
        torch.cuda.set_rng_state_all(rng["cuda"])


def _fsync_tree(root: Path) -> None:
    for p in root.rglob("*"):
        if p.is_file():
            with open(p, "rb") as f:
                os.fsync(f.fileno())
    for d in [root, *(p for p in root.rglob("*") if p.is_dir())]:
        _fsync_dir(d)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
