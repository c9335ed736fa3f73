"""MR-SP against the baseline, as the paper's efficiency figure measures it: seconds per RL
step, where the step's time goes, and the per-rank peak memory, for growing frame counts.

Four modes, each on the same `world_size` ranks and the same global batch (prompts x n):

| mode | harness settings | what it is |
|---|---|---|
| `baseline` | `cache_video_embeds: false`, `shared_prefix: false`, dp = world, sp = 1 | no embedding cache, no SP: every rollout, log-prob and update pass encodes the video again |
| `stage1` | `cache_video_embeds: true`, `shared_prefix: false`, dp = world, sp = 1 | MR-SP stage 1: each video encoded once per step and reused |
| `stage12` | `cache_video_embeds: true`, `shared_prefix: false`, dp = 1, sp = world | stages 1 + 2: frames split over the SP group for encoding, sequence parallelism for every LLM pass, each rank sampling its share of the prompts |
| `stage12_shared` | as `stage12`, `shared_prefix: true` (the harness default) | and each prompt's [prompt, video] prefix through the LLM once per pass for all its responses |

Each row also carries the step's model FLOPs (perf/flops.py `step_flops`: the work the step
needs done once, whatever the mode), the machine's measured matmul peak over the ranks'
threads, their quotient `limit_sec_per_step` (no step can be faster) and the mode's MFU.

Deviation from the paper, stated in every result: the harness ties frame-split encoding to
the SP group, so `stage1` spreads the encoding over the ranks by prompt (data parallel)
rather than by frame. The compute per rank is the same; the per-rank peak while one video
is encoded is not halved (it is small next to the LLM's in all our runs).

Seconds per step is the sum of the top-level `time/<block>` entries rank 0 logs
(`data, encode, rollout, reward, advantage, logprob, update, sync`; the untimed rest of a step
is bookkeeping), median over the steps after `warmup`. Memory per rank is the process's peak
*anonymous* resident memory (`RssAnon`, sampled every 5 ms while `train_rl` runs) minus its
value right before `train_rl` starts, i.e. the model, optimizer, reference model, activations
and caches above the imported libraries. File-backed pages are left out: they are library code
the run touches for the first time, not the step's memory, and their amount depends on the
environment (measured, one tiny 2-step RL run: RssFile +42 MB in the dev venv, +63 MB in the
tox env, RssAnon +10 / +11 MB).
The ranks run with `MALLOC_MMAP_THRESHOLD_=65536`, so glibc serves every block of 64 KiB or
more with mmap and returns it to the OS when freed: resident memory then follows the live
tensors instead of the heap's retained pages (measured: 4 x 4200 tokens forward + backward of
the perf LLM, 0.94 GiB -> 0.75 GiB; sequence-parallel halves, 0.61 -> 0.42 GiB). It is still
what the OS provided, not an allocator count; on GPU `mem/peak_cuda_gb` (torch's allocator
peak) is used instead. A mode "fits" a frame count when
every rank stays within `budget_gib`; once a mode exceeds it, larger frame counts are not run
for that mode and are reported as OOM, as a real OOM would end them.

    python -m perf.mrsp --config configs/perf/cpu-2rank.yaml --out perf/results/mrsp.json
    pytest perf/test_mrsp.py --perf-config configs/perf/cpu-2rank.yaml   (the same, as a suite)
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MODES = ("baseline", "stage1", "stage12", "stage12_shared")
MODE_LABELS = {"baseline": "baseline", "stage1": "MR-SP stage 1", "stage12": "MR-SP stages 1+2",
               "stage12_shared": "MR-SP 1+2, shared prefix"}
CPU_MMAP_THRESHOLD = 65536  # bytes; see launch()
TOP_BLOCKS = ("data", "encode", "rollout", "reward", "advantage", "logprob", "update", "sync")


@dataclass
class PerfConfig:
    """One YAML file under configs/perf/ (see configs/perf/cpu-2rank.yaml for every key)."""

    world_size: int = 2
    family: str = "vila"
    size: str = "perf"  # a named size for a fresh random model, unless `model_path` is given
    model_path: str | None = None  # a real checkpoint (GPU configs)
    frames: list[int] = field(default_factory=lambda: [32, 64, 128, 256])
    budget_gib: float = 1.0
    steps: int = 3
    warmup: int = 1
    global_prompts: int = 2  # prompts per step over all ranks
    data_dir: str | None = None  # an existing harness dataset; None: synthesise one
    synth_items: int = 4
    memory_sp_sizes: list[int] = field(default_factory=lambda: [1, 2])
    memory_steps: int = 1
    memory_frames: list[int] | None = None  # None: `frames`
    # the memory suite runs each SP size with activation checkpointing off and/or on
    # (`model.activation_checkpointing`), frames growing until the budget is exceeded
    memory_checkpointing: list[bool] = field(default_factory=lambda: [False])
    rl: dict[str, Any] = field(default_factory=dict)  # RLConfig overrides, `key.sub: value`
    # train.micro_batch of the shared-prefix mode (None: rl's): at real scale one row per
    # response (micro_batch 1) is what fits without sharing, one group per row with it
    shared_micro_batch: int | None = None
    record: bool = True  # append rows to perf/README.md
    results_dir: str = "perf/results"  # where the suites write their JSON
    # rollout suite (single process): prompts with video, samples each, new tokens, frames
    rollout_prompts: int = 4
    rollout_n: int = 4
    rollout_new_tokens: int = 64
    rollout_frames: int = 64
    rollout_engines: list[str] = field(default_factory=lambda: ["hf", "vllm"])
    thresholds: dict[str, float] = field(default_factory=lambda: {"time": 0.5, "memory": 0.25, "ratio": 0.3})
    notes: str = ""

    @classmethod
    def load(cls, path: str | Path) -> PerfConfig:
        """Through the recipes' typed loader: unknown keys (with the closest), wrong types,
        YAML mistakes (file and line) and repeated keys are refused the same way."""
        from harness.config import from_dict, read_yaml

        cfg = from_dict(cls, read_yaml(Path(path)) or {}, str(path))
        cfg.check(str(path))
        return cfg

    def check(self, where: str = "perf config") -> None:
        if self.global_prompts % self.world_size:
            raise ValueError(f"{where}: global_prompts={self.global_prompts} must divide over "
                             f"world_size={self.world_size} ranks (the DP modes split the prompts)")
        if self.memory_steps < 1:
            raise ValueError(f"{where}: memory_steps must be >= 1")
        if self.steps <= self.warmup:
            raise ValueError(f"{where}: steps={self.steps} leaves no measured step after warmup={self.warmup}")
        if sorted(self.frames) != list(self.frames) or not self.frames:
            raise ValueError(f"{where}: frames must be a non-empty increasing list, got {self.frames}")
        from harness.config import RLConfig, load_config

        # the RL overrides are checked now, not when the first run starts minutes later
        load_config(None, [f"{k}={v}" for k, v in self.rl.items()] + [f"parallel.dp_size={self.world_size}"],
                    RLConfig)


def layout_of(mode: str, world: int) -> tuple[int, int, bool, bool]:
    """(dp_size, sp_size, cache_video_embeds, shared_prefix) of a mode."""
    layouts = {"baseline": (world, 1, False, False), "stage1": (world, 1, True, False),
               "stage12": (1, world, True, False), "stage12_shared": (1, world, True, True)}
    if mode not in layouts:
        raise ValueError(f"unknown mode {mode!r}; choose one of {MODES}")
    return layouts[mode]


def rl_overrides(pc: PerfConfig, *, dp: int, sp: int, cache: bool, shared: bool, frames: int, steps: int,
                 data_dir: str, model_path: str, out_dir: str) -> list[str]:
    base: dict[str, Any] = {
        "rollout.engine": "hf", "rollout.n": 4, "rollout.max_new_tokens": 16,
        "train.micro_batch": 4, "train.mini_batches": 1,
        "algo.kl_coef": 1e-2, "optim.lr": 1e-5,
    }
    base.update(pc.rl)
    base.update({
        "model.family": pc.family, "model.path": model_path,
        "data.dir": data_dir, "data.train": "rl.jsonl", "data.eval": None, "data.num_frames": frames,
        "train.cache_video_embeds": cache, "train.shared_prefix": shared,
        "train.prompts_per_step": pc.global_prompts // dp,
        "parallel.dp_size": dp, "parallel.sp_size": sp,
        "run.out_dir": out_dir, "run.steps": steps, "run.save_every": 10**6,
        "run.tensorboard": False, "run.progress": False, "run.log_every": 1,
    })
    if shared and pc.shared_micro_batch:
        base["train.micro_batch"] = pc.shared_micro_batch
    return [f"{k}={_yaml_value(v)}" for k, v in base.items()]


def _yaml_value(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


# --- one run on `world` fresh processes ---------------------------------------------------


def _status_gib(field: str) -> float:
    """A memory field of /proc/self/status ("VmRSS", "RssAnon", ...) in GiB."""
    with open("/proc/self/status", encoding="utf-8") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 2**20
    raise RuntimeError(f"/proc/self/status has no {field} field (Linux only)")


class AnonPeak:
    """Peak of RssAnon while the `with` block runs, sampled by a daemon thread every
    `interval` seconds (the kernel keeps a peak for the whole resident set only). A spike
    shorter than the interval can be missed; a step's forward/backward lasts far longer."""

    def __init__(self, interval: float = 0.005) -> None:
        self.interval = interval
        self.start = self.peak = 0.0
        self.samples = 0  # how many readings the thread has taken (tests wait on it)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(self.interval):
            self.peak = max(self.peak, _status_gib("RssAnon"))
            self.samples += 1

    def __enter__(self) -> AnonPeak:
        self.start = self.peak = _status_gib("RssAnon")
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _status_gib("RssAnon"))


def _worker(rank: int, world: int, overrides: list[str], time_encode: bool) -> dict:
    import torch

    from harness.config import RLConfig, load_config
    from harness.trainer.rl import train_rl  # imported before the memory baseline is read

    cfg = load_config(None, overrides, RLConfig)
    rss_start = _status_gib("VmRSS")
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    with AnonPeak() as anon:
        train_rl(cfg)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB -> GiB (Linux)
    out = {"rank": rank, "rss_start_gib": rss_start, "peak_rss_gib": peak,
           "step_mem_gib": anon.peak - anon.start}
    if torch.cuda.is_available():
        out["peak_cuda_gib"] = torch.cuda.max_memory_allocated() / 2**30
        out["step_mem_gib"] = out["peak_cuda_gib"]
    if rank == 0:
        out.update(_probe(cfg, time_encode))
    return out


def _probe(cfg, time_encode: bool) -> dict[str, float]:
    """On one rank after the run: the prompt's length in tokens (video included) for the
    step's FLOPs, and with `time_encode` the seconds to encode one prompt's video (the cost
    the baseline pays on every pass; the RL loop times it only in cached modes)."""
    import torch

    from harness.data.dataset import QADataset, SkipLedger, question_text
    from harness.trainer.common import build_model

    model = build_model(cfg.model)
    data = QADataset(Path(cfg.data.dir) / cfg.data.train, cfg.data.num_frames, SkipLedger(1.0))
    record = data.records[0]
    clip = data.load_frames(record)
    times = []
    with torch.no_grad():
        video = model.encode_frames(clip.frames, clip.timestamps, clip.frame_seconds)
        out = {"prompt_tokens": len(model.build_prompt(model.chat_prompt_ids(question_text(record)), video))}
        for _ in range(3 if time_encode else 0):
            start = time.perf_counter()
            pixels = model.preprocess(clip.frames, clip.timestamps, clip.frame_seconds)
            model.encode_units(pixels)
            times.append(time.perf_counter() - start)
    if times:
        out["encode_seconds"] = statistics.median(times)
    return out


def launch(world: int, overrides: list[str], *, threads: int, time_encode: bool = False) -> list[dict]:
    """Run train_rl on `world` spawned processes (gloo on CPU, NCCL on GPU); per-rank results."""
    import torch

    from harness.parallel.launch import spawn

    if not torch.cuda.is_available():
        # glibc keeps freed heap pages, so a peak RSS would show the allocator's high-water
        # mark; with large blocks mmapped (and unmapped on free) it follows the live tensors.
        os.environ.setdefault("MALLOC_MMAP_THRESHOLD_", str(CPU_MMAP_THRESHOLD))
    return spawn(_worker, world, overrides, time_encode, threads=threads)


def summarise_metrics(rows: list[dict], warmup: int) -> dict[str, Any]:
    """Median seconds per step and per top-level block over the steps after `warmup`."""
    steps = [r for r in rows if "reward/mean" in r]  # train rows (eval rows carry no reward)
    measured = steps[warmup:] or steps[-1:]
    blocks: dict[str, float] = {}
    for name in TOP_BLOCKS:
        values = [r.get(f"time/{name}", 0.0) or 0.0 for r in measured]
        if any(f"time/{name}" in r for r in measured):
            blocks[name] = statistics.median(values)
    totals = [sum((r.get(k) or 0.0) for k in r if k.startswith("time/") and "/" not in k[5:]) for r in measured]
    calls = [r.get("media/encoder_calls", 0.0) for r in measured]
    lengths = [r.get("response/length_mean", 0.0) for r in measured]
    return {"sec_per_step": statistics.median(totals), "steps_measured": len(measured),
            "step_seconds": totals, "blocks": blocks, "encoder_calls": statistics.median(calls),
            "response_tokens_mean": statistics.median(lengths)}


def run_case(pc: PerfConfig, mode: str, frames: int, *, data_dir: str, model_path: str, work: Path,
             world: int | None = None, sp: int | None = None, steps: int | None = None,
             peak_flops: float | None = None, checkpointing: bool = False) -> dict[str, Any]:
    """One (mode, frames) run; `world`/`sp` override the mode's layout (memory suite);
    with `peak_flops` (the machine's FLOP/s) the row gets its MFU; `checkpointing`:
    activation checkpointing on."""
    from harness.trainer.metrics import read_metrics

    world = world or pc.world_size
    dp, sp_, cache, shared = layout_of(mode, world)
    if sp is not None:
        dp, sp_ = world // sp, sp
    steps = steps or pc.steps
    out_dir = work / f"{mode}-w{world}-sp{sp_}-f{frames}{'-ckpt' if checkpointing else ''}"
    shutil.rmtree(out_dir, ignore_errors=True)  # a fresh run: metrics.jsonl refuses old rows
    overrides = rl_overrides(pc, dp=dp, sp=sp_, cache=cache, shared=shared, frames=frames, steps=steps,
                             data_dir=data_dir, model_path=model_path, out_dir=str(out_dir))
    overrides.append(f"model.activation_checkpointing={_yaml_value(checkpointing)}")
    threads = max(1, (os.cpu_count() or 1) // world)
    started = time.perf_counter()
    try:
        ranks = launch(world, overrides, threads=threads, time_encode=not cache)
    except Exception as err:  # noqa: BLE001 - a crashed run (a real OOM) is a result, not a stop
        return {"mode": mode, "frames": frames, "dp": dp, "sp": sp_, "checkpointing": checkpointing,
                "status": "failed", "error": f"{type(err).__name__}: {err}"[:500], "fits": False}
    summary = summarise_metrics(read_metrics(out_dir), warmup=min(pc.warmup, steps - 1))
    mem = [r["step_mem_gib"] for r in ranks]
    row = {"mode": mode, "frames": frames, "dp": dp, "sp": sp_, "checkpointing": checkpointing, "status": "ok",
           **summary, "wall_seconds": time.perf_counter() - started,
           "mem_per_rank_gib": mem, "peak_rss_per_rank_gib": [r["peak_rss_gib"] for r in ranks],
           "rss_start_per_rank_gib": [r["rss_start_gib"] for r in ranks],
           "fits": max(mem) <= pc.budget_gib}
    row.update(_flops(overrides, model_path, frames, ranks[0]["prompt_tokens"], summary["response_tokens_mean"],
                      pc.global_prompts, row["sec_per_step"], peak_flops))
    if "encode_seconds" in ranks[0]:
        # The baseline's encoding hides inside rollout/logprob/update: estimate it from the
        # number of encoder calls on rank 0 times the measured cost of one.
        row["encode_seconds_each"] = ranks[0]["encode_seconds"]
        row["blocks"]["encode (inside other blocks, est.)"] = summary["encoder_calls"] * ranks[0]["encode_seconds"]
    return row


def _flops(overrides: list[str], model_path: str, frames: int, prompt_tokens: int, response: float,
           prompts: int, seconds: float, peak: float | None) -> dict[str, Any]:
    """The step's model FLOPs (perf/flops.py), and against the machine's peak the fastest
    possible step and the MFU."""
    from transformers import AutoConfig, SiglipVisionConfig

    from harness.config import RLConfig, load_config
    from perf.flops import step_flops

    cfg = load_config(None, overrides, RLConfig)
    if cfg.model.family != "vila":
        return {}
    vision = SiglipVisionConfig.from_pretrained(Path(model_path) / "vision_tower")
    llm = AutoConfig.from_pretrained(Path(model_path) / "llm")
    flops = step_flops(vision, llm, frames=frames, prompts=prompts, prefix=prompt_tokens, n=cfg.rollout.n,
                       response=response, reference=cfg.algo.kl_coef > 0 or cfg.algo.kl_in_reward)
    out: dict[str, Any] = {"prompt_tokens": prompt_tokens, "model_gflop_per_step": flops["total"] / 1e9}
    if peak:
        out.update({"peak_gflops": peak / 1e9, "limit_sec_per_step": flops["total"] / peak,
                    "mfu": flops["total"] / (seconds * peak)})
    return out


# --- the sweep ----------------------------------------------------------------------------


def prepare(pc: PerfConfig, work: Path) -> tuple[str, str]:
    """(data_dir, model_path): the configured ones, or synthetic data and a fresh model."""
    if pc.data_dir:
        data_dir = pc.data_dir
    else:
        from harness.data.synthetic import synthesize

        data_dir = str(work / "data")
        if not (Path(data_dir) / "rl.jsonl").exists():
            synthesize(Path(data_dir), pc.synth_items, seed=0, minutes=(0.5, 0.5), progress=False)
    if pc.model_path:
        return data_dir, pc.model_path
    from harness.model.build import init_model

    model_path = work / f"model-{pc.family}-{pc.size}"
    if not (model_path / "config.json").exists():
        init_model(pc.family, pc.size, seed=0).save_pretrained(model_path)
    return data_dir, str(model_path)


def sweep(pc: PerfConfig, work: Path, modes: tuple[str, ...] = MODES, log=print) -> list[dict]:
    """Every mode at every frame count, side by side, until each mode exceeds the budget."""
    from perf.flops import measure_matmul_peak

    data_dir, model_path = prepare(pc, work)
    # CPU: the ranks share the machine's cores; GPU: one device per rank
    peak = measure_matmul_peak(os.cpu_count() or 1) * (pc.world_size if _cuda() else 1)
    log(f"matmul peak (all ranks): {peak / 1e9:.1f} GFLOP/s")
    rows: list[dict] = []
    over: dict[str, int] = {}
    for frames in pc.frames:
        for mode in modes:
            if mode in over:
                rows.append({"mode": mode, "frames": frames, "status": "oom",
                             "reason": f"over the {pc.budget_gib} GiB budget at {over[mode]} frames",
                             "fits": False})
                continue
            row = run_case(pc, mode, frames, data_dir=data_dir, model_path=model_path, work=work, peak_flops=peak)
            if not row["fits"]:
                over[mode] = frames
                if row["status"] == "ok":
                    row["status"] = "over_budget"
            rows.append(row)
            log(row_line(row, pc.budget_gib))
        if len(over) == len(modes):
            break
    return rows


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def memory_sweep(pc: PerfConfig, work: Path, log=print) -> list[dict]:
    """Per-rank memory against frames for each SP size, with activation checkpointing off
    and/or on (cached embeddings, dp = 1)."""
    data_dir, model_path = prepare(pc, work)
    rows = []
    for sp in pc.memory_sp_sizes:
        for ck in pc.memory_checkpointing:
            for frames in pc.memory_frames or pc.frames:
                row = run_case(pc, "stage12" if sp > 1 else "stage1", frames, data_dir=data_dir,
                               model_path=model_path, work=work / "memory", world=sp, sp=sp,
                               steps=pc.memory_steps, checkpointing=ck)
                row.update(sp_size=sp, variant=memory_variant(sp, ck))
                rows.append(row)
                log(row_line(row, pc.budget_gib))
                if not row["fits"]:
                    break
    return rows


def memory_variant(sp: int, checkpointing: bool) -> str:
    """A memory row's name in tables and results: "sp2", "sp2-ckpt"."""
    return f"sp{sp}{'-ckpt' if checkpointing else ''}"


def row_line(row: dict, budget: float) -> str:
    if row["status"] in ("failed", "oom"):
        return f"{row['mode']:>9} {row['frames']:>5} frames: {row['status']} {row.get('error') or row.get('reason')}"
    mem = max(row["mem_per_rank_gib"])
    return (f"{row['mode']:>9} {row['frames']:>5} frames: {row['sec_per_step']:.3f} s/step, "
            f"peak {mem:.3f} GiB/rank (budget {budget}) {'' if row['fits'] else 'OVER BUDGET'}")


def speedups(rows: list[dict]) -> dict[int, dict[str, float | None]]:
    """baseline seconds / mode seconds per frame count (None where either did not fit)."""
    by = {(r["mode"], r["frames"]): r for r in rows}
    out: dict[int, dict[str, float | None]] = {}
    for frames in sorted({r["frames"] for r in rows}):
        base = by.get(("baseline", frames))
        out[frames] = {}
        for mode in MODES[1:]:
            r = by.get((mode, frames))
            ok = base and r and base.get("fits") and r.get("fits")
            out[frames][mode] = base["sec_per_step"] / r["sec_per_step"] if ok else None
    return out


def largest_fitting(rows: list[dict], key: str = "mode") -> dict[Any, int | None]:
    out: dict[Any, int | None] = {}
    for r in rows:
        out.setdefault(r[key], None)
        if r.get("fits"):
            out[r[key]] = max(out[r[key]] or 0, r["frames"])
    return out


def figures(rows: list[dict], pc: PerfConfig, prefix: str = "mrsp") -> dict[str, dict]:
    """The numbers `harness report` tracks (see perf/common.py)."""
    from perf.common import figure

    t, m, q = pc.thresholds["time"], pc.thresholds["memory"], pc.thresholds["ratio"]
    out = {}
    for r in rows:
        if r["status"] not in ("ok", "over_budget"):
            continue
        key = f"{prefix}/{r['mode']}/f{r['frames']}"
        out[f"{key}/sec_per_step"] = figure(r["sec_per_step"], "s", "lower", t)
        out[f"{key}/mem_gib"] = figure(max(r["mem_per_rank_gib"]), "GiB", "lower", m)
    for frames, s in speedups(rows).items():
        for mode, value in s.items():
            if value is not None:
                out[f"{prefix}/speedup_{mode}/f{frames}"] = figure(value, "x", "higher", q)
    return out


# --- tables --------------------------------------------------------------------------------


def efficiency_table(rows: list[dict]) -> str:
    """Markdown: seconds per step per mode and frame count, with the speedups."""
    by = {(r["mode"], r["frames"]): r for r in rows}
    sp = speedups(rows)
    head = ("| frames | " + " | ".join(MODE_LABELS[m] + " (s/step)" for m in MODES) + " | "
            + " | ".join(f"speedup {MODE_LABELS[m]}" for m in MODES[1:]) + " | MFU (" + ", ".join(MODES) + ") |")
    lines = [head, "|" + "---|" * (2 * len(MODES) + 1)]
    for frames in sorted({r["frames"] for r in rows}):
        cells = [str(frames)]
        for m in MODES:
            r = by.get((m, frames))
            cells.append(_cell(r))
        for m in MODES[1:]:
            v = sp[frames].get(m)
            cells.append("–" if v is None else f"{v:.2f}x")
        cells.append(", ".join(_mfu_cell(by.get((m, frames))) for m in MODES))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _mfu_cell(r: dict | None) -> str:
    return f"{100 * r['mfu']:.1f}%" if r and r.get("mfu") is not None else "–"


def _cell(r: dict | None) -> str:
    if r is None:
        return "–"
    if r["status"] == "oom":
        return "OOM"
    if r["status"] == "failed":
        return "failed"
    text = f"{r['sec_per_step']:.2f}"
    return text if r["fits"] else f"{text} (OOM: {max(r['mem_per_rank_gib']):.2f} GiB)"


def breakdown_table(rows: list[dict]) -> str:
    """Markdown: median seconds per block, one line per (mode, frames)."""
    names = [b for b in TOP_BLOCKS if any(b in r.get("blocks", {}) for r in rows)]
    est = "encode (inside other blocks, est.)"
    has_est = any(est in r.get("blocks", {}) for r in rows)
    head = "| mode | frames | " + " | ".join(names) + (" | baseline encode, est. |" if has_est else " |") + " total |"
    lines = [head, "|" + "---|" * (len(names) + 3 + has_est)]
    for r in rows:
        if "blocks" not in r:
            continue
        cells = [MODE_LABELS.get(r["mode"], r["mode"]), str(r["frames"])]
        cells += [f"{r['blocks'][b]:.3f}" if b in r["blocks"] else "–" for b in names]
        if has_est:
            cells.append(f"{r['blocks'][est]:.3f}" if est in r["blocks"] else "–")
        cells.append(f"{r['sec_per_step']:.3f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def model_ratio_line(pc: PerfConfig, model_path: str | None = None) -> dict[str, Any]:
    """The run's model against LongVILA-7B: tokens per frame and vision : LLM FLOP ratio."""
    from perf.flops import size_costs, vila_frame_costs

    if pc.family != "vila":
        return {"note": "FLOP ratio computed for the vila family only"}
    if model_path and pc.model_path:
        from transformers import AutoConfig, SiglipVisionConfig

        vision = SiglipVisionConfig.from_pretrained(Path(model_path) / "vision_tower")
        llm = AutoConfig.from_pretrained(Path(model_path) / "llm")
        ours = vila_frame_costs(vision, llm)
    else:
        ours = size_costs(pc.size)
    ref = size_costs("7b")
    text = (f"model {pc.model_path or 'vila/' + pc.size}: {ours['tokens_per_frame']} tokens/frame, "
            f"vision:LLM FLOPs per frame {ours['vision_to_llm_ratio']:.3f}; LongVILA-7B: "
            f"{ref['tokens_per_frame']} tokens/frame, {ref['vision_to_llm_ratio']:.3f}")
    return {"ours": ours, "longvila_7b": ref, "text": text}


def mrsp_result(pc: PerfConfig, rows: list[dict], config_path: str) -> dict[str, Any]:
    """The results JSON of the efficiency + breakdown suites."""
    from perf.common import stamp

    return {
        "suite": "mrsp", **stamp(), "config": config_path, "world_size": pc.world_size,
        "budget_gib": pc.budget_gib, "notes": pc.notes,
        "memory_measure": "GPU: torch max_memory_allocated; CPU: peak RSS minus RSS before train_rl",
        "stage1_deviation": "stage 1 splits encoding over ranks by prompt (dp), not by frame",
        "model": model_ratio_line(pc), "rows": rows,
        "speedups": {str(k): v for k, v in speedups(rows).items()},
        "largest_fitting": largest_fitting(rows),
        "efficiency_table": efficiency_table(rows), "breakdown_table": breakdown_table(rows),
        "figures": figures(rows, pc),
    }


def memory_result(pc: PerfConfig, rows: list[dict]) -> dict[str, Any]:
    """The memory suite: per-rank memory against frames per SP size, largest fitting."""
    from perf.common import figure, stamp

    lines = ["| SP size | checkpointing | frames | memory per rank (GiB) | peak RSS per rank (GiB) | fits |",
             "|---|---|---|---|---|---|"]
    figs = {}
    for r in rows:
        r.setdefault("variant", memory_variant(r["sp_size"], r.get("checkpointing", False)))
        ck = "yes" if r.get("checkpointing") else "no"
        if r["status"] not in ("ok", "over_budget"):
            lines.append(f"| {r['sp_size']} | {ck} | {r['frames']} | {r['status']} | – | no |")
            continue
        mem = ", ".join(f"{m:.3f}" for m in r["mem_per_rank_gib"])
        rss = ", ".join(f"{m:.2f}" for m in r["peak_rss_per_rank_gib"])
        lines.append(f"| {r['sp_size']} | {ck} | {r['frames']} | {mem} | {rss} | {'yes' if r['fits'] else 'no'} |")
        figs[f"memory/{r['variant']}/f{r['frames']}/mem_gib"] = figure(
            max(r["mem_per_rank_gib"]), "GiB", "lower", pc.thresholds["memory"])
    fit = largest_fitting(rows, key="variant")
    for variant, frames in fit.items():
        if frames:
            figs[f"memory/{variant}/largest_fitting_frames"] = figure(frames, "frames", "higher", 0.0)
    return {"suite": "memory", **stamp(), "budget_gib": pc.budget_gib, "rows": rows,
            "largest_fitting": {str(k): v for k, v in fit.items()}, "table": "\n".join(lines),
            "figures": figs}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m perf.mrsp", description=__doc__.split("\n\n")[0])
    p.add_argument("--config", default="configs/perf/cpu-2rank.yaml")
    p.add_argument("--out", default="perf/results/mrsp.json")
    p.add_argument("--work", default=None, help="folder for data, model and runs (default: a temp dir)")
    p.add_argument("--memory", action="store_true", help="also run the SP-size memory sweep")
    args = p.parse_args(argv)
    from perf.common import write_json

    pc = PerfConfig.load(args.config)
    with tempfile.TemporaryDirectory(prefix="perf-mrsp-") as tmp:
        work = Path(args.work or tmp)
        result = mrsp_result(pc, sweep(pc, work), args.config)
        if args.memory:
            result["memory"] = memory_result(pc, memory_sweep(pc, work))
            result["figures"].update(result["memory"]["figures"])
    write_json(args.out, result)
    print(result["efficiency_table"])
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
