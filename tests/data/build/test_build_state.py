"""Per-item stage state and the bounded-concurrency stage loop: resume, stale inputs,
half-written lines, failures, aborts, and interruption with requests in flight."""

from __future__ import annotations

import json
import threading
import time

import pytest

from harness.data.build.state import (
    Item,
    ItemError,
    StageAborted,
    StageState,
    input_sha,
    run_stage,
)


def _items(n: int, sha: str = "s1") -> list[Item]:
    return [Item(f"k{i}", sha, lambda i=i: i) for i in range(n)]


def test_finished_items_are_skipped_on_rerun(tmp_path):
    state = StageState(tmp_path / "s.jsonl")
    calls = []
    stats = run_stage("t", _items(5), lambda x: calls.append(x) or {"v": x * 10}, state,
                      concurrency=2, progress=False)
    assert (stats.total, stats.cached, stats.processed, stats.failed) == (5, 0, 5, {})
    again = StageState(tmp_path / "s.jsonl")
    stats = run_stage("t", _items(5), lambda x: calls.append(x), again, concurrency=2, progress=False)
    assert (stats.cached, stats.processed) == (5, 0)
    assert sorted(calls) == [0, 1, 2, 3, 4]
    assert again.get("k3", "s1") == {"v": 30}


def test_changed_inputs_are_redone(tmp_path):
    state = StageState(tmp_path / "s.jsonl")
    run_stage("t", _items(2, "old"), lambda x: x, state, concurrency=1, progress=False)
    stats = run_stage("t", _items(2, "new"), lambda x: -x, state, concurrency=1, progress=False)
    assert stats.processed == 2 and state.get("k1", "new") == -1 and state.get("k1", "old") is None


def test_half_written_line_is_ignored_and_not_glued_onto(tmp_path, caplog):
    path = tmp_path / "s.jsonl"
    path.write_text(json.dumps({"key": "k0", "input_sha": "s1", "output": 0}) + "\n"
                    + '{"key": "k1", "input_sha": "s1", "outp')  # the process died mid-write
    state = StageState(path)
    assert state.bad_lines == 1 and state.is_done("k0", "s1") and not state.is_done("k1", "s1")
    stats = run_stage("t", _items(2), lambda x: x, state, concurrency=1, progress=False)
    assert (stats.cached, stats.processed) == (1, 1)
    reread = StageState(path)
    assert reread.bad_lines == 1 and reread.get("k1", "s1") == 1


def test_failed_items_are_counted_and_not_recorded(tmp_path):
    state = StageState(tmp_path / "s.jsonl")

    def work(x):
        if x == 2:
            raise ItemError("server said no")
        return x

    stats = run_stage("t", _items(4), work, state, concurrency=2, progress=False)
    assert stats.processed == 3 and stats.failed == {"k2": "server said no"}
    assert not state.is_done("k2", "s1")
    stats = run_stage("t", _items(4), lambda x: x, StageState(tmp_path / "s.jsonl"),
                      concurrency=2, progress=False)
    assert (stats.cached, stats.processed) == (3, 1)  # the rerun retries only the failed one


def test_prepare_failure_is_an_item_failure(tmp_path):
    def bad():
        raise ItemError("cannot decode clip")

    items = [Item("a", "s", bad), Item("b", "s", lambda: 1)]
    stats = run_stage("t", items, lambda x: x, StageState(tmp_path / "s.jsonl"), concurrency=1,
                      progress=False)
    assert stats.failed == {"a": "cannot decode clip"} and stats.processed == 1


def test_many_failures_in_a_row_abort(tmp_path):
    def work(x):
        raise ItemError("connection refused")

    with pytest.raises(StageAborted, match="3 items in a row failed; last: connection refused"):
        run_stage("t", _items(10), work, StageState(tmp_path / "s.jsonl"), concurrency=1,
                  progress=False, abort_after=3)


def test_bugs_are_not_swallowed(tmp_path):
    with pytest.raises(ZeroDivisionError):
        run_stage("t", _items(3), lambda x: 1 / 0, StageState(tmp_path / "s.jsonl"),
                  concurrency=1, progress=False)


def test_interrupt_records_requests_in_flight(tmp_path):
    """An interrupt while requests run: those requests finish and are recorded, so the rerun
    repeats none of them and loses none."""
    state = StageState(tmp_path / "s.jsonl")
    started, release = [], threading.Event()

    def work(x):
        started.append(x)
        if x == 0:
            release.wait(5)
            raise KeyboardInterrupt  # stands in for Ctrl-C arriving during the stage
        release.wait(5)
        time.sleep(0.05)
        return x

    items = _items(8)
    timer = threading.Timer(0.3, release.set)
    timer.start()
    with pytest.raises(KeyboardInterrupt):
        run_stage("t", items, work, state, concurrency=3, progress=False)
    timer.cancel()
    recorded = set(StageState(tmp_path / "s.jsonl").rows)
    # Everything that started, except the interrupted one, finished and was recorded.
    assert len(started) >= 2 and recorded  # requests were in flight (concurrency 3)
    assert recorded == {f"k{x}" for x in started if x != 0}
    calls = []
    stats = run_stage("t", items, lambda x: calls.append(x) or x, StageState(tmp_path / "s.jsonl"),
                      concurrency=3, progress=False)
    assert sorted(calls + [int(k[1:]) for k in recorded]) == list(range(8))
    assert stats.cached == len(recorded)


def test_input_sha_is_stable_and_sensitive():
    assert input_sha("m", 1, {"b": 2, "a": 1}) == input_sha("m", 1, {"a": 1, "b": 2})
    assert input_sha("m", 1) != input_sha("m", 2)


def test_an_undecodable_byte_costs_its_line_not_the_build(tmp_path):
    path = tmp_path / "s.jsonl"
    good = '{"key": "k1", "input_sha": "a", "output": 1}\n'
    path.write_bytes(good.encode() + b'{"key": "k2", "input_sha": "b", "output": "caf\xe9"}\n')
    state = StageState(path)
    assert set(state.rows) == {"k1"} and state.bad_lines == 1
