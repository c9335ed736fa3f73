"""perf/mrsp.py's pure parts: config checks, layouts, metric summaries, speedups, tables,
figures; perf/flops.py's ratios; perf/common.py's README row append."""

import pytest

from harness.config import RLConfig, load_config
from perf import mrsp
from perf.common import append_row, figure
from perf.flops import size_costs


def test_layouts_and_overrides():
    assert mrsp.layout_of("baseline", 2) == (2, 1, False, False)
    assert mrsp.layout_of("stage1", 2) == (2, 1, True, False)
    assert mrsp.layout_of("stage12", 2) == (1, 2, True, False)
    assert mrsp.layout_of("stage12_shared", 2) == (1, 2, True, True)
    pc = mrsp.PerfConfig(rl={"rollout.n": 3})
    o = mrsp.rl_overrides(pc, dp=1, sp=2, cache=True, shared=True, frames=64, steps=2, data_dir="d",
                          model_path="m", out_dir="o")
    assert "rollout.n=3" in o and "train.prompts_per_step=2" in o and "parallel.sp_size=2" in o
    assert "data.eval=null" in o and "train.cache_video_embeds=true" in o and "train.shared_prefix=true" in o


def test_config_validation(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("world_size: 2\nglobal_prompts: 3\n")
    with pytest.raises(ValueError, match="global_prompts=3 must divide"):
        mrsp.PerfConfig.load(bad)
    bad.write_text("frams: [32]\n")
    with pytest.raises(ValueError, match="unknown key 'frams'.*did you mean 'frames'"):
        mrsp.PerfConfig.load(bad)
    for name in ("cpu-2rank", "cpu-smoke", "8xgpu-longvila-r1-7b", "8xgpu-qwen2_5-vl-7b"):
        pc = mrsp.PerfConfig.load(f"configs/perf/{name}.yaml")
        for mode in mrsp.MODES:  # the RL configs each mode would run are valid
            dp, sp, cache, shared = mrsp.layout_of(mode, pc.world_size)
            overrides = mrsp.rl_overrides(pc, dp=dp, sp=sp, cache=cache, shared=shared, frames=pc.frames[0], steps=2,
                                          data_dir="d", model_path="m", out_dir="o")
            load_config(None, overrides, RLConfig)


def test_summarise_metrics_skips_warmup_and_sums_top_level_blocks():
    rows = [
        {"step": 1, "reward/mean": 0.0, "time/rollout": 9.0, "time/update": 9.0, "media/encoder_calls": 2},
        {"step": 2, "reward/mean": 0.0, "time/rollout": 1.0, "time/update": 2.0, "time/update/backward": 1.5,
         "media/encoder_calls": 2},
        {"step": 3, "reward/mean": 0.0, "time/rollout": 1.0, "time/update": 4.0, "media/encoder_calls": 2},
        {"step": 3, "eval/accuracy": 0.5},
    ]
    s = mrsp.summarise_metrics(rows, warmup=1)
    assert s["steps_measured"] == 2
    assert s["step_seconds"] == [3.0, 5.0]  # nested update/backward not counted twice
    assert s["sec_per_step"] == 4.0
    assert s["blocks"] == {"rollout": 1.0, "update": 3.0}


def test_speedups_tables_and_figures(sweep_rows):
    sp = mrsp.speedups(sweep_rows)
    assert sp[32] == {"stage1": 2.0, "stage12": pytest.approx(4 / 3), "stage12_shared": 4.0}
    assert sp[64] == {"stage1": None, "stage12": None, "stage12_shared": None}  # the baseline did not fit
    assert mrsp.largest_fitting(sweep_rows) == {"baseline": 32, "stage1": 64, "stage12": 128, "stage12_shared": 128}
    table = mrsp.efficiency_table(sweep_rows)
    assert "| 32 | 2.00 | 1.00 | 1.50 | 0.50 | 2.00x | 1.33x | 4.00x | –, –, –, 25.0% |" in table
    assert "| 64 | 4.00 (OOM: 1.20 GiB) | 2.00 | 2.50 | 1.00 | – | – | – |" in table
    assert "| 128 | OOM | 4.00 (OOM: 1.10 GiB) | 5.00 | 2.00 | – | – | – |" in table
    breakdown = mrsp.breakdown_table(sweep_rows)
    assert breakdown.splitlines()[0].startswith("| mode | frames | data | encode | rollout |")
    assert len(breakdown.splitlines()) == 2 + 11  # every run that has blocks
    pc = mrsp.PerfConfig()
    figs = mrsp.figures(sweep_rows, pc)
    assert figs["mrsp/stage1/f32/sec_per_step"] == figure(1.0, "s", "lower", pc.thresholds["time"])
    assert figs["mrsp/speedup_stage1/f32"]["better"] == "higher"
    assert "mrsp/baseline/f128/sec_per_step" not in figs  # not run (OOM)
    mem = mrsp.memory_result(pc, [dict(r, sp_size=1 if r["mode"] == "stage1" else 2,
                                       checkpointing=r["mode"] == "stage12_shared")
                                  for r in sweep_rows if r["mode"] != "baseline"])
    assert mem["largest_fitting"] == {"sp1": 64, "sp2": 128, "sp2-ckpt": 128}
    assert mem["figures"]["memory/sp2/largest_fitting_frames"]["value"] == 128
    assert "memory/sp2-ckpt/f128/mem_gib" in mem["figures"] and "| 2 | yes | 128 |" in mem["table"]


def test_perf_model_matches_longvila_ratio():
    ours, ref = size_costs("perf"), size_costs("7b")
    assert ref["tokens_per_frame"] == 256 and ours["tokens_per_frame"] == 16
    assert (ref["rows_per_frame"], ours["rows_per_frame"]) == (257, 17)  # + the end token
    assert ref["patches_per_frame"] / ref["tokens_per_frame"] == ours["patches_per_frame"] / ours["tokens_per_frame"]
    assert ref["vision_to_llm_ratio"] == pytest.approx(0.296, abs=0.005)
    assert ours["vision_to_llm_ratio"] == pytest.approx(ref["vision_to_llm_ratio"], rel=0.05)


def test_append_row(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text("# x\n\n<!-- results:mrsp -->\n| a | b |\n|---|---|\n| 1 | 2 |\n\n## next\n| z |\n")
    append_row(readme, "mrsp", ["3", "4|5"])
    lines = readme.read_text().splitlines()
    assert lines[6] == "| 3 | 4/5 |" and lines[7] == ""
    with pytest.raises(ValueError, match="results:memory"):
        append_row(readme, "memory", ["x"])


def test_perf_size_builds_with_16_tokens_per_frame():
    from harness.model.build import init_model

    model = init_model("vila", "perf")
    assert model.patch_grid == 8 and model.token_grid(None) == (4, 4)
    with pytest.raises(ValueError, match="vila family only"):
        init_model("qwen2_5_vl", "perf")


def test_anon_peak_sees_a_freed_allocation_and_not_library_pages():
    import mmap
    import time

    with mrsp.AnonPeak(interval=0.001) as idle:
        time.sleep(0.02)
    assert idle.peak - idle.start < 0.02  # GiB: nothing allocated
    size = 64 * 2**20
    with mrsp.AnonPeak(interval=0.001) as busy:
        # Private anonymous pages straight from the kernel: a malloc'd block (numpy's) can
        # reuse pages the process already holds from earlier tests, and then RssAnon stays
        # put (seen in the full suite); a shared mapping would count as RssShmem.
        block = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE)
        for at in range(0, size, mmap.PAGESIZE):
            block[at] = 1  # written: resident
        # Wait until the sampler has read twice while the block lives: on a loaded CI
        # machine the thread can be off the CPU for longer than any fixed sleep.
        seen, deadline = busy.samples, time.monotonic() + 10
        while busy.samples < seen + 2 and time.monotonic() < deadline:
            time.sleep(0.005)
        block.close()  # unmapped: freed
    assert 0.055 < busy.peak - busy.start < 0.09, busy.peak - busy.start


def test_forward_flops_of_one_response_are_one_sequence_and_sharing_saves_the_prompt():
    from harness.model.configs import vila_configs
    from perf.flops import llm_forward_flops, llm_linear_flops_per_token, step_flops

    vision, llm = vila_configs("perf", 1024)
    lin, head = llm_linear_flops_per_token(llm), 2 * llm.hidden_size * llm.vocab_size
    attn = 4 * llm.hidden_size * llm.num_hidden_layers
    p, r = 300, 40
    whole = lin * (p + r) + attn * (p + r) * (p + r + 1) / 2 + head * r  # one causal sequence
    assert llm_forward_flops(llm, p, 1, r) == pytest.approx(whole)
    # G responses behind one prompt: the prompt's cost once, each response's as if alone
    g = 8
    assert llm_forward_flops(llm, p, g, r) == pytest.approx(g * whole - (g - 1) * (lin * p + attn * p * (p + 1) / 2))
    step = step_flops(vision, llm, frames=32, prompts=2, prefix=p, n=g, response=r, reference=True)
    assert step["total"] == pytest.approx(step["encode"] + 6 * step["llm_forward"])
    no_ref = step_flops(vision, llm, frames=32, prompts=2, prefix=p, n=g, response=r, reference=False)
    assert no_ref["total"] == pytest.approx(no_ref["encode"] + 5 * no_ref["llm_forward"])


def test_matmul_peak_is_a_plausible_rate():
    from perf.flops import measure_matmul_peak

    peak = measure_matmul_peak(1, size=256, repeats=2)
    assert 1e8 < peak < 1e13  # FLOP/s of one CPU thread: more than 0.1 GFLOP/s, less than 10 TFLOP/s


def test_shared_micro_batch_applies_to_the_shared_mode_only():
    pc = mrsp.PerfConfig(rl={"train.micro_batch": 1}, shared_micro_batch=8)
    common = {"dp": 1, "sp": 2, "cache": True, "frames": 64, "steps": 2, "data_dir": "d", "model_path": "m",
              "out_dir": "o"}
    assert "train.micro_batch=8" in mrsp.rl_overrides(pc, shared=True, **common)
    assert "train.micro_batch=1" in mrsp.rl_overrides(pc, shared=False, **common)
