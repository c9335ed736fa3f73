"""Regression report: the figures of a perf run against a baseline of the same machine kind.

    harness report --baseline perf/baselines/cpu-2core.json --current perf/results/smoke.json
    harness report --baseline perf/baselines/ --current perf/results/*.json   (picks <machine_kind>.json)

A figures file is any perf results JSON (perf/common.py): `machine_kind` and `figures`, a map
`name -> {"value", "unit", "better": "lower"|"higher", "threshold"}`. The threshold is the
relative change tolerated in the bad direction; the baseline's threshold wins over the
current file's (the baseline is the reviewed one). Verdicts:

| verdict | when |
|---|---|
| `ok` | within the threshold |
| `improved` | better than the baseline by more than the threshold (consider updating it) |
| `REGRESSED` | worse by more than the threshold: the exit status is 1 |
| `new` | no baseline for the figure (not a failure) |
| `missing` | in the baseline, not measured now (a failure only with `--strict`) |

Exit status: 0 clean, 1 a regression (or a missing figure with --strict), 2 bad input.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

OK, IMPROVED, REGRESSED, NEW, MISSING = "ok", "improved", "REGRESSED", "new", "missing"


@dataclass(frozen=True)
class Verdict:
    name: str
    baseline: float | None
    current: float | None
    unit: str
    better: str
    threshold: float
    change: float | None  # relative: (current - baseline) / |baseline|
    verdict: str


def load_figures(path: str | Path) -> dict[str, Any]:
    """A results/baseline JSON with its `figures` checked; ValueError naming what is wrong."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"figures file {path} does not exist")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not JSON ({e})") from e
    figures = data.get("figures") if isinstance(data, dict) else None
    if not isinstance(figures, dict):
        raise ValueError(f"{path}: no 'figures' map (is it a perf results or baseline file?)")
    for name, fig in figures.items():
        if not isinstance(fig, dict) or not isinstance(fig.get("value"), (int, float)):
            raise ValueError(f"{path}: figure {name!r} has no numeric 'value'")
        if fig.get("better") not in ("lower", "higher"):
            raise ValueError(f"{path}: figure {name!r}: 'better' must be 'lower' or 'higher'")
    return data


def merge_current(paths: list[str | Path]) -> dict[str, Any]:
    """Several results files of one run: their figures together (a name twice is an error)."""
    merged: dict[str, Any] = {"figures": {}}
    for path in paths:
        data = load_figures(path)
        kind = data.get("machine_kind")
        if "machine_kind" in merged and kind and kind != merged["machine_kind"]:
            raise ValueError(f"{path}: machine kind {kind} differs from {merged['machine_kind']}")
        for key in ("machine_kind", "machine", "date", "versions"):
            if key in data and key not in merged:
                merged[key] = data[key]
        for name, fig in data["figures"].items():
            if name in merged["figures"]:
                raise ValueError(f"{path}: figure {name!r} appears in two current files")
            merged["figures"][name] = fig
    return merged


def resolve_baseline(baseline: str | Path, machine_kind: str | None) -> Path:
    """A file as given; a folder -> `<folder>/<machine_kind>.json`."""
    baseline = Path(baseline)
    if baseline.is_dir():
        if not machine_kind:
            raise ValueError(f"--baseline {baseline} is a folder but the current results name no machine_kind")
        found = baseline / f"{machine_kind}.json"
        if not found.exists():
            have = sorted(p.stem for p in baseline.glob("*.json"))
            raise FileNotFoundError(f"no baseline for machine kind {machine_kind!r} in {baseline} (have: {have}); "
                                    f"record one with `harness report --write-baseline {found} --current ...`")
        return found
    return baseline


def judge(name: str, base: dict | None, cur: dict | None) -> Verdict:
    ref = base or cur
    assert ref is not None
    unit, better = ref.get("unit", ""), ref["better"]
    threshold = float((base or {}).get("threshold", (cur or {}).get("threshold", 0.0)))
    if base is None:
        return Verdict(name, None, cur["value"], unit, better, threshold, None, NEW)
    if cur is None:
        return Verdict(name, base["value"], None, unit, better, threshold, None, MISSING)
    b, c = float(base["value"]), float(cur["value"])
    if b == 0:
        change = 0.0 if c == 0 else math.copysign(math.inf, c)
    else:
        change = (c - b) / abs(b)
    worse = change if better == "lower" else -change  # > 0: moved the bad way
    if not math.isfinite(c):
        verdict = REGRESSED
    elif worse > threshold:
        verdict = REGRESSED
    elif -worse > threshold:
        verdict = IMPROVED
    else:
        verdict = OK
    return Verdict(name, b, c, unit, better, threshold, change, verdict)


def compare(baseline: dict[str, Any], current: dict[str, Any]) -> list[Verdict]:
    bf, cf = baseline["figures"], current["figures"]
    names = list(bf) + [n for n in cf if n not in bf]
    return [judge(n, bf.get(n), cf.get(n)) for n in names]


def _num(v: float | None, unit: str) -> str:
    if v is None:
        return "–"
    text = f"{v:.4g}"
    return f"{text} {unit}".strip()


def render(verdicts: list[Verdict], *, baseline_name: str = "", current_name: str = "") -> str:
    """Markdown: one row per figure, regressions first, and a one-line summary."""
    order = {REGRESSED: 0, MISSING: 1, IMPROVED: 2, NEW: 3, OK: 4}
    rows = sorted(verdicts, key=lambda v: (order[v.verdict], v.name))
    counts = {k: sum(v.verdict == k for v in verdicts) for k in order}
    lines = []
    if baseline_name or current_name:
        lines.append(f"Baseline `{baseline_name}` against current `{current_name}`.\n")
    lines += ["| figure | baseline | current | change | threshold | verdict |", "|---|---|---|---|---|---|"]
    for v in rows:
        change = "–" if v.change is None else ("inf" if not math.isfinite(v.change) else f"{v.change:+.1%}")
        good = "↓" if v.better == "lower" else "↑"
        verdict = f"**{v.verdict}**" if v.verdict == REGRESSED else v.verdict
        lines.append(f"| {v.name} | {_num(v.baseline, v.unit)} | {_num(v.current, v.unit)} | {change} | "
                     f"{v.threshold:.0%} {good} | {verdict} |")
    summary = ", ".join(f"{counts[k]} {k}" for k in order if counts[k])
    lines.append(f"\n{len(verdicts)} figures: {summary}.")
    return "\n".join(lines)


def exit_status(verdicts: list[Verdict], strict: bool = False) -> int:
    bad = {REGRESSED, MISSING} if strict else {REGRESSED}
    return 1 if any(v.verdict in bad for v in verdicts) else 0


def write_baseline(current: dict[str, Any], path: str | Path) -> Path:
    """Record the current figures as the baseline of their machine kind."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    keep = {k: current[k] for k in ("machine_kind", "machine", "date", "versions") if k in current}
    path.write_text(json.dumps({**keep, "figures": current["figures"]}, indent=1) + "\n")
    return path


def run(baseline: str | None, current: list[str], *, strict: bool = False, out: str | None = None,
        write_baseline_to: str | None = None) -> int:
    cur = merge_current(current)
    if write_baseline_to:
        path = write_baseline(cur, write_baseline_to)
        print(f"wrote baseline {path} ({len(cur['figures'])} figures)")
        if not baseline:
            return 0
    if not baseline:
        raise ValueError("give --baseline FILE|DIR (or --write-baseline FILE)")
    base_path = resolve_baseline(baseline, cur.get("machine_kind"))
    base = load_figures(base_path)
    if base.get("machine_kind") and cur.get("machine_kind") and base["machine_kind"] != cur["machine_kind"]:
        print(f"warning: baseline is for {base['machine_kind']}, the current run is {cur['machine_kind']}")
    verdicts = compare(base, cur)
    text = render(verdicts, baseline_name=str(base_path), current_name=", ".join(map(str, current)))
    print(text)
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(text + "\n")
    return exit_status(verdicts, strict)
