"""Suites 1 and 4 of the perf issue: MR-SP against the baseline (the paper's efficiency
figure) and where each mode's step time goes. See perf/mrsp.py for the modes, what is
measured and how, and configs/perf/ for the settings.

    pytest perf/test_mrsp.py --perf-config configs/perf/cpu-2rank.yaml

Writes `<results_dir>/mrsp.json` (rows, speedups, breakdown, figures for `harness report`)
and, with `record: true` in the config, appends rows to perf/README.md. The pytest-benchmark
entry of each test times the whole sweep once (its extra_info holds the per-step figures).
"""

from __future__ import annotations

from pathlib import Path

from perf import mrsp
from perf.common import README, append_row, short_versions, write_json


def _results_dir(pc) -> Path:
    return Path(pc.results_dir)


def test_mrsp_vs_baseline(benchmark, perf_config, perf_config_path, mrsp_sweep):
    rows, seconds = mrsp_sweep
    pc = perf_config
    result = benchmark.pedantic(mrsp.mrsp_result, args=(pc, rows, perf_config_path), rounds=1, iterations=1)
    result["sweep_wall_seconds"] = seconds
    write_json(_results_dir(pc) / "mrsp.json", result)
    benchmark.extra_info.update({"speedups": result["speedups"], "largest_fitting": result["largest_fitting"],
                                 "model": result["model"]["text"], "budget_gib": pc.budget_gib})
    print("\n" + result["model"]["text"] + "\n" + result["efficiency_table"])
    if pc.record:
        _record_efficiency(result, pc)

    ok = [r for r in rows if r["status"] in ("ok", "over_budget")]
    assert ok, f"no run finished: {[r.get('error') for r in rows]}"
    failed = [r for r in rows if r["status"] == "failed"]
    assert not failed, f"runs failed: {[(r['mode'], r['frames'], r['error']) for r in failed]}"
    by = {(r["mode"], r["frames"]): r for r in ok}
    for (mode, frames), r in by.items():  # the cache really removes the re-encoding
        if mode != "baseline" and ("baseline", frames) in by:
            assert r["encoder_calls"] < by[("baseline", frames)]["encoder_calls"]


def test_step_breakdown(benchmark, perf_config, mrsp_sweep):
    rows, _ = mrsp_sweep
    pc = perf_config
    table = benchmark.pedantic(mrsp.breakdown_table, args=(rows,), rounds=1, iterations=1)
    ok = [r for r in rows if "blocks" in r]
    data = {"suite": "breakdown", "rows": [{k: r[k] for k in ("mode", "frames", "sec_per_step", "blocks")}
                                           for r in ok], "table": table}
    write_json(_results_dir(pc) / "breakdown.json", data)
    print("\n" + table)
    if pc.record:
        _record_breakdown(ok, pc)
    for r in ok:
        assert {"rollout", "logprob", "update"} <= set(r["blocks"]), r["blocks"]
        if r["mode"] != "baseline":
            assert "encode" in r["blocks"]


def _record_efficiency(result: dict, pc) -> None:
    by = {(r["mode"], r["frames"]): r for r in result["rows"]}
    cells = []
    for frames in sorted({r["frames"] for r in result["rows"]}):
        parts = [mrsp._cell(by.get((m, frames))) for m in mrsp.MODES]
        sp = result["speedups"][str(frames)]
        ratio = "/".join("–" if sp[m] is None else f"{sp[m]:.2f}x" for m in mrsp.MODES[1:])
        mfu = "/".join(mrsp._mfu_cell(by.get((m, frames))) for m in mrsp.MODES)
        cells.append(f"{frames}: {' / '.join(parts)} ({ratio}; MFU {mfu})")
    append_row(README, "mrsp", [
        result["date"], result["machine"], short_versions(result["versions"]),
        f"{pc.world_size} ranks; {result['model']['text']}", f"{pc.budget_gib} GiB",
        "<br>".join(cells), _fits(result["largest_fitting"]),
        f"{pc.notes} load avg {result.get('load_avg')}".strip(),
    ])


def _fits(largest: dict) -> str:
    return ", ".join(f"{mrsp.MODE_LABELS[m]} {v if v else 'none'}" for m, v in largest.items())


def _record_breakdown(rows: list[dict], pc) -> None:
    from perf.common import stamp

    s = stamp()
    for r in rows:
        blocks = ", ".join(f"{k} {v:.2f}" for k, v in r["blocks"].items() if v >= 0.005)
        append_row(README, "breakdown", [s["date"], s["machine_kind"], mrsp.MODE_LABELS[r["mode"]],
                                         str(r["frames"]), f"{r['sec_per_step']:.2f}", blocks])
