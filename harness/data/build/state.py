"""Per-item resumable stage state: an append-only JSONL file per stage, and the loop that
runs a stage's pending items with bounded concurrency.

Each finished item is one line `{"key", "input_sha", "output"}`, written and flushed as
soon as the item finishes, so a killed run loses at most the requests in flight. An item
counts as finished only if its row's `input_sha` matches the hash of what it would be
computed from now (model, prompt version and text, upstream results, settings); an item
whose inputs changed is redone, never mixed with stale output. A half-written last line
(the process died mid-write) is ignored with a warning. Failed items are not written: a
rerun tries them again.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm import tqdm

from harness.errors import HarnessError

log = logging.getLogger(__name__)


class ItemError(RuntimeError):
    """One item of a stage failed (a request gave up after its retries, a clip could not be
    decoded). It is counted and logged, the stage goes on, and a rerun tries it again."""


class StageAborted(HarnessError, RuntimeError):
    """Too many items in a row failed: the model server is most likely down or rejects every
    request, so going on would only burn time."""


def input_sha(*parts: Any) -> str:
    """A stable hash of JSON-able parts (the inputs an item's output depends on)."""
    blob = json.dumps(parts, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:16]


class StageState:
    """The finished items of one stage, loaded from and appended to `path`."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.rows: dict[str, dict[str, Any]] = {}
        self.bad_lines = 0
        self._lock = threading.Lock()
        self._tail_checked = False
        if self.path.exists():
            self._load()

    def _load(self) -> None:
        with self.path.open("rb") as f:  # one undecodable byte costs its line, not the build
            for lineno, data in enumerate(f, start=1):
                if not data.strip():
                    continue
                try:
                    row = json.loads(data.decode("utf-8"))
                    if not (isinstance(row, dict) and isinstance(row.get("key"), str)
                            and "input_sha" in row and "output" in row):
                        raise ValueError("not a {key, input_sha, output} object")
                except ValueError as err:  # JSONDecodeError is a ValueError
                    self.bad_lines += 1
                    log.warning("%s:%d: ignored unreadable state line (%s); the item will be redone",
                                self.path, lineno, err)
                    continue
                self.rows[row["key"]] = row  # a later row for the same key wins

    def get(self, key: str, sha: str) -> Any | None:
        """The output of `key` if it finished with these inputs, else None."""
        row = self.rows.get(key)
        return row["output"] if row is not None and row["input_sha"] == sha else None

    def is_done(self, key: str, sha: str) -> bool:
        row = self.rows.get(key)
        return row is not None and row["input_sha"] == sha

    def record(self, key: str, sha: str, output: Any) -> None:
        row = {"key": key, "input_sha": sha, "output": output}
        line = json.dumps(row, ensure_ascii=False) + "\n"
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # Reopened per item: the line is on disk (in the OS) before the next item starts.
            with self.path.open("a", encoding="utf-8") as f:
                if not self._tail_checked:
                    self._tail_checked = True
                    if self.path.stat().st_size and not self._ends_with_newline():
                        f.write("\n")  # an earlier run died mid-line; do not glue onto it
                f.write(line)
            self.rows[key] = row

    def _ends_with_newline(self) -> bool:
        with self.path.open("rb") as f:
            f.seek(-1, 2)
            return f.read(1) == b"\n"


@dataclass
class Item:
    """One unit of a stage. `prepare` runs in the calling thread, in order (e.g. decoding a
    clip's frames from an already open video); its result goes to the stage's `work`
    function in a worker thread."""

    key: str
    sha: str
    prepare: Callable[[], Any]


@dataclass
class StageStats:
    name: str
    total: int = 0
    cached: int = 0  # finished by an earlier run, skipped now
    processed: int = 0  # finished by this run
    failed: dict[str, str] = field(default_factory=dict)  # key -> why (retried on rerun)
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {"total": self.total, "cached": self.cached, "processed": self.processed,
                "failed": len(self.failed), "failed_items": dict(self.failed),
                "seconds": round(self.seconds, 2)}


def run_stage(
    name: str,
    items: Iterable[Item],
    work: Callable[[Any], Any],
    state: StageState,
    *,
    concurrency: int,
    progress: bool = True,
    abort_after: int | None = None,
) -> StageStats:
    """Run `work(item.prepare())` for every item not finished yet, `concurrency` at a time,
    recording each output in `state` as it finishes.

    ItemError from prepare or work marks the item failed (logged, counted, retried on a
    rerun); `abort_after` failures in a row (default max(3, 2 * concurrency)) raise
    StageAborted. Any other exception, and KeyboardInterrupt, stops the stage: requests not
    started are cancelled, those already running finish and are recorded first, so an
    interrupted run loses nothing it paid for and a rerun repeats nothing.
    """
    if concurrency < 1:
        raise ValueError(f"concurrency must be >= 1, got {concurrency}")
    items = list(items)
    stats = StageStats(name, total=len(items))
    t0 = time.perf_counter()
    pending = [it for it in items if not state.is_done(it.key, it.sha)]
    stats.cached = len(items) - len(pending)
    abort_after = abort_after or max(3, 2 * concurrency)
    streak = 0
    bar = tqdm(total=len(items), initial=stats.cached, desc=name, unit="item", disable=not progress)

    def task(item: Item, payload: Any) -> None:
        # Recorded by the worker itself: an interrupt landing anywhere in the main thread
        # (even between submit() and its bookkeeping) cannot lose a finished request.
        state.record(item.key, item.sha, work(payload))

    def fail(item: Item, err: BaseException) -> None:
        nonlocal streak
        stats.failed[item.key] = str(err)
        log.warning("%s: %s failed: %s", name, item.key, err)
        streak += 1
        if streak >= abort_after:
            raise StageAborted(f"stage {name}: {streak} items in a row failed; last: {err}")

    def collect(futures: Iterable[Future]) -> None:
        nonlocal streak
        for fut in futures:
            item = inflight.pop(fut)
            err = fut.exception()
            if err is None:
                stats.processed += 1
                streak = 0
                bar.update(1)
            elif isinstance(err, ItemError):
                fail(item, err)
            else:
                raise err

    inflight: dict[Future, Item] = {}
    pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix=f"build-{name}")
    try:
        for item in pending:
            # Bounded look-ahead: prepared payloads (decoded frames) wait in memory.
            while len(inflight) >= 2 * concurrency:
                collect(wait(inflight, return_when=FIRST_COMPLETED).done)
            try:
                payload = item.prepare()
            except ItemError as err:
                fail(item, err)
                continue
            inflight[pool.submit(task, item, payload)] = item
        while inflight:
            collect(wait(inflight, return_when=FIRST_COMPLETED).done)
    finally:
        # On an error: cancel what has not started, let running requests finish (and record
        # themselves). On success there is nothing left to wait for.
        pool.shutdown(wait=True, cancel_futures=True)
        bar.close()
        stats.seconds = time.perf_counter() - t0
    return stats
