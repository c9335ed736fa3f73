"""One runner for the jobs made of stages (`harness demo`, `python -m reproduce toy`): the
stages run in order under one output folder, each reused when its output exists, so a rerun
after an interruption picks up where it stopped; `--fresh` starts over; a rerun with other
settings is refused (reusing stages built with them would mix two runs). Each stage is
printed with its number and title and timed; `stages.json` keeps the seconds each stage took
in the run that built it.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

SETTINGS_FILE, RECORD_FILE = "settings.json", "stages.json"


@dataclass(frozen=True)
class Stage:
    name: str
    title: str
    done: Callable[[], bool]  # its output exists: reuse it
    build: Callable[[], str | None]  # build the output; returns a line saying what it made


def open_out(out: Path, settings: dict, *, fresh: bool, kind: str) -> None:
    """Make `out` this job's folder: with `fresh` delete an earlier run of the same kind
    first (never a folder that is not one), then record `settings` or check them against
    the recorded ones."""
    ours = (out / SETTINGS_FILE).is_file()
    if fresh and out.exists():
        if any(out.iterdir()) and not ours:
            raise FileExistsError(f"{out} is not empty and holds no {kind} run ({SETTINGS_FILE}); --fresh "
                                  f"will not delete it: choose a new or empty --out")
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    stamp = out / SETTINGS_FILE
    want = json.loads(json.dumps(settings))  # as it reads back (tuples become lists)
    if stamp.is_file():
        have = json.loads(stamp.read_text())
        if have != want:
            diff = ", ".join(f"{k}: {have.get(k)!r} -> {want.get(k)!r}" for k in sorted(have.keys() | want.keys())
                             if have.get(k) != want.get(k))
            raise ValueError(f"{out} was built with other settings ({diff}); add --fresh to rebuild (deletes "
                             f"it), or choose another --out")
    elif any(out.iterdir()):
        raise FileExistsError(f"{out} is not empty and holds no {kind} run; choose a new or empty --out")
    stamp.write_text(json.dumps(want, indent=1) + "\n")


def run_stages(out: Path, stages: list[Stage]) -> dict[str, float | str]:
    """Run (or reuse) every stage in order; returns each stage's seconds, or "reused"."""
    record = out / RECORD_FILE
    built = json.loads(record.read_text()) if record.is_file() else {}
    seconds: dict[str, float | str] = {}
    for number, stage in enumerate(stages, 1):
        print(f"\n[{number}] {stage.title}", flush=True)
        start = time.perf_counter()
        if stage.done():
            seconds[stage.name] = "reused"
            print("    reused what is already built (--fresh rebuilds)", flush=True)
            continue
        said = stage.build()
        seconds[stage.name] = built[stage.name] = round(time.perf_counter() - start, 1)
        record.write_text(json.dumps(built, indent=1) + "\n")
        print(f"    {f'{said} ' if said else ''}({seconds[stage.name]:.1f} s)", flush=True)
    return seconds


def built_seconds(out: Path) -> dict[str, float]:
    """Seconds each stage took in the run that built it (an earlier run's for reused ones)."""
    record = out / RECORD_FILE
    return json.loads(record.read_text()) if record.is_file() else {}
