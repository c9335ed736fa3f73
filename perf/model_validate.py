"""`python -m perf.model --validate`: the memory model against CPU measurements at toy scale
(the `perf` vila model, fp32 unless noted, CPU), printed as predicted vs measured with the
relative error.

- perf/results/memory.json (the memory suite, configs/perf/cpu-2rank.yaml): a whole RL step
  per rank for SP 1 and 2 (stored and, where recorded, checkpointed), peak anonymous RSS
  above the start. Its setup, as perf/mrsp.py ran it: 2 prompts, n 8 x 128 tokens,
  micro-batch 8 one response per group (plain causal attention per group, which the
  shared-prefix change left as it was), KL reference, vLLM with a 0.125 GiB KV cache, ZeRO
  0; the prompt length the run measured; padded rows or padding-free as the recording code
  ran (`memory_suite_rows`).
- one training row (prompt + 8 x 128 tokens, shared prefix) with and without activation
  checkpointing: `perf.checkpointing._one` re-run now in fresh processes (128, 256 and 512
  frames), peak anonymous RSS. (perf/README.md section 5's rows measured the earlier
  [responses x row] mask attention, so they no longer stand for the code.)
- one training micro-batch under real Ulysses SP 3 (gloo; the perf model's 4 heads do not
  split over 3, so they are padded to 6, as LongVILA-7B's 28 over SP 8): the bytes autograd
  saves on each rank (`saved_activation_bytes`), padding-free shared-prefix rows under bf16
  autocast (the real configs' setting) and padded plain rows in fp32, against the activation
  terms. An exact count, not a resident-memory measurement.
- the terms #21's chunking changed, as tensor-storage peaks (`TensorPeak`: the bytes of the
  storages ops create, alive at once; exact, allocator aside): encoding a video with the
  tower on `encode_chunk` units per call and on the rank's share in one call, one process
  and 2 real gloo ranks (the all-gather); the LM head's checkpointed chunks
  (`logprobs_at`) forward + backward over more tokens than one chunk.
- vLLM's CPU runtime, the one term the model cannot derive: RssAnon after importing vLLM and
  starting an engine for the perf model, less its KV cache and weights, measured now in a
  fresh process. It enters the memory.json predictions as measured (not fitted to them).

CPU memory is what the OS provided, so allocator overhead, transient buffers and Python
objects are in the measurement and not in the model; no constant is tuned to these points.
"""

from __future__ import annotations

import json
import os
import weakref
from pathlib import Path

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from perf.model_memory import (
    ENCODE_CHUNK,
    GIB,
    LOGIT_CHUNK,
    Setup,
    batch_shape,
    encode_terms,
    predict,
    train_activations,
)

MEMORY_JSON = Path("perf/results/memory.json")
RESPONSES, TOKENS = 8, 128  # perf.checkpointing's defaults
KV_GIB = 0.125  # configs/perf/cpu-2rank.yaml rollout.vllm_kv_cache_gib
SP_CASES = ((True, True, True), (False, False, False))  # (shared prefix, padding-free, bf16 autocast)


def cpu_setup(**kw) -> Setup:
    base = dict(prompts=2, n=8, response=128, micro_batch=8, shared_prefix=False, checkpointing=False, dp=1, sp=1,
                zero_stage=0, weight_bytes=4, compute_bytes=4, reference=True, engine="vllm", vllm_util=0.6,
                vllm_kv_gib=KV_GIB, vllm_sleep=False, device_gib=1e9, on_gpu=False, padding_free=False)
    return Setup(**{**base, **kw})


# --- tensor peaks ---------------------------------------------------------------------------


class TensorPeak(TorchDispatchMode):
    """While on, the bytes of the tensor storages that ops create (views and ops writing into
    their inputs add nothing), counted until each storage is freed: `live` now, `peak` the
    most at once. Exact for what torch allocates on this thread (autograd's CPU backward runs
    here too), without the allocator's overhead or storages made before it was entered."""

    def __init__(self):
        super().__init__()
        self.live = self.peak = 0
        self._seen: set[int] = set()

    def _free(self, key: int, nbytes: int) -> None:
        self.live -= nbytes
        self._seen.discard(key)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        given = {t.untyped_storage().data_ptr() for t in tree_flatten((args, kwargs))[0] if isinstance(t, torch.Tensor)}
        for t in tree_flatten(out)[0]:
            if isinstance(t, torch.Tensor):
                storage = t.untyped_storage()
                key, nbytes = storage.data_ptr(), storage.nbytes()
                if nbytes and key not in self._seen and key not in given:
                    self._seen.add(key)
                    self.live += nbytes
                    weakref.finalize(storage, self._free, key, nbytes)
                    self.peak = max(self.peak, self.live)
        return out


def head_peak(tokens: int, hidden: int, vocab: int, chunk: int | None) -> tuple[int, int]:
    """(tensor peak of `logprobs_at`'s forward + backward, bytes autograd saved) for `tokens`
    response tokens under an LM head hidden -> vocab, fp32, with `LOGIT_CHUNK` = `chunk`
    (None: the code's own). The final states exist before (as the decoder made them); the
    head is frozen here (its gradient is the policy's term), the states take gradients."""
    import types

    from harness.model import batch as batch_mod

    torch.manual_seed(0)
    head = torch.nn.Linear(hidden, vocab, bias=False)
    head.weight.requires_grad_(False)  # its gradient is the policy's term, not an activation
    states = torch.randn(1, tokens, hidden, requires_grad=True) * 1.0  # [1, T, D], a non-leaf as the decoder's
    batch = types.SimpleNamespace(response_row=torch.zeros(1, dtype=torch.long),
                                  response_tokens=torch.randint(0, vocab, (1, tokens)))
    index, mask = torch.arange(tokens)[None], torch.ones(1, tokens, dtype=torch.bool)
    saved: dict[int, int] = {}

    def keep(t):
        saved[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    before = batch_mod.LOGIT_CHUNK
    batch_mod.LOGIT_CHUNK = chunk or before
    try:
        with TensorPeak() as peak:
            with torch.autograd.graph.saved_tensors_hooks(keep, lambda t: t):
                out = batch_mod.logprobs_at(types.SimpleNamespace(lm_head=head), states, batch, index, mask)
            out.sum().backward()
    finally:
        batch_mod.LOGIT_CHUNK = before
    return peak.peak, sum(saved.values())


def head_rows(tokens: int = 3000, hidden: int = 128, vocab: int = 16384) -> list[tuple[str, float, float]]:
    """The LM head over more response tokens than one chunk, and over all of them in one
    chunk: its backward peak is one chunk's (the model's `logits`, with the states' gradient
    when there are several) beside the kept states (`logit_states`)."""
    rows = []
    for chunk in (LOGIT_CHUNK, tokens):
        measured, _ = head_peak(tokens, hidden, vocab, chunk)
        predicted = min(tokens, chunk) * vocab * 12 + tokens * (hidden * 4 + 3 * 8 + 1) \
            + (tokens * hidden * 4 if chunk < tokens else 0)  # the states' gradient, accumulating
        label = f"LOGIT_CHUNK {chunk:,}" + (" (the code's)" if chunk == LOGIT_CHUNK else ": all in one chunk")
        rows.append((f"tensor peak, LM head fwd + bwd, {tokens:,} tokens x {vocab:,} vocab, {label} (re-run now)",
                     measured / GIB, predicted / GIB))
    return rows


def encode_peak(model, frames: int, chunk: int | None, sp_group=None) -> int:
    """Tensor peak of MR-SP stage 1 on this rank (trainer/videos.py `_encode` less the
    preprocessing, whose pixels exist before): `frames` synthetic 64 x 64 frames, the tower
    on `chunk` units per call (None: the rank's share in one call)."""
    import numpy as np

    from harness.parallel.encode import encode_split

    pixels = model.preprocess(np.random.default_rng(0).integers(0, 256, (frames, 64, 64, 3), dtype=np.uint8),
                              np.arange(frames) * 0.5)
    units = pixels.units.shape[0]
    model.encode_chunk = chunk or units
    try:
        with torch.no_grad(), TensorPeak() as peak:
            encode_split(units, lambda a, b: model.encode_units(pixels.select(a, b)), sp_group)
    finally:
        del model.encode_chunk  # the class's
    return peak.peak


def _encode_peaks(rank: int, world: int, frames: int) -> list[int]:
    from harness.model.build import init_model
    from harness.parallel.groups import build_layout

    group = build_layout(1, world).sp_group if world > 1 else None
    model = init_model("vila", "perf", seed=0).eval()
    return [encode_peak(model, frames, chunk, group) for chunk in (None, model.encode_chunk)]


def encode_rows(arch, frames: int = 512) -> list[tuple[str, float, float]]:
    from harness.parallel.launch import spawn

    rows, now = [], ENCODE_CHUNK
    for world in (1, 2):
        ranks = spawn(_encode_peaks, world, frames, backend="gloo")
        for k, chunk in enumerate((None, now)):
            s = cpu_setup(frames=frames, sp=world, encode_chunk=chunk)
            t = encode_terms(arch, s)
            predicted = max(t["call"], t["cat"], t["gather"])  # the pixels exist before the count starts
            label = f"{now} units per tower call (the code's)" if chunk else "the share in one tower call"
            rows.append((f"tensor peak, encoding {frames} frames, SP {world}, {label} (re-run now)",
                         max(r[k] for r in ranks) / GIB, predicted / GIB))
    return rows


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
    whole packed embeddings under SP and the LM head's input (of `owned` logit tokens; default
    the busiest rank's): the checkpointed chunks save their inputs, the gathered final states
    and the token ids, and nothing of the logits (unchunked, `logit_chunk` None: the kept fp32
    log-softmax too). Gradients in flight and transients are not saved tensors."""
    b = batch_shape(s, groups, prompt)
    t = train_activations(arch, s, b)
    tokens = b.logit_tokens if owned is None else owned
    head = t["logit_states"] * tokens / max(b.logit_tokens, 1)
    if s.logit_chunk is None:
        head += tokens * arch.llm.vocab_size * 4
    return t["layers"] + t["final_norm"] + t["embeds_full"] + head


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
    """The memory suite's recorded steps, each predicted as the code that recorded it ran.
    Rows without a `checkpointing` flag are the record from before the suite had checkpointed
    variants (f3a2ff8), and so from before padding-free packing and #21's chunking: padded
    rows, the tower on the share in one call, all logits at once. Rows with the flag are the
    suite since: the harness defaults, padding-free rows (and the chunking, which moves none
    of these peaks: they are in the update, whose 1,024 response tokens are one chunk)."""
    rows = json.loads(MEMORY_JSON.read_text())["rows"]
    out = []
    for r in rows:
        if r.get("status") not in ("ok", "over_budget"):
            continue
        now = "checkpointing" in r
        chunks = {} if now else {"encode_chunk": None, "logit_chunk": None}
        s = cpu_setup(frames=r["frames"], sp=r["sp_size"], dp=r["dp"], prompt_tokens=r["prompt_tokens"],
                      overhead_gib=runtime_gib, checkpointing=bool(r.get("checkpointing")), padding_free=now, **chunks)
        label = f"RL step, SP {s.sp}, {s.frames} frames{', checkpointed' if s.checkpointing else ''}"
        out.append((f"{label} ({MEMORY_JSON})", max(r["mem_per_rank_gib"]), predict(arch, s).peak / GIB))
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
    rows = (memory_suite_rows(arch, runtime) + checkpointing_rows(arch, list(live_frames)) + sp_rows(arch)
            + encode_rows(arch) + head_rows())
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
              f"the SP rows count saved tensors exactly, the tensor-peak rows the storages torch allocates)"]
    return "\n".join(lines)
