"""Memory and FLOPs model of an RL step: per-GPU memory by term, the step's FLOPs and time,
for an RL config at chosen frame counts, and the cheapest mode that fits.

    python -m perf.model --config configs/rl/longvila-7b-8gpu.yaml --frames 256 512 1024 2048 3600 \\
        [--arch longvila-r1-7b|qwen2_5-vl-3b|config] [--gpu-gib 80] [--mfu 0.3] [--peak-tflops 312]
    python -m perf.model --validate     # predicted vs measured at toy scale on this CPU (~2.5 min, 2 cores)

--set KEY=VALUE overrides the config as the harness does; --gpus changes the GPU count.

Notation: h, i, Lyr, V: the LLM's hidden size, MLP width, layers, vocabulary; kv its K (or V)
width per token; P_t its parameters (trained), P_f the vision tower + projector's (frozen in
RL); W = dp x sp ranks; wb the bytes of model.dtype (the weights and, since the embeddings
feed it, the residual stream), cb of model.compute_dtype (bf16 autocast; else wb); P prompt
tokens = frames x rows per frame + text; R = rollout.max_new_tokens (every response full
length: the largest step); G = rollout.n. Shapes and counts: perf/model_arch.py.

Memory per rank (perf/model_memory.py), as our code holds it:
(a) Policy (harness/parallel/strategy.py, sharding.py). Weights (P_t + P_f) wb: every ZeRO
    stage keeps full parameters between passes (ZeRO-3 gathers them again after each step
    for the no-grad passes); only while the update runs does ZeRO-3 hold P_t wb / W plus two
    units (one computing, one prefetched; the largest unit: a layer, the embeddings or
    lm_head). Gradients, update only (zero_grad sets them to None): P_t wb at stages 0/1,
    P_t wb / W + one unit's unsharded gradient at 2/3. AdamW moments 2 P_t wb: whole at 0,
    / W at 2/3 (FSDP2 shards every tensor), 2 wb max(P_t / W, largest tensor) at 1
    (ZeroRedundancyOptimizer places whole tensors). fp32 master weights are the parameters
    themselves. With compute_dtype bf16, autocast's cache holds a bf16 copy of every trained
    weight, 2 P_t, from the first forward that reads them under autocast (the log-prob pass;
    with the HF engine the rollout; vLLM holds its own weights and the frozen tower caches
    nothing) until the update: Run.update clears the cache after every optimizer step.
(b) Reference (algo.kl_coef > 0): a copy of the whole model in cb, (P_t + P_f) cb, replicated.
(c) Training activations of the largest micro-batch. Rows (batch.py pack_groups): one per
    group (a prompt and the g responses behind it), right-padded to the longest; with
    train.padding_free (the default) all groups one after another in one row. The width is
    then padded to a multiple of sp; T = rows x width / sp tokens on the rank. Per layer and
    token autograd keeps (counted on our layer's graph, tests/perf_tools/test_perf_model.py),
    in one process with plain causal rows: without autocast wb (10h + 4i): each RMSNorm's
    input and normalised value (4h), the norm outputs the matmuls read (2h), q, k, v as SDPA
    keeps them (3h: KV heads are repeated to all heads first), the attention output (h: SDPA
    writes it in the [L, H, d] layout o_proj reads, one storage), and gate, up, SiLU(gate),
    their product (4i); under bf16 autocast the 4h of norm math stay fp32 and every matmul
    reads its own bf16 cast (q, k, v, gate and up each cast a norm output): wb 4h + cb (9h +
    4i). Attention then adds (ha: the width of the heads attention runs on, h unless Ulysses
    pads them; ab: cb under autocast, else wb):
    - SDPA's output in a storage of its own, ha ab per token, whenever it is not o_proj's
      input itself: under SP (the exchange back) and for grouped or shared-prefix rows
      (outputs concatenated; then only the real tokens' outputs, padding is zeros).
    - Under SP (Ulysses, parallel/ulysses.py; inside attention a rank holds the whole row
      for ha / sp of the width): SDPA's q, k, v are views of the q|k|v all-to-all's
      received buffer (q + 2 kv' wide, kv' after repeating KV heads so that they split),
      beside k and v repeated to the query heads after it when kv' < h, all in ab: under
      autocast `autocast_inputs` casts q, k, v to bf16 before the exchange, so the buffer
      is bf16 and SDPA casts nothing. Where sp divides the query heads ha = h.
      Where it does not (spread_kv_heads returns 0: LongVILA-7B's 28 heads over SP 8) K and
      V are repeated to one head per query head and q, k, v zero-padded to a multiple of sp
      heads (28 -> 32): ha = (H + pad) d, the buffer 3 ha, SDPA's output ha.
    - Shared prefix (attention.py rows_attention; with padding-free rows each group with
      g > 1 on its own stretch; padded rows all take it when any row has g > 1): the prefix
      queries through the causal kernel, then each response's r queries against
      torch.cat([prefix keys, its own keys]) (same for values) under the lower-right causal
      bias: SDPA keeps both concatenations, 2 (p + r) ha / sp ab per response and layer (the
      term that grows with frames x responses: nothing O(Q x L) any more). In one process
      under autocast they are cast to bf16 (`autocast_inputs`) and stand in for the cast
      SDPA would have kept of the response's own k: r ha cb less (v leaves v_proj bf16;
      under SP all three arrive bf16 in the buffer, which stays kept). On CPU no fused
      kernel takes that bias, so SDPA materialises it and keeps it as a float [r, p + r]
      bias (ab); on GPU the fused kernels take it without a mask.
    Stored: Lyr layers. Checkpointing: each layer keeps its input (wb h) and one layer is
    recomputed in backward: Lyr wb h + one layer. Plus the bytes in flight: one layer's
    backward, cb 2i + wb h per token (at the SiLU-times-up product's backward both i-wide
    input gradients exist while its saved inputs are not yet released, besides the gradient
    arriving at the layer; autograd frees each node's saved tensors as it runs, so the rest
    replace what they free), or, when larger, Ulysses' q|k|v exchange (counted against the
    storages torch allocates in tests/perf_tools): q and k as rotary leaves them, h + kv in
    wb (its cos/sin follow the fp32 residual stream), v (kv, ab); then in ab (bf16 under
    autocast) the casts still referenced (q and k when no KV head is repeated, q when they
    are, none when every head is padded: the copies replace them), the copies made before
    it (repeated KV heads, or every head repeated and padded: 3 ha), the send buffer and the
    received pieces (their concatenation is the kept buffer; with 2+ padded rows one more
    copy, all_to_all's per-rank chunks); and the final norm 2h wb. Not split by SP: the
    packed rows' embeddings rows x width x h wb (every SP rank packs whole rows and its first
    layer keeps a view of them). LM head (batch.py logprobs_at): logits only for the T
    response tokens whose predicting position is in the rank's slice of its row (the
    busiest rank; padded rows put every response near the end, on the last rank; a
    padding-free row spreads its groups' responses), LOGIT_CHUNK (1,024) tokens at a time,
    each chunk under non-reentrant checkpoint: kept for backward only its inputs, T (h wb +
    25) (the gathered final states, three int64 index vectors and the mask); backward
    recomputes one chunk's logits at a time: min(T, 1,024) V 12 (the fp32 log-softmax, the
    dense fp32 gradient gather returns, log-softmax's input gradient) beside the states'
    gradient the chunks accumulate into (T h wb), at the start of backward when all else is
    still kept.
(d) vLLM (rollout.engine vllm/auto; one engine per rank): on GPU it reserves
    vllm_gpu_memory_utilization x GPU memory (weights in cb: vila the LLM, qwen2_5_vl the whole
    model; the rest KV cache); with rollout.vllm_sleep (default on) release() gives weights
    and KV back during the log-prob and update passes (sleep level 2) and the next weight sync
    wakes them, so it holds them while encoding and sampling; vllm_kv_cache_gib set: weights +
    that. KV needed by the rank's ceil(prompts / sp) prompts, (P + G R) tokens each with the
    prompt's blocks shared by prefix caching: 2 Lyr kv cb per token. On CPU (no sleep mode):
    weights + KV (1 GiB unless set) + the engine's runtime (imports, buffers), measured by
    --validate. The HF engine instead: during rollout the KV of up to 64 sampled rows and a
    prefill.
(e) Cached video embeddings (trainer/videos.py): every prompt of the DP rank, all-gathered
    whole on every SP rank: prompts x frames x tokens per frame x h x cb.
(f) Encoding (MR-SP stage 1, parallel/encode.py): a rank encodes its share of the video's
    units (ceil(units / sp); a unit is a frame for vila, two for Qwen), the tower on
    encode_chunk (32) units per call (interface.py encode_units). The largest of: one call,
    per patch the hidden states kept (vila all Lv + 1: encode_unit_block asks for
    output_hidden_states to read layer -2; Qwen 1) in wb, one layer's MLP and q/k/v in cb,
    the call's pixels (3 p^2 per patch and frame, wb), beside the share's embeddings so
    far; with several calls, their outputs and their concatenation (two shares); under SP,
    all_gather_uneven's share, padded copy, SP pieces and the collective's flat staging
    buffer (NCCL's and gloo's all-gather into a list), then the pieces and their
    concatenation: (2 + 2 sp) shares; less the video's embeddings, which (e) counts. On CPU
    every rank also holds the whole video's preprocessed pixels. Qwen's tower holds more
    than counted (its rotary makes fp32 copies of q and k, its windows reorder the states:
    1.7x on the tiny model), some hundred MB per 64-frame call at hour scale.
(g) Runtime: CUDA context, cuBLAS and NCCL workspaces, --overhead-gib (1.5 on GPU).
Phases: every phase holds (a) weights and moments, (b), (e), (g); autocast's copies in the
log-prob and update phases (and the HF engine's rollout); (d) in encode and rollout, and in
the others too unless it sleeps; encode adds (f); rollout the HF engine's KV; logprob one
no-grad micro-batch (one layer at a time: wb 2h + the larger of cb (4h + 3i) and Ulysses'
exchange (as above, its concatenation not kept) per token, the whole embeddings, one
response's concatenated prefix K and V, one chunk's fp32 logits and log-softmax, 8 V per
token of min(T, 1,024)); update the gradients and (c), with ZeRO-3's sharded weights. Peak = the largest phase; a mode fits when the peak is within
--gpu-gib and vLLM's KV share holds at least one prompt + response.

FLOPs (perf/flops.py): model FLOPs = step_flops (each video encoded once, each prompt once
per pass; rollout, old and reference log-probs one forward each, update 3). Executed FLOPs
count what the mode runs: llm_forward_flops for every group of every micro-batch (without a
shared prefix the prompt is computed once per response), the linear layers over padding
(padded rows of unequal groups; SP's padding), the recomputation in the update's backward
(a forward of the layers with checkpointing; the LM head over every response token always,
its chunks being checkpointed), and without cache_video_embeds the video encoded again for
every rollout sample and every group of every pass. Seconds per step = executed / (GPUs x peak x MFU): an
assumed MFU standing for the whole step (decode is memory-bound; the MFU is its average).
Responses are all taken at full length (the largest step), so padded rows only pad groups
with fewer responses; padding-free's saving on real, uneven responses is not modelled.

Mode search: SP 1/2/4/8 dividing the GPUs (the rest DP, global prompts kept), checkpointing
off/on, ZeRO 0-3, rows as configured / one prompt + G responses / one response, padded or
padding-free, and vLLM's share as configured or cut to its weights + the KV it needs +
VLLM_RESERVE_GIB, where our code accepts them (ZeRO-2/3 need untied embeddings and 2+
ranks; any head count runs under any SP size); the fastest that fits, then the smallest.
"""

from __future__ import annotations

import argparse
import itertools
import math
import sys
from pathlib import Path

from perf.model_arch import ARCHS, Arch
from perf.model_memory import DTYPE_BYTES, GIB, PHASES, Setup, micro_batches, predict

SP_SIZES = (1, 2, 4, 8)
VLLM_RESERVE_GIB = 2.0  # vLLM's own activations (a prefill chunk, sampling logits) and CUDA graphs


# --- FLOPs and time -------------------------------------------------------------------------


def model_flops(arch: Arch, s: Setup, prompt: int) -> float:
    """perf/flops.py's step FLOPs: the work the step needs, whatever the mode."""
    from perf.flops import llm_forward_flops, step_flops

    prompts = s.prompts * s.dp
    if arch.family == "vila":
        return step_flops(arch.vision_config, arch.llm, frames=s.frames, prompts=prompts, prefix=prompt, n=s.n,
                          response=s.response, reference=s.reference)["total"]
    encode = prompts * s.frames * arch.vision_flops_per_frame(s.frames)  # same accounting, Qwen's tower
    return encode + (5 + s.reference) * prompts * llm_forward_flops(arch.llm, prompt, s.n, s.response)


def executed_flops(arch: Arch, s: Setup, prompt: int) -> float:
    """What the mode runs: every group of every micro-batch, the linear layers over the
    padding too (padded rows; SP's padding to a multiple of its size), recomputation (the
    layers when checkpointed, the LM head's chunks always), re-encoding."""
    from perf.flops import llm_forward_flops, llm_linear_flops_per_token
    from perf.model_memory import batch_shape

    prompts = s.prompts * s.dp
    batches = micro_batches(s)
    padding = 0
    for b in batches:
        shape = batch_shape(s, b, prompt)
        padding += shape.rows * shape.width - shape.real_tokens
    per_pass = s.dp * (sum(llm_forward_flops(arch.llm, prompt, g, s.response) for b in batches for g in b)
                       + padding * llm_linear_flops_per_token(arch.llm))
    passes = 1 + s.reference + 3  # old, reference, update fwd + bwd
    # recomputed in the update's backward: the decoder layers (checkpointing) and the LM head
    # over every response token (its checkpointed chunks)
    head = prompts * s.n * s.response * 2 * arch.llm.hidden_size * arch.llm.vocab_size
    recompute = s.checkpointing * (per_pass - head) + (s.logit_chunk is not None) * head
    rows_per_prompt = sum(len(b) for b in batches) / s.prompts
    encodes = 1 if s.cache_video else s.n + rows_per_prompt * (2 + s.reference)
    encode = prompts * encodes * s.frames * arch.vision_flops_per_frame(s.frames)
    return encode + prompts * llm_forward_flops(arch.llm, prompt, s.n, s.response) + passes * per_pass + recompute


# --- modes ----------------------------------------------------------------------------------


def refusal(arch: Arch, s: Setup) -> str | None:
    """Why our code would refuse this layout, or None. (Any head count runs under any SP size:
    Ulysses pads heads the SP size does not divide, at a cost `heads` in model_memory counts.)"""
    if s.zero_stage >= 2 and arch.tied:
        return f"ZeRO-{s.zero_stage}: tied embeddings (sharding.py)"
    if s.zero_stage >= 2 and s.world < 2:
        return f"ZeRO-{s.zero_stage} needs 2+ ranks"
    return None


def fits(arch: Arch, s: Setup, p) -> bool:
    from perf.model_memory import kv_bytes_per_token

    one = (p.prompt_tokens + s.response) * kv_bytes_per_token(arch, s)
    return p.peak <= s.device_gib * GIB and (s.engine != "vllm" or p.kv_have >= one)


def mode_label(s: Setup) -> str:
    rows = "shared prefix" if s.shared_prefix and s.micro_batch > 1 and s.n > 1 else "one response per group"
    vllm = f", vLLM {s.vllm_util:.2f}" if s.engine == "vllm" and s.vllm_kv_gib is None else ""
    return (f"SP {s.sp} x DP {s.dp}, ZeRO {s.zero_stage}{', ckpt' if s.checkpointing else ''}, "
            f"{rows}, micro {s.micro_batch}{', padding-free' if s.padding_free else ''}{vllm}")


def least_vllm_share(arch: Arch, s: Setup) -> float:
    """The smallest vllm_gpu_memory_utilization (in steps of 0.05) that holds the engine's
    weights, the KV its share of prompts needs and VLLM_RESERVE_GIB for its own activations
    and CUDA graphs."""
    from perf.model_memory import vllm_engine

    prompt = s.prompt_tokens or arch.prompt_tokens(s.frames)
    _, need, _ = vllm_engine(arch, s, prompt)
    wanted = arch.rollout_params * s.compute_bytes + need + VLLM_RESERVE_GIB * GIB
    return min(1.0, math.ceil(wanted / (s.device_gib * GIB) / 0.05 - 1e-9) * 0.05)


def candidates(arch: Arch, base: Setup, gpus: int) -> list[Setup]:
    """Every layout of the same GPUs and global prompts our code accepts (module docstring)."""
    out, total = [], base.prompts * base.dp
    rows = sorted({(base.shared_prefix, base.micro_batch), (True, base.n), (False, 1)})
    for sp in (s for s in SP_SIZES if gpus % s == 0):
        for ck, zero, (shared, micro), free in itertools.product((False, True), (0, 1, 2, 3), rows, (False, True)):
            s = base.with_(sp=sp, dp=gpus // sp, prompts=math.ceil(total * sp / gpus), checkpointing=ck,
                           zero_stage=zero, shared_prefix=shared, micro_batch=micro, padding_free=free)
            if refusal(arch, s) is not None:
                continue
            out.append(s)
            if s.engine == "vllm" and s.vllm_kv_gib is None:  # and with vLLM's share cut to what it needs
                share = least_vllm_share(arch, s)
                if share < s.vllm_util:
                    out.append(s.with_(vllm_util=share))
    return out


def evaluate(arch: Arch, s: Setup, mfu: float, peak_flops: float) -> dict:
    p = predict(arch, s)
    executed = executed_flops(arch, s, p.prompt_tokens)
    return {"setup": s, "pred": p, "fits": fits(arch, s, p), "refused": refusal(arch, s),
            "model_flops": model_flops(arch, s, p.prompt_tokens), "executed_flops": executed,
            "seconds": executed / (s.world * peak_flops * mfu)}


def cheapest(arch: Arch, base: Setup, gpus: int, mfu: float, peak_flops: float) -> dict | None:
    ok = [r for r in (evaluate(arch, s, mfu, peak_flops) for s in candidates(arch, base, gpus)) if r["fits"]]
    return min(ok, key=lambda r: (round(r["seconds"], 6), r["pred"].peak)) if ok else None


# --- tables ---------------------------------------------------------------------------------


def _gib(x: float) -> str:
    return f"{x / GIB:.1f}"


def _num(x: float) -> str:
    """Whole numbers from 100 up, three significant digits below (toy configs)."""
    return f"{x:,.0f}" if x >= 100 else f"{x:.3g}"


def _params(n: int) -> str:
    return f"{n / 1e9:.2f}B" if n >= 1e9 else f"{n / 1e6:.2f}M"


def config_row(r: dict) -> str:
    p, s = r["pred"], r["setup"]
    t = p.terms
    policy = t["weights"] + t["autocast_copies"] + t["grads"] + t["adam"]
    fit = "yes" if r["fits"] else "no"
    if r["refused"]:
        fit = f"refused ({r['refused']}); memory {'fits' if r['fits'] else 'over'}"
    phases = " / ".join(_gib(p.phases[ph]) for ph in PHASES)
    cells = [s.frames, f"{p.prompt_tokens:,}", _gib(policy), _gib(t["reference"]), _gib(t["vllm"]),
             f"{_gib(p.kv_need)} / {_gib(max(p.kv_have, 0))}", _gib(t["video_cache"]), _gib(p.details["encode"]),
             _gib(p.details["activations"]), phases, f"**{_gib(p.peak)}** ({p.peak_phase})", fit, _num(r["seconds"])]
    return "| " + " | ".join(str(c) for c in cells) + " |"


TABLE_HEAD = ("| frames | prompt tokens | policy | reference | vLLM | KV need / have | video cache | encode | "
              "activations | phases: encode / rollout / logprob / update | peak (phase) | fits? | s/step |\n"
              "|---|---|---|---|---|---|---|---|---|---|---|---|---|")


def report(arch: Arch, note: str, base: Setup, frames: list[int], gpus: int, mfu: float, peak_tflops: float) -> str:
    peak = peak_tflops * 1e12
    lines = [f"### {arch.name} on {gpus} x {base.device_gib:g} GiB", "", f"{note}.",
             f"P_t {_params(arch.trainable)} trained, P_f {_params(arch.frozen)} frozen; "
             f"{arch.tokens_per_frame(frames[0]):g} tokens + {arch.end_rows_per_frame} end rows per frame; "
             f"MFU {mfu:g} of {peak_tflops:g} TFLOP/s per GPU.", "",
             f"As configured ({mode_label(base)}), GiB per GPU: policy (weights, autocast copies, gradients, "
             f"AdamW) and vLLM in the peak phase; encode and activations in their own phases.", "", TABLE_HEAD]
    best = []
    for f in frames:
        lines.append(config_row(evaluate(arch, base.with_(frames=f), mfu, peak)))
        best.append((f, cheapest(arch, base.with_(frames=f), gpus, mfu, peak)))
    lines += ["", "Cheapest mode that fits (fastest predicted step, then least memory):", "",
              "| frames | mode | peak GiB (phase) | s/step | model TFLOP/step |", "|---|---|---|---|---|"]
    for f, r in best:
        if r is None:
            lines.append(f"| {f} | none fits | – | – | – |")
        else:
            lines.append(f"| {f} | {mode_label(r['setup'])} | {_gib(r['pred'].peak)} ({r['pred'].peak_phase}) | "
                         f"{_num(r['seconds'])} | {_num(r['model_flops'] / 1e12)} |")
    return "\n".join(lines)


# --- command line ---------------------------------------------------------------------------


def setup_from_config(cfg, frames: int, device_gib: float, overhead_gib: float) -> Setup:
    m = cfg.model
    wb = DTYPE_BYTES[m.dtype]
    return Setup(
        frames=frames, prompts=cfg.train.prompts_per_step, n=cfg.rollout.n, response=cfg.rollout.max_new_tokens,
        micro_batch=cfg.train.micro_batch, shared_prefix=cfg.train.shared_prefix,
        checkpointing=m.activation_checkpointing, dp=cfg.parallel.dp_size, sp=cfg.parallel.sp_size,
        zero_stage=cfg.parallel.zero_stage, weight_bytes=wb,
        compute_bytes=DTYPE_BYTES[m.compute_dtype] if m.compute_dtype else wb, reference=cfg.algo.kl_coef > 0,
        engine="hf" if cfg.rollout.engine == "hf" else "vllm", vllm_util=cfg.rollout.vllm_gpu_memory_utilization,
        vllm_kv_gib=cfg.rollout.vllm_kv_cache_gib, vllm_sleep=cfg.rollout.vllm_sleep, device_gib=device_gib,
        cache_video=cfg.train.cache_video_embeds, padding_free=cfg.train.padding_free, overhead_gib=overhead_gib)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, exit 2 (as the harness command does)
        print(f"python -m perf.model: error: {message}", file=sys.stderr)
        raise SystemExit(2)


def _frame_count(text: str) -> int:
    from harness.config import MAX_FRAMES

    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--frames takes whole numbers, got {text!r}") from None
    if not 1 <= value <= MAX_FRAMES:
        raise argparse.ArgumentTypeError(f"--frames must be in [1, {MAX_FRAMES}], got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="python -m perf.model", description=__doc__.split("\n\n")[0])
    p.add_argument("--config", help="an RL config (YAML), e.g. configs/rl/longvila-7b-8gpu.yaml")
    p.add_argument("--frames", type=_frame_count, nargs="+", default=[256, 512, 1024, 2048, 3600])
    p.add_argument("--arch", choices=(*ARCHS, "config"), default="config",
                   help="config: the config's model (a folder here, else its family's real target)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="a config override, as the harness takes them (e.g. model.path=null)")
    p.add_argument("--vila-size", choices=("perf",), help="with --arch config and no model.path: the perf model")
    p.add_argument("--gpus", type=int, help="GPUs (default: the config's dp_size x sp_size)")
    p.add_argument("--gpu-gib", type=float, default=80.0)
    p.add_argument("--mfu", type=float, default=0.3)
    p.add_argument("--peak-tflops", type=float, default=312.0, help="per GPU (A100 bf16: 312)")
    p.add_argument("--overhead-gib", type=float, default=1.5, help="CUDA context and workspaces per GPU")
    p.add_argument("--validate", action="store_true", help="predicted vs measured at toy scale on this CPU")
    return p


def run(args) -> int:
    from harness.config import RLConfig, load_config
    from perf.model_arch import arch_from_config, named_arch

    if args.validate:
        from perf.model_validate import validate

        print(validate())
        return 0
    if not args.config:
        raise ValueError("--config is required (or --validate)")
    if not (0 < args.mfu <= 1 and args.peak_tflops > 0 and args.gpu_gib > 0 and (args.gpus is None or args.gpus > 0)):
        raise ValueError("--mfu must be in (0, 1], --peak-tflops, --gpu-gib and --gpus > 0")
    cfg = load_config(Path(args.config), args.set, RLConfig)
    if args.arch == "config":
        arch, note = arch_from_config(cfg.model, args.vila_size)
    else:
        arch, note = named_arch(args.arch, cfg.model.video_pixels), f"--arch {args.arch}"
    gpus = args.gpus if args.gpus is not None else cfg.parallel.dp_size * cfg.parallel.sp_size
    base = setup_from_config(cfg, args.frames[0], args.gpu_gib, args.overhead_gib)
    if gpus != base.world:  # keep the global prompts and the SP size where it divides
        sp = base.sp if gpus % base.sp == 0 else 1
        base = base.with_(sp=sp, dp=gpus // sp, prompts=math.ceil(base.prompts * base.dp * sp / gpus))
    print(report(arch, f"{note}; {args.config}", base, args.frames, gpus, args.mfu, args.peak_tflops))
    return 0


def main(argv: list[str] | None = None) -> int:
    from harness.errors import HarnessError

    args = build_parser().parse_args(argv)
    try:
        return run(args)
    except (ValueError, FileNotFoundError, HarnessError) as err:  # a bad input: one line, no traceback
        print(f"python -m perf.model: error: {str(err).splitlines()[0]}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
