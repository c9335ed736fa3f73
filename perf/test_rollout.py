"""Suite 3 of the perf issue: vLLM and HF engine tokens per second on the same prompts with
video, and the weight-sync time (perf/rollout_bench.py).

    pytest perf/test_rollout.py --perf-config configs/perf/cpu-2rank.yaml
"""

from __future__ import annotations

from pathlib import Path

from perf import rollout_bench
from perf.common import README, append_row, short_versions, write_json


def test_rollout_engines(benchmark, perf_config, perf_work):
    pc = perf_config
    result = benchmark.pedantic(rollout_bench.run, args=(pc, perf_work), rounds=1, iterations=1)
    write_json(Path(pc.results_dir) / "rollout.json", result)
    rates = {e["engine"]: round(e["tokens_per_second"], 1) for e in result["engines"]}
    benchmark.extra_info.update({"tokens_per_second": rates, "skipped": result["skipped"]})
    for e in result["engines"]:
        print(f"\n{e['engine']}: {e['tokens_per_second']:.1f} tokens/s, sync {e['sync_seconds'] * 1e3:.1f} ms")
    if pc.record:
        cells = ", ".join(f"{e['engine']} {e['tokens_per_second']:.0f} tok/s (sync {e['sync_seconds'] * 1e3:.0f} ms)"
                          for e in result["engines"])
        setup = (f"{result['prompts']} prompts x {result['n']} samples x {result['max_new_tokens']} new tokens, "
                 f"{result['frames']} frames ({result['engines'][0]['prompt_tokens'][0]} prompt tokens)")
        skipped = "; ".join(f"{k} skipped: {v}" for k, v in result["skipped"].items())
        append_row(README, "rollout", [result["date"], result["machine"], short_versions(result["versions"]),
                                       setup, cells, f"{pc.notes} {skipped}".strip()])
    assert result["engines"], f"no engine ran: {result['skipped']}"
    for e in result["engines"]:
        assert e["tokens_per_second"] > 0
