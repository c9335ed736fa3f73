"""Per-rank memory of an RL step, term by term and phase by phase. The formulas and why they
hold are in perf/model.py's docstring; each function here names the term it computes.
Everything is in bytes."""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

from perf.model_arch import Arch

GIB = 2**30
DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}
PHASES = ("encode", "rollout", "logprob", "update")
CPU_DEFAULT_KV_GIB = 1.0  # harness/rollout/vllm_engine.py DEFAULT_CPU_KV_CACHE_GIB
HF_MAX_BATCH = 64  # harness/rollout/hf_engine.py: sampled rows per decode batch
ENCODE_CHUNK = 32  # harness/model/interface.py VideoLM.encode_chunk: units per vision-tower call
LOGIT_CHUNK = 1024  # harness/model/batch.py LOGIT_CHUNK: response tokens whose logits exist at once


@dataclass(frozen=True)
class Setup:
    """What one rank runs: the config's settings that move memory or FLOPs."""

    frames: int
    prompts: int  # prompts per step on each DP rank (train.prompts_per_step)
    n: int  # responses per prompt
    response: int  # tokens per response: rollout.max_new_tokens, the longest a step can hold
    micro_batch: int
    shared_prefix: bool
    checkpointing: bool
    dp: int
    sp: int
    zero_stage: int
    weight_bytes: int  # model.dtype: the (master) weights, the residual stream
    compute_bytes: int  # model.compute_dtype (bf16 autocast), else the weights' dtype
    reference: bool  # algo.kl_coef > 0: a frozen reference model
    engine: str  # "vllm" or "hf"
    vllm_util: float
    vllm_kv_gib: float | None
    vllm_sleep: bool
    device_gib: float
    on_gpu: bool = True
    cache_video: bool = True
    padding_free: bool = True  # train.padding_free: a micro-batch's groups in one unpadded row
    overhead_gib: float = 0.0  # CUDA context, cuBLAS and NCCL workspaces
    prompt_tokens: int | None = None  # a measured prompt length; None: the arch's estimate
    # None: the code before #21's chunking (the tower on a rank's whole share in one call; every
    # response token's logits at once, kept for backward): what perf/results/memory.json ran
    encode_chunk: int | None = ENCODE_CHUNK
    logit_chunk: int | None = LOGIT_CHUNK

    @property
    def world(self) -> int:
        return self.dp * self.sp

    @property
    def autocast(self) -> bool:
        return self.compute_bytes != self.weight_bytes

    def with_(self, **changes) -> Setup:
        return replace(self, **changes)


@dataclass
class Prediction:
    terms: dict[str, float]  # bytes of each term in the peak phase
    phases: dict[str, float]  # total bytes of each phase
    peak_phase: str
    prompt_tokens: int
    row_tokens: int  # longest training row
    kv_need: float  # vLLM KV cache the rank's share of prompts needs (prefix shared), bytes
    kv_have: float  # what the engine's reservation leaves for KV, bytes
    details: dict[str, float] = field(default_factory=dict)

    @property
    def peak(self) -> float:
        return self.phases[self.peak_phase]


# --- the training rows ----------------------------------------------------------------------


def micro_batches(s: Setup) -> list[list[int]]:
    """Each micro-batch of a log-prob or update pass as its groups, a group given by how many
    responses sit behind its one prompt copy (rl_update.pack_samples: with the shared prefix
    consecutive samples of one prompt share a group). `batch_shape` lays them out in rows."""
    samples, out = s.prompts * s.n, []
    for start in range(0, samples, s.micro_batch):
        rows: list[int] = []
        for i in range(start, min(start + s.micro_batch, samples)):
            if s.shared_prefix and rows and (i - 1) // s.n == i // s.n:
                rows[-1] += 1
            else:
                rows.append(1)
        out.append(rows)
    return out


@dataclass(frozen=True)
class Batch:
    """One micro-batch on one rank: rows x width, split over the SP group."""

    rows: int  # padded rows: one per group; padding-free: 1
    width: int  # padded to a multiple of the SP size (sp.py padded_length)
    local: int  # tokens per row on this rank
    groups: tuple[int, ...]  # responses behind each group's one prompt copy
    prompt: int  # prompt tokens of every group
    response: int  # tokens per response
    shared: tuple[bool, ...]  # per group: attended by the shared-prefix path (attention.py)
    grouped: bool  # attention per group stretch (padding-free rows, `_grouped_attention`)
    logit_tokens: int  # response tokens whose logits the busiest rank forms

    @property
    def real_tokens(self) -> int:
        return sum(self.prompt + g * self.response for g in self.groups)


def batch_shape(s: Setup, groups: list[int], prompt: int) -> Batch:
    """The micro-batch `groups` as harness/model/batch.py pack_groups lays it out: one row per
    group, right-padded to the longest, or with `padding_free` all groups one after another in
    one row; the width then padded to a multiple of the SP size."""
    lengths = [prompt + g * s.response for g in groups]
    if s.padding_free:
        rows, width = 1, sum(lengths)
        places = [sum(lengths[:k]) for k in range(len(groups))]  # each group's offset in the row
        shared = tuple(g > 1 for g in groups)  # each stretch alone: one response is plain causal
    else:
        rows, width = len(groups), max(lengths)
        places = [0] * len(groups)
        shared = (max(groups) > 1,) * len(groups)  # any row with 2+ responses: every row that way
    width = -(-width // s.sp) * s.sp
    local = width // s.sp

    def owned(rank: int) -> int:  # the response tokens predicted from positions in this slice
        lo, hi = rank * local, (rank + 1) * local
        count = 0
        for at, g in zip(places, groups, strict=True):
            count += g * (lo <= at + prompt - 1 < hi)  # every response's first token: the prompt's last position
            for k in range(g):  # token j >= 1 of response k: its own position j - 1
                start = at + prompt + k * s.response
                count += max(0, min(hi, start + s.response - 1) - max(lo, start))
        return count

    return Batch(rows, width, local, tuple(groups), prompt, s.response, shared, s.padding_free,
                 max(owned(r) for r in range(s.sp)))


# --- the terms ------------------------------------------------------------------------------


def layer_bytes_per_token(h: int, i: int, s: Setup) -> float:
    """What one Qwen2 decoder layer keeps for backward per token with plain causal rows in one
    process (counted on the autograd graph: see perf/model.py)."""
    rb, cb = s.weight_bytes, s.compute_bytes
    if not s.autocast:
        return rb * (10 * h + 4 * i)
    return rb * 4 * h + cb * (9 * h + 4 * i)


@dataclass(frozen=True)
class Heads:
    """Widths per token (elements) of q, k, v around Ulysses' exchange (parallel/ulysses.py)."""

    attended: int  # the heads attention runs on, x head dim: H d, or (H + pad) d when padded
    buffer: int  # the q|k|v all-to-all buffer per local token (0 without SP)
    before: int  # copies made before the exchange: KV heads repeated, or every head repeated + padded
    after: int  # k, v repeated to the query's heads after the exchange (kept by SDPA)
    projected: int  # q, k, v as the projections give them: h + 2 kv
    kv: int  # the projected k (or v) alone
    cast: int  # under autocast, the bf16 casts of q and k still referenced during the exchange


def heads(llm, sp: int) -> Heads:
    from harness.parallel.ulysses import spread_kv_heads

    h, nq, nkv = llm.hidden_size, llm.num_attention_heads, llm.num_key_value_heads
    d = h // nq
    projected = h + 2 * nkv * d
    if sp == 1:
        return Heads(h, 0, 0, 0, projected, nkv * d, 0)
    rep = spread_kv_heads(nkv, nq, sp)
    if rep == 0:  # one KV head per query head, zero heads up to a multiple of SP (the casts replaced)
        padded = (nq + (-nq % sp)) * d
        return Heads(padded, 3 * padded, 3 * padded, 0, projected, nkv * d, 0)
    kv = nkv * rep * d
    # rep > 1: k's cast replaced by its repeated copy, q's still held; rep 1: both held
    return Heads(h, h + 2 * kv, 2 * kv if rep > 1 else 0, 2 * h if kv < h else 0, projected, nkv * d,
                 h if rep > 1 else h + nkv * d)


def exchange_bytes(llm, s: Setup, rows: int, kept: bool) -> float:
    """Per local token, the bytes alive at Ulysses' q|k|v exchange beyond what autograd keeps
    (`kept`: a training forward keeps the received buffer; no-grad passes keep nothing).
    q and k leave rotary in the weights' dtype (fp32 cos/sin), v leaves v_proj in the compute
    dtype; under autocast `autocast_inputs` casts q and k before the exchange, so the copies,
    the send buffer (`torch.cat` of the pieces), the received pieces and their concatenation
    are bf16. With 2+ rows all_to_all's per-rank chunks are not contiguous: one more copy."""
    if s.sp == 1:
        return 0.0
    rb, cb = s.weight_bytes, s.compute_bytes
    ab = cb if s.autocast else rb
    geo = heads(llm, s.sp)
    buffers = (2 if kept else 3) + (rows > 1)
    projected = rb * (geo.projected - geo.kv) + ab * geo.kv  # q, k after rotary; v
    casts = cb * geo.cast if s.autocast else 0.0
    return projected + casts + ab * (geo.before + buffers * geo.buffer)


def attention_bytes(llm, s: Setup, b: Batch) -> dict[str, float]:
    """Per layer, what attention keeps beyond `layer_bytes_per_token`'s single-process count,
    and the transient bytes of the q|k|v exchange beyond what is kept (attention.py,
    ulysses.py). Inside attention every rank holds the whole row for its heads."""
    rb, cb, sp = s.weight_bytes, s.compute_bytes, s.sp
    ab = cb if s.autocast else rb  # what SDPA reads and writes
    geo = heads(llm, sp)
    h = llm.hidden_size
    tokens = b.rows * b.local
    out = {"qkv": 0.0, "outputs": 0.0, "shared_kv": 0.0, "cpu_bias": 0.0, "exchange": 0.0}
    if sp > 1:
        # SDPA's q, k, v are views of the received buffer (+ k, v repeated after it), in the
        # compute dtype under autocast (cast before the exchange): they stand in for the 3h
        # the single-process count gives SDPA's inputs
        out["qkv"] = tokens * ab * (geo.buffer + geo.after - 3 * h)
        out["exchange"] = tokens * exchange_bytes(llm, s, b.rows, kept=True)
    # SDPA's output has its own storage unless it is the o_proj input itself (one process,
    # plain rows): after Ulysses' exchange back, or the concatenation of groups / responses
    if any(b.shared) or b.grouped:
        out["outputs"] = b.real_tokens * geo.attended / sp * ab
    elif sp > 1:
        out["outputs"] = tokens * geo.attended * ab
    per_response = shared_response_bytes(llm, s, b)
    for g, shared in zip(b.groups, b.shared, strict=True):
        if shared:
            out["shared_kv"] += g * per_response["shared_kv"]
            out["cpu_bias"] += g * per_response["cpu_bias"]
            if s.autocast and sp == 1:  # in one process the response's own k reaches SDPA only inside
                # the cast concatenation: no cast of its own (v leaves v_proj in bf16 and the prefix's
                # SDPA keeps a view of all of it, as plain rows do; under SP all three arrive bf16)
                out["shared_kv"] -= g * b.response * geo.attended * cb
    return out


def shared_response_bytes(llm, s: Setup, b: Batch) -> dict[str, float]:
    """What one response of the shared-prefix path adds: its SDPA on torch.cat([prefix
    keys, its own keys]) (same for values; under autocast cast to bf16, ulysses.py
    `autocast_inputs`) keeps both concatenations, the rank's heads wide; on CPU no fused
    kernel takes the lower-right causal bias, so SDPA materialises it and keeps it as a
    float bias ([r, p + r])."""
    ab = s.compute_bytes if s.autocast else s.weight_bytes
    span = b.prompt + b.response
    return {"shared_kv": 2 * span * heads(llm, s.sp).attended / s.sp * ab,
            "cpu_bias": 0.0 if s.on_gpu else b.response * span * ab}


def logit_chunk_tokens(s: Setup, b: Batch) -> int:
    """Response tokens whose [tokens, vocab] logits exist at once on the busiest rank."""
    return b.logit_tokens if s.logit_chunk is None else min(b.logit_tokens, s.logit_chunk)


def train_activations(arch: Arch, s: Setup, b: Batch) -> dict[str, float]:
    """One training micro-batch's forward + backward on one rank (update phase)."""
    llm = arch.llm
    h, i, layers, vocab = llm.hidden_size, llm.intermediate_size, llm.num_hidden_layers, llm.vocab_size
    rb, cb = s.weight_bytes, s.compute_bytes
    tokens = b.rows * b.local
    attn = attention_bytes(llm, s, b)
    layer = layer_bytes_per_token(h, i, s) * tokens + sum(v for k, v in attn.items() if k != "exchange")
    kept = layers * layer if not s.checkpointing else layers * tokens * rb * h + layer
    # the LM head's input: the gathered final states (kept by the checkpointed chunks, in the
    # residual dtype; unchunked, lm_head kept its own input, a bf16 cast under autocast), and
    # int64 ids and gather indices (the token ids, the row and position indices) and the mask
    head_in = rb if s.logit_chunk is not None or not s.autocast else cb
    return {
        "layers": kept,
        "final_norm": 2 * rb * h * tokens,
        # in flight: one layer's backward (the SiLU-times-up product's input gradients) or, if
        # larger, the q|k|v exchange's send and receive buffers (forward and backward alike)
        "backward": max((cb * 2 * i + rb * h) * tokens, attn["exchange"]),
        "embeds_full": (b.rows * b.width * h * rb) * (1 - 1 / s.sp),  # every SP rank packs the whole rows
        "logit_states": b.logit_tokens * (h * head_in + 3 * 8 + 1),
        # backward of the head, one chunk at a time (recomputed: nothing of it kept from the
        # forward): the fp32 log-softmax, the dense fp32 gradient gather returns, log-softmax's
        # input gradient (the bf16 logits are freed once cast to fp32), beside the gathered
        # states' gradient the chunks accumulate into; unchunked, all tokens' logits
        "logits": logit_chunk_tokens(s, b) * vocab * 12
        + (b.logit_tokens * h * rb if logit_chunk_tokens(s, b) < b.logit_tokens else 0.0),
    }


def scoring_activations(arch: Arch, s: Setup, b: Batch) -> dict[str, float]:
    """One no-grad log-prob micro-batch (logprob phase): one layer's tensors at a time."""
    llm = arch.llm
    h, i, vocab = llm.hidden_size, llm.intermediate_size, llm.vocab_size
    rb, cb = s.weight_bytes, s.compute_bytes
    tokens = b.rows * b.local
    exchange = exchange_bytes(llm, s, b.rows, kept=False)
    return {
        # the MLP's tensors, or at Ulysses' exchange the q, k, v, their copies and the buffers
        "layer": tokens * (rb * 2 * h + max(cb * (4 * h + 3 * i), exchange)),
        "embeds_full": b.rows * b.width * h * rb,
        # the shared-prefix path: one response's concatenated K and V at a time (+ CPU's bias)
        "shared_kv": sum(shared_response_bytes(llm, s, b).values()) if any(b.shared) else 0.0,
        "logits": logit_chunk_tokens(s, b) * vocab * 8,  # a chunk's fp32 logits and their log-softmax
    }


def kv_bytes_per_token(arch: Arch, s: Setup) -> float:
    llm = arch.llm
    return 2 * llm.num_hidden_layers * llm.num_key_value_heads * (llm.hidden_size // llm.num_attention_heads) \
        * s.compute_bytes


def policy_state(arch: Arch, s: Setup, phase: str) -> dict[str, float]:
    """Policy weights, autocast's bf16 copies, gradients and AdamW moments (strategy.py)."""
    pt, wb, w = arch.trainable, s.weight_bytes, s.world
    sharded = s.zero_stage >= 2 and w > 1
    if s.zero_stage == 3 and w > 1 and phase == "update":  # 1/W, plus a unit gathered and one prefetched
        llm_weights = pt * wb / w + 2 * arch.largest_unit * wb
    else:
        llm_weights = pt * wb
    if sharded:
        adam = 2 * pt * wb / w
    elif s.zero_stage == 1 and w > 1:  # ZeroRedundancyOptimizer places whole tensors
        adam = 2 * wb * max(pt / w, arch.largest_tensor)
    else:
        adam = 2 * pt * wb
    grads = 0.0
    if phase == "update":
        grads = pt * wb / w + arch.largest_unit * wb if sharded else pt * wb
    return {"weights": llm_weights + arch.frozen * wb, "autocast_copies": 2 * pt if autocast_cached(s, phase) else 0.0,
            "grads": grads, "adam": adam}


def autocast_cached(s: Setup, phase: str) -> bool:
    """Whether autocast's cache holds its bf16 casts of the trained weights in `phase`: from
    the first forward that reads them under autocast (the log-prob pass; the rollout with the
    HF engine, vLLM holds its own weights; the tower is frozen, so encoding caches nothing)
    until the optimizer update, after which Run.update clears the cache."""
    return s.autocast and (phase in ("logprob", "update") or (phase == "rollout" and s.engine == "hf"))


def vllm_engine(arch: Arch, s: Setup, prompt: int) -> tuple[float, float, float]:
    """(reserved bytes, KV bytes needed by the rank's share of prompts, KV bytes available)."""
    weights = arch.rollout_params * s.compute_bytes
    share = math.ceil(s.prompts / s.sp)  # each SP rank samples its share of the group's prompts
    need = share * (prompt + s.n * s.response) * kv_bytes_per_token(arch, s)
    if s.vllm_kv_gib is not None or not s.on_gpu:
        kv = (s.vllm_kv_gib if s.vllm_kv_gib is not None else CPU_DEFAULT_KV_GIB) * GIB
        return weights + kv, need, kv
    reserved = s.vllm_util * s.device_gib * GIB
    return reserved, need, reserved - weights


def hf_rollout(arch: Arch, s: Setup, prompt: int) -> float:
    """The HF engine: prompt prefill once, then its KV cache repeated to one row per sample."""
    share = math.ceil(s.prompts / s.sp)
    rows = min(HF_MAX_BATCH, share * s.n)
    llm = arch.llm
    prefill = prompt * (s.weight_bytes * 3 * llm.hidden_size + s.compute_bytes * 3 * llm.intermediate_size)
    return rows * (prompt + s.response) * kv_bytes_per_token(arch, s) + prefill


def video_cache(arch: Arch, s: Setup) -> float:
    """The step's cached embeddings: every prompt of the DP rank, whole (all-gathered)."""
    videos = s.prompts if s.cache_video else 1
    return videos * s.frames * arch.tokens_per_frame(s.frames) * arch.llm.hidden_size * s.compute_bytes


def encode_terms(arch: Arch, s: Setup) -> dict[str, float]:
    """MR-SP stage 1 on one rank (trainer/videos.py, parallel/encode.py). The rank encodes
    its contiguous share of the video's units, `encode_chunk` units per tower call
    (VideoLM.encode_units; None: the share in one call), then all-gathers the shares. The
    moments, each the bytes of this video's encoding alive then ("video": its embeddings,
    the result, which `video_cache` counts):
    - call: the last call's tower hidden states (`vision_states_kept` per patch), one layer's
      MLP and q/k/v, its pixels moved to the device (GPU), and the share's outputs so far;
    - cat (2+ calls): the calls' outputs and their concatenation, twice the share;
    - gather (SP > 1): the share, all_gather_uneven's padded copy of it, the SP pieces and
      the collective's flat buffer (NCCL and gloo gather a list of outputs through one), or
      then the pieces' concatenation, the video.
    On CPU every rank's preprocessed pixels of the whole video are there throughout (the
    calls read them in place); on GPU they stay in host memory."""
    units = math.ceil(s.frames / arch.frames_per_unit)
    share = math.ceil(units / s.sp)  # chunk_bounds: the first ranks take one more unit
    call = share if s.encode_chunk is None else min(share, s.encode_chunk)
    patches = arch.patches_per_frame(s.frames)
    c, i = arch.vision_hidden, arch.vision_intermediate
    per_patch = arch.vision_states_kept * c * s.weight_bytes + (i + 3 * c) * s.compute_bytes
    frame_pixels = 3 * arch.vision_patch**2 * arch.patch_frames * patches * s.weight_bytes
    call_frames = call * arch.frames_per_unit
    out = share * arch.frames_per_unit * arch.tokens_per_frame(s.frames) * arch.llm.hidden_size * s.compute_bytes
    return {
        "call": call_frames * (patches * per_patch + (frame_pixels if s.on_gpu else 0.0)) + out,
        "cat": 2 * out if call < share else 0.0,
        "gather": (2 + 2 * s.sp) * out if s.sp > 1 else 0.0,
        "video": s.sp * out,
        "cpu_pixels": 0.0 if s.on_gpu else s.frames * frame_pixels,
    }


def vision_forward(arch: Arch, s: Setup) -> float:
    """The encode phase's peak beyond the video's embeddings (`video_cache` counts them):
    the largest moment of `encode_terms`, + the CPU's whole-video pixels."""
    t = encode_terms(arch, s)
    return max(0.0, max(t["call"], t["cat"], t["gather"]) - t["video"]) + t["cpu_pixels"]


# --- the phases -----------------------------------------------------------------------------


def predict(arch: Arch, s: Setup) -> Prediction:
    """Every term, the total of each phase of the step, and the peak."""
    prompt = s.prompt_tokens or arch.prompt_tokens(s.frames)
    shapes = {tuple(g) for g in micro_batches(s)}
    batches = [batch_shape(s, list(g), prompt) for g in shapes]
    biggest = max(batches, key=lambda b: sum(train_activations(arch, s, b).values()))
    train = train_activations(arch, s, biggest)
    score = max((scoring_activations(arch, s, b) for b in batches), key=lambda t: sum(t.values()))
    reserved, need, have = vllm_engine(arch, s, prompt) if s.engine == "vllm" else (0.0, 0.0, 0.0)
    common = {
        "reference": (arch.trainable + arch.frozen) * s.compute_bytes if s.reference else 0.0,
        "video_cache": video_cache(arch, s),
        "overhead": s.overhead_gib * GIB,
    }
    phase_terms = {}
    for phase in PHASES:
        terms = {**policy_state(arch, s, phase), **common}
        asleep = s.vllm_sleep and s.on_gpu and phase in ("logprob", "update")  # vLLM cannot sleep on CPU
        terms["vllm"] = 0.0 if asleep else reserved
        terms["encode"] = vision_forward(arch, s) if phase == "encode" or not s.cache_video else 0.0
        terms["rollout_hf"] = hf_rollout(arch, s, prompt) if phase == "rollout" and s.engine == "hf" else 0.0
        terms["activations"] = sum(train.values()) if phase == "update" else (
            sum(score.values()) if phase == "logprob" else 0.0)
        phase_terms[phase] = terms
    totals = {p: sum(t.values()) for p, t in phase_terms.items()}
    peak = max(totals, key=totals.get)
    row = max(b.width for b in batches)
    details = {f"train/{k}": v for k, v in train.items()}
    details.update({f"attention/{k}": v for k, v in attention_bytes(arch.llm, s, biggest).items()})  # per layer
    details.update(encode=phase_terms["encode"]["encode"], activations=phase_terms["update"]["activations"])
    return Prediction(phase_terms[peak], totals, peak, prompt, row, need, have, details)
