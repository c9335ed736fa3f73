"""`python -m perf.model --validate`: the memory model against CPU measurements at toy scale
(the `perf` vila model, fp32 unless noted, CPU), printed as predicted vs measured with the
relative error.

- perf/results/memory.json (the memory suite, configs/perf/cpu-2rank.yaml): a whole RL step
  per rank for SP 1 and 2, peak anonymous RSS above the start. Its setup, as perf/mrsp.py
  ran it: 2 prompts, n 8 x 128 tokens, micro-batch 8 one response per row (padded rows:
  recorded before padding-free packing existed; plain causal rows, whose attention the
  shared-prefix change left as it was), KL reference, vLLM with a 0.125 GiB KV cache, ZeRO
  0; the prompt length the run measured.
- one training row (prompt + 8 x 128 tokens, shared prefix) with and without activation
  checkpointing: `perf.checkpointing._one` re-run now in fresh processes (128, 256 and 512
  frames), peak anonymous RSS. (perf/README.md section 5's rows measured the earlier
  [responses x row] mask attention, so they no longer stand for the code.)
- one training micro-batch under real Ulysses SP 3 (gloo; the perf model's 4 heads do not
  split over 3, so they are padded to 6, as LongVILA-7B's 28 over SP 8): the bytes autograd
  saves on each rank (`saved_activation_bytes`), padding-free shared-prefix rows under bf16
  autocast (the real configs' setting) and padded plain rows in fp32, against the activation
  terms. An exact count, not a resident-memory measurement.
- vLLM's CPU runtime, the one term the model cannot derive: RssAnon after importing vLLM and
  starting an engine for the perf model, less its KV cache and weights, measured now in a
  fresh process. It enters the memory.json predictions as measured (not fitted to them).

CPU memory is what the OS provided, so allocator overhead, transient buffers and Python
objects are in the measurement and not in the model; no constant is tuned to these points.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from perf.model_memory import GIB, Setup, batch_shape, predict, train_activations

MEMORY_JSON = Path("perf/results/memory.json")
RESPONSES, TOKENS = 8, 128  # perf.checkpointing's defaults
KV_GIB = 0.125  # configs/perf/cpu-2rank.yaml rollout.vllm_kv_cache_gib
SP_CASES = ((True, True, True), (False, False, False))  # (shared prefix, padding-free, bf16 autocast)


def cpu_setup(**kw) -> Setup:
    base = dict(prompts=2, n=8, response=128, micro_batch=8, shared_prefix=False, checkpointing=False, dp=1, sp=1,
                zero_stage=0, weight_bytes=4, compute_bytes=4, reference=True, engine="vllm", vllm_util=0.6,
                vllm_kv_gib=KV_GIB, vllm_sleep=False, device_gib=1e9, on_gpu=False, padding_free=False)
    return Setup(**{**base, **kw})


# --- what autograd saves --------------------------------------------------------------------


def perf_batch(model, frames: int, groups: list[int], response: int, padding_free: bool, seed: int = 0):
    """A packed batch of `groups` (responses behind each copy of one prompt of `frames`
    synthetic 64 x 64 frames), as the RL passes build it (batch.py pack_groups)."""
    import numpy as np
    import torch

    from harness.model.batch import pack_groups

    rng = np.random.default_rng(seed)
    with torch.no_grad():
        video = model.encode_frames(rng.integers(0, 256, (frames, 64, 64, 3), dtype=np.uint8),
                                    np.arange(frames) * 0.5)
        prompt = model.build_prompt(model.chat_prompt_ids("what happened?"), video)
    answers = [torch.from_numpy(rng.integers(5, 500, response)) for _ in range(max(groups))]
    return pack_groups(model, [prompt] * len(groups), [answers[:g] for g in groups], padding_free), len(prompt)


def saved_activation_bytes(model, batch, bf16: bool = False, sp_group=None) -> tuple[int, int]:
    """(bytes of the distinct storages autograd saves in one forward of `batch`, response
    tokens whose logits this rank formed). Parameters and their bf16 casts (autocast's
    cache, counted as the policy's) are left out: by storage, and by shape (a parameter's
    or its transpose's). `sp_group`: the sequence-parallel forward (model/sp.py)."""
    import torch

    from harness.model.batch import response_logprobs
    from harness.model.sp import sp_local_logprobs

    weights = {p.untyped_storage().data_ptr() for p in model.parameters()}
    shapes = {tuple(p.shape) for p in model.parameters()}
    shapes |= {s[::-1] for s in shapes}
    saved: dict[int, int] = {}

    def keep(t):
        if t.untyped_storage().data_ptr() not in weights and tuple(t.shape) not in shapes:
            saved[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    precision = torch.autocast("cpu", dtype=torch.bfloat16, cache_enabled=False) if bf16 else \
        torch.autocast("cpu", enabled=False)
    with precision, torch.autograd.graph.saved_tensors_hooks(keep, lambda t: t):
        if sp_group is None:
            response_logprobs(model, batch)
            owned = int(batch.response_mask.sum())
        else:
            _, mask = sp_local_logprobs(model, batch, sp_group)
            owned = int(mask.sum())
    return sum(saved.values()), owned


def predicted_saved_bytes(arch, s: Setup, groups: list[int], prompt: int, owned: int | None = None) -> float:
    """The activation terms autograd's saved tensors cover: every layer's, the final norm, the
    whole packed embeddings under SP and the kept fp32 log-softmax (of `owned` logit tokens;
    default the busiest rank's). Gradients in flight and transients are not saved tensors."""
    b = batch_shape(s, groups, prompt)
    t = train_activations(arch, s, b)
    tokens = b.logit_tokens if owned is None else owned
    return t["layers"] + t["final_norm"] + t["embeds_full"] + tokens * arch.llm.vocab_size * 4


def _sp_saved(rank: int, world: int, frames: int, groups: list[int], response: int) -> list[tuple]:
    from harness.model.build import init_model
    from harness.parallel.groups import build_layout

    group = build_layout(1, world).sp_group
    model = init_model("vila", "perf", seed=0).train()
    out = []
    for shared, free, bf16 in SP_CASES:
        batch, prompt = perf_batch(model, frames, groups if shared else [1] * sum(groups), response, free)
        out.append((*saved_activation_bytes(model, batch, bf16, group), prompt))
    return out


def sp_rows(arch, world: int = 3, frames: int = 128, groups: tuple[int, ...] = (4, 2), response: int = 64
            ) -> list[tuple[str, float, float]]:
    from harness.parallel.launch import spawn

    ranks = spawn(_sp_saved, world, frames, list(groups), response, backend="gloo")
    rows = []
    for k, (shared, free, bf16) in enumerate(SP_CASES):
        measured = max(r[k][0] for r in ranks)
        prompt = ranks[0][k][2]
        s = cpu_setup(frames=frames, prompts=1, n=max(groups), response=response, micro_batch=sum(groups), sp=world,
                      shared_prefix=shared, padding_free=free, compute_bytes=2 if bf16 else 4, reference=False,
                      engine="hf")
        g = list(groups) if shared else [1] * sum(groups)
        predicted = max(predicted_saved_bytes(arch, s, g, prompt, r[k][1]) for r in ranks)
        label = (f"{'shared prefix' if shared else 'one response per row'}, {'padding-free' if free else 'padded'}"
                 f", {'bf16 autocast' if bf16 else 'fp32'}")
        rows.append((f"saved tensors, SP {world} (heads padded 4 -> 6), {frames} frames, {label} (re-run now)",
                     measured / GIB, predicted / GIB))
    return rows


# --- resident memory ------------------------------------------------------------------------


def _vllm_runtime(rank: int, world: int) -> float:
    """GiB of anonymous memory an in-process vLLM engine adds beyond its KV cache and weights."""
    from harness.model.build import init_model
    from harness.rollout.vllm_engine import VLLMEngine
    from harness.trainer.rl import train_rl  # noqa: F401  (what the perf worker imports before its baseline)
    from perf.mrsp import _status_gib

    model = init_model("vila", "perf")
    start = _status_gib("RssAnon")
    engine = VLLMEngine(model, kv_cache_gib=KV_GIB, max_model_len=model.max_positions)
    grown = _status_gib("RssAnon") - start
    weights = sum(p.numel() * p.element_size() for p in model.llm.parameters()) / GIB
    del engine
    return grown - KV_GIB - weights


def _measure_runtime() -> float:
    from harness.parallel.launch import spawn
    from perf.mrsp import CPU_MMAP_THRESHOLD

    os.environ.setdefault("MALLOC_MMAP_THRESHOLD_", str(CPU_MMAP_THRESHOLD))
    return spawn(_vllm_runtime, 1, backend="gloo")[0]


def memory_suite_rows(arch, runtime_gib: float) -> list[tuple[str, float, float]]:
    rows = json.loads(MEMORY_JSON.read_text())["rows"]
    out = []
    for r in rows:
        if r.get("status") not in ("ok", "over_budget"):
            continue
        s = cpu_setup(frames=r["frames"], sp=r["sp_size"], dp=r["dp"], prompt_tokens=r["prompt_tokens"],
                      overhead_gib=runtime_gib)
        out.append((f"RL step, SP {s.sp}, {s.frames} frames ({MEMORY_JSON})", max(r["mem_per_rank_gib"]),
                    predict(arch, s).peak / GIB))
    return out


def training_row(arch, frames: int, tokens: int, checkpointing: bool) -> float:
    """Predicted peak of one forward + backward of a shared-prefix row (perf.checkpointing):
    its activations and the gradients (every parameter trains there)."""
    s = cpu_setup(frames=frames, prompts=1, micro_batch=RESPONSES, shared_prefix=True, checkpointing=checkpointing,
                  reference=False, engine="hf", prompt_tokens=tokens - RESPONSES * TOKENS)
    terms = predict(arch, s).details
    train = sum(v for k, v in terms.items() if k.startswith("train/"))
    return (train + (arch.trainable + arch.frozen) * s.weight_bytes) / GIB


def checkpointing_rows(arch, frames: list[int]) -> list[tuple[str, float, float]]:
    from harness.parallel.launch import spawn
    from perf.checkpointing import _one
    from perf.mrsp import CPU_MMAP_THRESHOLD

    os.environ.setdefault("MALLOC_MMAP_THRESHOLD_", str(CPU_MMAP_THRESHOLD))
    out = []
    for f in frames:
        for ck in (False, True):
            r = spawn(_one, 1, f, RESPONSES, TOKENS, ck, backend="gloo")[0]
            out.append((f"one training row, {f} frames, {'checkpointed' if ck else 'stored'} (re-run now)",
                        r["peak_gib"], training_row(arch, f, r["tokens"], ck)))
    return out


def validate(live_frames: tuple[int, ...] = (128, 256, 512)) -> str:
    from perf.model_arch import toy_arch

    arch = toy_arch("vila", "perf")
    runtime = _measure_runtime()
    rows = memory_suite_rows(arch, runtime) + checkpointing_rows(arch, list(live_frames)) + sp_rows(arch)
    lines = [f"vLLM CPU runtime measured now: {runtime:.3f} GiB (imports + engine beyond KV and weights; "
             f"in the RL-step predictions)", "",
             "| measurement | measured GiB | predicted GiB | error |", "|---|---|---|---|"]
    errors = []
    for name, measured, predicted in rows:
        err = (predicted - measured) / measured
        errors.append(abs(err))
        lines.append(f"| {name} | {measured:.4f} | {predicted:.4f} | {err:+.1%} |")
    lines += ["", f"mean |error| {sum(errors) / len(errors):.1%}, largest {max(errors):.1%} over {len(errors)} "
              f"measurements (CPU: peak anonymous RSS above the start, allocator and transients included; "
              f"the SP rows count saved tensors exactly)"]
    return "\n".join(lines)
