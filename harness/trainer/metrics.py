"""What a recipe records per step: wall time per block, peak memory, and a metrics log.

The loop reads as timed blocks (verl style)::

    timer = StepTimer()
    with MetricsLogger(out_dir, resume=resuming) as log:
        if resuming:
            log.truncate_after(start_step - 1)   # the step of the checkpoint just loaded
        for step in range(start_step, total_steps + 1):
            with timer.block("rollout"):
                ...
            with timer.block("update"):
                with timer.block("update/backward"):
                    ...
            log.log(step, {**stats, **timer.pop(), **peak_memory()})
            reset_peak()

`metrics.jsonl` is the record of a run (one JSON object per line, flushed per line);
TensorBoard (`out_dir/tb`) is a view of the same numbers. After a resume both read as if
the run had never stopped: `truncate_after` drops the lines logged after the checkpoint and
tells TensorBoard to purge its events from those steps.
"""

from __future__ import annotations

import json
import math
import os
import resource
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import Any

import torch
from tqdm import tqdm

METRICS_FILE = "metrics.jsonl"
TB_DIR = "tb"


class StepTimer:
    """Wall seconds per named block within one step.

    Blocks with the same name add up; nesting is allowed and each name is timed on its
    own (name the inner one "update/backward" so it reads as a part of "update").
    `pop()` returns `{"time/<name>": seconds}` in the order the blocks were first entered
    and starts the next step from zero. On CUDA the device is synchronised at both ends of a
    block, since kernels run asynchronously and the clock would otherwise measure launches.
    """

    def __init__(self, sync_cuda: bool | None = None) -> None:
        self._sync_cuda = torch.cuda.is_available() if sync_cuda is None else sync_cuda
        self._totals: dict[str, float] = {}

    def _now(self) -> float:
        if self._sync_cuda:
            torch.cuda.synchronize()
        return time.perf_counter()

    @contextmanager
    def block(self, name: str) -> Iterator[None]:
        self._totals.setdefault(name, 0.0)  # order of first entry, even if the block raises
        start = self._now()
        try:
            yield
        finally:
            self._totals[name] += self._now() - start

    def pop(self) -> dict[str, float]:
        out = {f"time/{name}": seconds for name, seconds in self._totals.items()}
        self._totals = {}
        return out


def peak_memory() -> dict[str, float]:
    """Peak resident memory of this process (since it started; the OS cannot reset it) and,
    with CUDA, peak allocated GPU memory of the current device since `reset_peak()`, in GiB."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    rss_bytes = rss if sys.platform == "darwin" else rss * 1024  # Linux reports KiB
    out = {"mem/peak_rss_gb": rss_bytes / 2**30}
    if torch.cuda.is_available():
        out["mem/peak_cuda_gb"] = torch.cuda.max_memory_allocated() / 2**30
    return out


def reset_peak() -> None:
    """Start a new CUDA peak-memory window (per step). Nothing to reset without CUDA."""
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()


class MetricsLogger:
    """Appends `{"step": step, **metrics}` lines to `out_dir/metrics.jsonl` and writes the same
    scalars to TensorBoard under `out_dir/tb`.

    - Values must be numbers (or one-element tensors). Non-finite values become `null` in
      JSON, which has no NaN, and are left out of TensorBoard.
    - Every line is flushed, so a crash loses no logged step.
    - Steps may repeat (train and eval metrics of one step) but never go back: a step below
      the last one logged is an error, which also catches a resume that forgot to truncate.
    - A fresh run (`resume=False`) refuses a non-empty metrics file from an earlier run rather
      than mixing the two. A resumed run (`resume=True`) must call `truncate_after(step)` with
      the checkpoint's step before its first `log`.
    - `tensorboard=True` needs the `tensorboard` package; without it construction fails.
    """

    def __init__(self, out_dir: str | Path, *, tensorboard: bool = True, resume: bool = False) -> None:
        self.out_dir = Path(out_dir)
        self.path = self.out_dir / METRICS_FILE
        self._tensorboard = tensorboard
        self._file: Any = None
        self._writer: Any = None
        self._last_step: int | None = None
        self._closed = False
        if tensorboard:
            _check_tensorboard()
        self.out_dir.mkdir(parents=True, exist_ok=True)
        if not resume:
            if self.path.exists() and self.path.stat().st_size > 0:
                raise FileExistsError(
                    f"{self.path} already holds metrics of an earlier run; pass resume=True "
                    f"(then truncate_after(step)) to continue it, or use a fresh out_dir"
                )
            self._open(purge_step=None)

    def _open(self, purge_step: int | None) -> None:
        self._file = open(self.path, "a", encoding="utf-8")  # closed in close()
        if self._tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            # purge_step makes TensorBoard discard events of steps >= purge_step written by
            # the interrupted run, so the curves show no doubled tail after a resume.
            self._writer = SummaryWriter(
                str(self.out_dir / TB_DIR), purge_step=purge_step, flush_secs=10
            )

    def truncate_after(self, step: int) -> None:
        """Keep only the lines with step <= `step` (atomically: temp file + os.replace), and
        continue logging after them. A torn last line (a crash mid-write) is dropped too."""
        if self._closed:
            raise RuntimeError(f"{self.path}: truncate_after() after close()")
        self._close_handles()
        rows = _parse(self.path, drop_torn_tail=True) if self.path.exists() else []
        kept = [row for row in rows if row["step"] <= step]
        tmp = self.path.with_name(f"{self.path.name}.tmp-{os.getpid()}")
        with open(tmp, "w", encoding="utf-8") as f:
            f.writelines(_dumps(row) + "\n" for row in kept)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)
        self._last_step = max((row["step"] for row in kept), default=None)
        self._open(purge_step=step + 1)

    def log(self, step: int, metrics: dict[str, Any]) -> None:
        if self._closed:
            raise RuntimeError(f"{self.path}: log() after close()")
        if self._file is None:
            raise RuntimeError(f"{self.path}: a resumed MetricsLogger needs truncate_after(step) before log()")
        if "step" in metrics:
            raise ValueError("'step' is a reserved key; pass the step as the first argument")
        if self._last_step is not None and step < self._last_step:
            raise ValueError(
                f"{self.path}: step {step} comes after step {self._last_step} was logged; "
                f"steps must not go back (did a resume skip truncate_after?)"
            )
        values = {key: _to_float(key, value) for key, value in metrics.items()}
        row = {"step": int(step), **{k: v if math.isfinite(v) else None for k, v in values.items()}}
        self._file.write(_dumps(row) + "\n")
        self._file.flush()
        if self._writer is not None:
            for key, value in values.items():
                if math.isfinite(value):
                    self._writer.add_scalar(key, value, global_step=step)
        self._last_step = step

    def _close_handles(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        if self._writer is not None:
            self._writer.close()  # flushes pending events
            self._writer = None

    def close(self) -> None:
        self._close_handles()
        self._closed = True

    def __enter__(self) -> MetricsLogger:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """All rows of a metrics.jsonl file (or of `out_dir/metrics.jsonl` given a folder), in
    file order. Non-finite values read back as None. A malformed line is an error naming it."""
    path = Path(path)
    return _parse(path / METRICS_FILE if path.is_dir() else path, drop_torn_tail=False)


def progress(total: int | None, desc: str, enabled: bool = True) -> tqdm:
    """A tqdm bar for a loop of `total` steps; `enabled=False` (non-zero ranks, CI logs)
    makes it a no-op. Show live numbers with `bar.set_postfix(loss=..., reward=...)` and
    advance with `bar.update(1)`; close it (or use it as a context manager) at the end."""
    return tqdm(total=total, desc=desc, disable=not enabled, dynamic_ncols=True)


def _check_tensorboard() -> None:
    try:
        import tensorboard  # noqa: F401
    except ImportError as e:
        raise ImportError(
            "MetricsLogger(tensorboard=True) needs the `tensorboard` package: "
            "`pip install tensorboard`, or pass tensorboard=False to log metrics.jsonl only"
        ) from e


def _to_float(key: str, value: Any) -> float:
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            raise TypeError(f"metric {key!r} is a tensor of shape {tuple(value.shape)}, not a scalar")
        return float(value.item())
    if isinstance(value, (str, bytes)):
        raise TypeError(f"metric {key!r} must be a number, got {type(value).__name__}")
    try:
        return float(value)  # int, float, bool, numpy scalars
    except (TypeError, ValueError) as e:
        raise TypeError(f"metric {key!r} must be a number, got {type(value).__name__}") from e


def _dumps(row: dict[str, Any]) -> str:
    return json.dumps(row, allow_nan=False)  # NaN/inf must have become null already


def _parse(path: Path, *, drop_torn_tail: bool) -> list[dict[str, Any]]:
    text = path.read_text(encoding="utf-8")
    lines = text.split("\n")
    torn = lines.pop()  # "" when the file ends with a newline, as every complete write does
    rows = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}:{number}: malformed metrics line ({e})") from e
        if not isinstance(row, dict) or not isinstance(row.get("step"), int):
            raise ValueError(f"{path}:{number}: metrics line without an integer 'step'")
        rows.append(row)
    if torn and not drop_torn_tail:
        raise ValueError(
            f"{path}:{len(lines) + 1}: last line is incomplete (a crash mid-write?); "
            f"MetricsLogger.truncate_after drops it when the run resumes"
        )
    return rows
