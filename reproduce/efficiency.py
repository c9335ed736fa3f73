"""The paper's efficiency figure from our perf run: seconds per RL step against frames for the
baseline, MR-SP stage 1, MR-SP stages 1+2 and stages 1+2 with the shared-prefix passes, OOM
marked, with the machine's limit (step FLOPs / measured matmul peak), beside the paper's
8xA100 numbers (its three modes).

    python -m perf.mrsp --config configs/perf/cpu-2rank.yaml --out perf/results/mrsp.json   (or tox -e perf)
    python -m reproduce efficiency --perf perf/results/mrsp.json [--out reproduce/efficiency.png]

Writes the PNG (left: ours, right: the paper's) and prints both as Markdown with the
speedups (baseline / mode). What to compare: the shape, not the seconds. Paper: stage 1
alone is fastest at 256 frames, baseline / MR-SP is 2.1x at 512 frames, and only stages 1+2
fit 1024 frames. Our toy run keeps the 7B model's vision : LLM FLOP ratio per frame (printed)
but its absolute times, and where the budget cuts, depend on the machine and the budget.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from reproduce import paper

MODES = ("baseline", "stage1", "stage12", "stage12_shared")  # ours; the paper measured the first three
PAPER_MODES = MODES[:3]
LABELS = {"baseline": "baseline (no cache, no SP)", "stage1": "MR-SP stage 1 (cache)",
          "stage12": "MR-SP stages 1+2 (cache + SP)", "stage12_shared": "MR-SP 1+2 + shared prefix"}
STYLE = {"baseline": ("tab:red", "o"), "stage1": ("tab:blue", "s"), "stage12": ("tab:green", "^"),
         "stage12_shared": ("tab:purple", "D")}


def load_perf(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"--perf {path} does not exist (run `python -m perf.mrsp` or `tox -e perf`)")
    data = json.loads(path.read_text())
    if not isinstance(data, dict) or not isinstance(data.get("rows"), list):
        raise ValueError(f"{path}: not an MR-SP perf result (no 'rows'); expected perf/results/mrsp.json")
    return data


def series(rows: list[dict]) -> dict[str, dict[str, list]]:
    """mode -> {"frames": [...], "seconds": [...] (fitting runs), "oom": [frames...]}"""
    out = {m: {"frames": [], "seconds": [], "oom": []} for m in MODES if any(r["mode"] == m for r in rows)}
    for r in sorted(rows, key=lambda r: r["frames"]):
        s = out.setdefault(r["mode"], {"frames": [], "seconds": [], "oom": []})
        if r.get("status") == "ok" and r.get("fits", True):
            s["frames"].append(r["frames"])
            s["seconds"].append(r["sec_per_step"])
        else:
            s["oom"].append(r["frames"])
    return out


def limit_series(rows: list[dict]) -> dict[str, list]:
    """The fastest step the machine's matmul peak allows at each frame count (perf rows'
    `limit_sec_per_step`: the step's model FLOPs over the peak)."""
    by: dict[int, float] = {}
    for r in rows:
        if r.get("limit_sec_per_step") is not None:
            by[r["frames"]] = r["limit_sec_per_step"]
    return {"frames": sorted(by), "seconds": [by[f] for f in sorted(by)]}


def paper_series(model: str) -> dict[str, dict[str, list]]:
    out = {m: {"frames": [], "seconds": [], "oom": []} for m in PAPER_MODES}
    for frames, values in sorted(paper.EFFICIENCY[model].items()):
        for m, v in zip(PAPER_MODES, values, strict=True):
            if v is None:
                out[m]["oom"].append(frames)
            else:
                out[m]["frames"].append(frames)
                out[m]["seconds"].append(v)
    return out


def _draw(ax, data: dict[str, dict[str, list]], title: str, ylabel: str, limit: dict | None = None) -> None:
    top = max((max(s["seconds"]) for s in data.values() if s["seconds"]), default=1.0)
    all_frames = sorted({f for s in data.values() for f in s["frames"] + s["oom"]})
    if limit and limit["frames"]:
        ax.plot(limit["frames"], limit["seconds"], linestyle="--", color="grey",
                label="limit: step FLOPs / measured matmul peak")
    for m in data:
        color, marker = STYLE[m]
        s = data[m]
        if s["frames"]:
            ax.plot(s["frames"], s["seconds"], marker=marker, color=color, label=LABELS[m])
        for i, f in enumerate(s["oom"]):
            ax.scatter([f], [top * (1.08 + 0.07 * MODES.index(m))], marker="x", color=color, s=60,
                       label=f"{LABELS[m]}: OOM" if i == 0 else None)
    if any(s["oom"] for s in data.values()):
        ax.text(0.02, 0.97, "x = OOM (over the memory budget)", transform=ax.transAxes, va="top", fontsize=8)
    ax.set_xscale("log", base=2)
    ax.set_xticks(all_frames)
    ax.set_xticklabels([str(f) for f in all_frames])
    ax.set_ylim(0, top * 1.35)
    ax.set_xlabel("frames per video")
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(0.0, 0.93))  # below the OOM note, clear of the lines


def plot(perf: dict[str, Any], out: str | Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.6))
    model = perf.get("model", {}).get("text", "")
    _draw(axes[0], series(perf["rows"]),
          f"ours: {perf.get('machine_kind', '?')}, {perf.get('world_size', '?')} ranks, "
          f"budget {perf.get('budget_gib', '?')} GiB/rank\n{_wrap(model)}", "seconds per RL step",
          limit=limit_series(perf["rows"]))
    _draw(axes[1], paper_series(paper.TARGET), f"paper: {paper.TARGET}, {paper.EFFICIENCY_HARDWARE}",
          "seconds per RL step")
    fig.suptitle(f"MR-SP efficiency: ours ({perf.get('date', '')}) beside the paper", fontsize=11)
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def _wrap(text: str, width: int = 80) -> str:
    words, lines, line = text.split(), [], ""
    for w in words:
        if len(line) + len(w) + 1 > width:
            lines.append(line)
            line = w
        else:
            line = f"{line} {w}".strip()
    return "\n".join(lines + [line]) if line else "\n".join(lines)


def markdown(perf: dict[str, Any]) -> str:
    ours = series(perf["rows"])
    lines = ["| source | frames | baseline | stage 1 | stages 1+2 | 1+2 + shared prefix | baseline / stage 1 "
             "| baseline / stages 1+2 | baseline / 1+2 + shared prefix |", "|---|---|---|---|---|---|---|---|---|"]

    def cells(data, frames):
        vals = []
        for m in MODES:
            s = data.get(m)
            if s and frames in s["frames"]:
                vals.append(s["seconds"][s["frames"].index(frames)])
            else:
                vals.append("OOM" if s and frames in s["oom"] else None)  # None: not measured
        return vals

    def fmt(v):
        return "–" if v is None else v if isinstance(v, str) else f"{v:.3g}"

    def ratio(a, b):
        return f"{a / b:.2f}x" if isinstance(a, float | int) and isinstance(b, float | int) else "–"

    def line(source, frames, v):
        return (f"| {source} | {frames} | " + " | ".join(fmt(x) for x in v) + " | "
                + " | ".join(ratio(v[0], x) for x in v[1:]) + " |")

    for frames in sorted({f for s in ours.values() for f in s["frames"] + s["oom"]}):
        lines.append(line("ours", frames, cells(ours, frames)))
    for model in paper.EFFICIENCY:
        data = paper_series(model)
        for frames in sorted(paper.EFFICIENCY[model]):
            lines.append(line(f"paper {model}", frames, cells(data, frames)))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m reproduce efficiency", description=__doc__.split("\n\n")[0])
    p.add_argument("--perf", default="perf/results/mrsp.json", help="results JSON of perf/mrsp.py")
    p.add_argument("--out", default="reproduce/efficiency.png", help="the PNG to write")
    args = p.parse_args(argv)
    try:
        perf = load_perf(args.perf)
    except (ValueError, FileNotFoundError) as err:
        print(f"python -m reproduce efficiency: error: {err}")
        return 2
    path = plot(perf, args.out)
    if perf.get("model", {}).get("text"):
        print(perf["model"]["text"])
    print(markdown(perf))
    print(f"wrote {path}")
    return 0
