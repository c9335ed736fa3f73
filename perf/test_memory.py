"""Suite 2 of the perf issue: per-rank peak memory against frames for each SP size, and the
largest frame count that fits the configured per-rank budget in each.

    pytest perf/test_memory.py --perf-config configs/perf/cpu-2rank.yaml

SP size s runs on s processes (dp = 1, cached embeddings, the same global batch), frames
growing until the budget is exceeded. What the memory numbers mean on CPU and GPU is in
perf/mrsp.py's docstring. Writes `<results_dir>/memory.json`; with `record: true`, a row in
perf/README.md.
"""

from __future__ import annotations

from pathlib import Path

from perf import mrsp
from perf.common import README, append_row, short_versions, write_json


def test_memory_vs_frames(benchmark, perf_config, perf_work):
    pc = perf_config
    rows = benchmark.pedantic(mrsp.memory_sweep, args=(pc, perf_work), rounds=1, iterations=1)
    result = mrsp.memory_result(pc, rows)
    write_json(Path(pc.results_dir) / "memory.json", result)
    benchmark.extra_info.update({"largest_fitting": result["largest_fitting"], "budget_gib": pc.budget_gib})
    print("\n" + result["table"])
    if pc.record:
        per_variant = {}
        for r in rows:
            if r["status"] in ("ok", "over_budget"):
                mem = "/".join(f"{m:.2f}" for m in r["mem_per_rank_gib"])
                per_variant.setdefault(_label(r["variant"]), []).append(f"{r['frames']}: {mem}")
        cells = "<br>".join(f"{name}: " + ", ".join(v) for name, v in per_variant.items())
        fits = ", ".join(f"{_label(k)}: {v or 'none'}" for k, v in result["largest_fitting"].items())
        append_row(README, "memory", [result["date"], result["machine"], short_versions(result["versions"]),
                                      f"{pc.budget_gib} GiB", cells, fits, pc.notes])
    assert not [r for r in rows if r["status"] == "failed"], [r.get("error") for r in rows]
    assert result["largest_fitting"], "no SP size fitted any frame count"


def _label(variant: str) -> str:
    """"sp2-ckpt" -> "SP 2 + checkpointing"."""
    sp, _, ck = variant.partition("-")
    return f"SP {sp.removeprefix('sp')}{' + checkpointing' if ck else ''}"
