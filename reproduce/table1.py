"""The paper's Table 1, its VideoMME-by-duration table and the LongVideo-Reason table, with
our numbers beside the paper's and the deltas (ours - LongVILA-R1-7B, in points).

    harness eval --task all --config configs/eval/paper.yaml --model CKPT --out runs/eval/paper
    python -m reproduce table1 --results runs/eval/paper [--out DIR] [--label NAME]

Reads every `harness eval` results JSON in `--results` (files with `task` and `scores`; the
`*.predictions.jsonl` beside them are ignored), matches them to the tables' columns by task
and subtitle setting, and writes `table1.md` and `table1.csv` to `--out` (default: the
results folder). A column without a results file shows "–"; two files for the same column
are an error naming both (keep one protocol per folder). Targets: docs/reference.md (paper v4).
ActivityNet-QA is an LLM-judged score: the judge is printed under the table, as the paper's
numbers came from another judge.
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path
from typing import Any

from reproduce import paper


def load_results(folder: str | Path) -> dict[tuple[str, bool], dict[str, Any]]:
    """(task, subtitles) -> results JSON, for every results file in `folder`."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"--results {folder} is not a folder")
    found: dict[tuple[str, bool], dict[str, Any]] = {}
    where: dict[tuple[str, bool], Path] = {}
    for path in sorted(folder.glob("*.json")):
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}: not JSON ({e})") from e
        if not isinstance(data, dict) or "task" not in data or "scores" not in data:
            continue
        key = (data["task"], bool((data.get("protocol") or {}).get("subtitles", False)))
        if key in found:
            raise ValueError(f"two results for {key[0]}{' with subtitles' if key[1] else ''}: "
                             f"{where[key]} and {path}; keep one per folder")
        found[key], where[key] = data, path
        data["_path"] = str(path)
    return found


def _pct(x: float | None) -> float | None:
    return None if x is None else 100.0 * x


def _group(scores: dict, breakdown: str, name: str) -> float | None:
    group = (scores.get(f"by_{breakdown}") or {}).get(name)
    return _pct(group.get("accuracy")) if group else None


def build_tables(results: dict[tuple[str, bool], dict], label: str = "ours") -> list[dict[str, Any]]:
    """Tidy rows: table, row (model), column, paper value, ours, delta (ours - target)."""
    rows: list[dict[str, Any]] = []

    def add(table: str, column: str, target: float | None, ours: float | None) -> None:
        delta = None if ours is None or target is None else ours - target
        rows.append({"table": table, "column": column, "paper": target, "ours": ours, "delta": delta})

    target = paper.TABLE1[paper.TARGET]
    for (col, task, subs), t in zip(paper.TABLE1_COLUMNS, target, strict=True):
        res = results.get((task, subs))
        add("table1", col, t, _pct(res["scores"].get("accuracy")) if res else None)
    for subs in (False, True):
        res = results.get(("videomme", subs))
        for col, t in zip(paper.DURATION_COLUMNS, paper.VIDEOMME_DURATION[(paper.TARGET, subs)], strict=True):
            ours = None
            if res:
                ours = _pct(res["scores"].get("accuracy")) if col == "overall" else _group(res["scores"], "duration", col)
            add(f"videomme_{'w' if subs else 'wo'}_sub", col, t, ours)
    res = results.get(("longvideo_reason", False))
    for (col, key), t in zip(paper.REASON_COLUMNS, paper.LONGVIDEO_REASON[paper.TARGET], strict=True):
        ours = None
        if res:
            ours = _pct(res["scores"].get("accuracy")) if key is None else _group(res["scores"], "category", key)
        add("longvideo_reason", col, t, ours)
    for r in rows:
        r["model"] = label
    return rows


def _f(x: float | None, sign: bool = False) -> str:
    if x is None:
        return "–"
    return f"{x:+.1f}" if sign else f"{x:.1f}"


def _markdown_table(title: str, columns: list[str], paper_rows: dict[str, list], ours: list[dict],
                    label: str) -> str:
    lines = [f"### {title}", "", "| model | " + " | ".join(columns) + " |", "|" + "---|" * (len(columns) + 1)]
    for name, values in paper_rows.items():
        lines.append(f"| {name} (paper) | " + " | ".join(_f(v) for v in values) + " |")
    lines.append(f"| **{label}** | " + " | ".join(_f(r["ours"]) for r in ours) + " |")
    lines.append(f"| Δ {label} − {paper.TARGET} | " + " | ".join(_f(r["delta"], sign=True) for r in ours) + " |")
    return "\n".join(lines)


def render_markdown(rows: list[dict], results: dict, label: str = "ours") -> str:
    by = {}
    for r in rows:
        by.setdefault(r["table"], []).append(r)
    parts = [_markdown_table("Table 1 (accuracy %)", [c for c, _, _ in paper.TABLE1_COLUMNS],
                             paper.TABLE1, by["table1"], label)]
    for subs in (False, True):
        name = f"videomme_{'w' if subs else 'wo'}_sub"
        paper_rows = {m: v for (m, s), v in paper.VIDEOMME_DURATION.items() if s == subs}
        parts.append(_markdown_table(f"VideoMME by duration, {'with' if subs else 'without'} subtitles",
                                     paper.DURATION_COLUMNS, paper_rows, by[name], label))
    parts.append(_markdown_table("LongVideo-Reason-eval", [c for c, _ in paper.REASON_COLUMNS],
                                 paper.LONGVIDEO_REASON, by["longvideo_reason"], label))
    notes = []
    for (task, subs), res in sorted(results.items()):
        p = res.get("protocol") or {}
        c = res.get("counts") or {}
        note = (f"- {task}{' (subtitles)' if subs else ''}: {res.get('_path')}, frames {p.get('frames')}, "
                f"model {p.get('model_path', p.get('model', '?'))}, engine {p.get('engine', '?')}, "
                f"{c.get('answered', '?')}/{c.get('questions', '?')} answered, {c.get('unparsed', '?')} unparsed, "
                f"{c.get('missing_video', '?')} with a missing video")
        if p.get("judge"):
            note += f", judge {p['judge']}"
        notes.append(note)
    if notes:
        parts.append("Sources:\n" + "\n".join(notes))
    missing = [f"{c}" for (c, task, subs) in paper.TABLE1_COLUMNS if (task, subs) not in results]
    if missing:
        parts.append(f"Not measured (no results file): {', '.join(missing)}.")
    return "\n\n".join(parts) + "\n"


def write_csv(rows: list[dict], path: Path) -> None:
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["table", "column", "paper_" + paper.TARGET, "model", "ours", "delta"])
        for r in rows:
            w.writerow([r["table"], r["column"], _csv(r["paper"]), r["model"], _csv(r["ours"]), _csv(r["delta"])])


def _csv(x: float | None) -> str:
    return "" if x is None else f"{x:.2f}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m reproduce table1", description=__doc__.split("\n\n")[0])
    p.add_argument("--results", required=True, help="folder of `harness eval` results JSONs")
    p.add_argument("--out", help="folder for table1.md / table1.csv (default: --results)")
    p.add_argument("--label", default="ours", help="name of our row")
    args = p.parse_args(argv)
    try:
        results = load_results(args.results)
    except (ValueError, FileNotFoundError) as err:
        print(f"python -m reproduce table1: error: {err}")
        return 2
    rows = build_tables(results, args.label)
    text = render_markdown(rows, results, args.label)
    out = Path(args.out or args.results)
    out.mkdir(parents=True, exist_ok=True)
    (out / "table1.md").write_text(text, encoding="utf-8")
    write_csv(rows, out / "table1.csv")
    print(text)
    print(f"wrote {out / 'table1.md'} and {out / 'table1.csv'}")
    return 0
