"""perf/model.py, the memory and FLOPs model: weight and optimizer bytes against hand counts
of a live model under each ZeRO stage, how activations scale, the per-layer count against
what autograd really keeps (one process and emulated Ulysses ranks, padded and padding-free
rows, shared prefix), Ulysses' exchange, the LM head's chunks and the chunked encoding
against the storages torch allocates, the packing against pack_groups, agreement with
perf/flops.py, the layouts our code runs, the recorded CPU measurements, and the command
line."""

import types
from dataclasses import replace

import pytest
import torch
import torch.distributed as dist

import harness.parallel.ulysses as ulysses
from harness.model.build import init_model
from harness.parallel.ulysses import spread_kv_heads
from perf import model as pm
from perf.flops import llm_forward_flops, llm_linear_flops_per_token, step_flops, vila_frame_costs
from perf.model_arch import qwen2_5_vl_3b, toy_arch
from perf.model_memory import (
    ENCODE_CHUNK,
    GIB,
    LOGIT_CHUNK,
    PHASES,
    Setup,
    batch_shape,
    encode_terms,
    exchange_bytes,
    heads,
    layer_bytes_per_token,
    micro_batches,
    policy_state,
    predict,
    train_activations,
)
from perf.model_validate import (
    TensorPeak,
    cpu_setup,
    encode_peak,
    head_peak,
    perf_batch,
    predicted_saved_bytes,
    saved_activation_bytes,
)


def _setup(**kw) -> Setup:
    base = dict(frames=16, prompts=2, n=4, response=32, micro_batch=4, shared_prefix=True, checkpointing=False, dp=1,
                sp=1, zero_stage=0, weight_bytes=4, compute_bytes=4, reference=True, engine="hf", vllm_util=0.5,
                vllm_kv_gib=None, vllm_sleep=False, device_gib=80.0, on_gpu=False, padding_free=False)
    return Setup(**{**base, **kw})


@pytest.fixture(scope="module")
def tiny():
    return toy_arch("vila", "tiny"), init_model("vila", "tiny")


@pytest.fixture(scope="module")
def perf_arch():
    return toy_arch("vila", "perf")


def test_weights_gradients_and_adamw_bytes_per_zero_stage(tiny):
    arch, model = tiny
    llm = list(model.llm.parameters())
    pt = sum(p.numel() for p in llm)
    pf = sum(p.numel() for m in model.vision_modules() for p in m.parameters())
    unit = max(sum(p.numel() for p in model.llm.model.layers[0].parameters()),
               model.llm.model.embed_tokens.weight.numel(), model.llm.lm_head.weight.numel())
    biggest = max(p.numel() for p in llm)
    assert (arch.trainable, arch.frozen, arch.largest_unit, arch.largest_tensor) == (pt, pf, unit, biggest)
    s = _setup(dp=2, sp=2)  # 4 ranks, fp32 weights
    expected = {  # update phase: (weights, gradients, AdamW moments) in bytes
        0: ((pt + pf) * 4, pt * 4, 8 * pt),
        1: ((pt + pf) * 4, pt * 4, 8 * max(pt / 4, biggest)),  # whole tensors per rank
        2: ((pt + pf) * 4, pt * 4 / 4 + unit * 4, 8 * pt / 4),
        3: (pt * 4 / 4 + 2 * unit * 4 + pf * 4, pt * 4 / 4 + unit * 4, 8 * pt / 4),
    }
    for stage, (weights, grads, adam) in expected.items():
        got = policy_state(arch, s.with_(zero_stage=stage), "update")
        assert (got["weights"], got["grads"], got["adam"]) == pytest.approx((weights, grads, adam)), stage
        assert got["autocast_copies"] == 0
    # outside the update no gradients, and ZeRO-3 has gathered the full weights again
    outside = policy_state(arch, s.with_(zero_stage=3), "logprob")
    assert outside["grads"] == 0 and outside["weights"] == (pt + pf) * 4
    # bf16 autocast over fp32 master weights: autocast's bf16 copy of every trained weight, from
    # the first forward under autocast (log-probs; the HF engine's rollout) until Run.update clears it
    mixed = s.with_(compute_bytes=2)
    copies = {(e, ph): policy_state(arch, mixed.with_(engine=e), ph)["autocast_copies"]
              for e in ("hf", "vllm") for ph in PHASES}
    assert copies == {("hf", "encode"): 0, ("hf", "rollout"): 2 * pt, ("hf", "logprob"): 2 * pt,
                      ("hf", "update"): 2 * pt, ("vllm", "encode"): 0, ("vllm", "rollout"): 0,
                      ("vllm", "logprob"): 2 * pt, ("vllm", "update"): 2 * pt}
    # the reference model: a whole copy in the compute dtype
    assert predict(arch, s.with_(compute_bytes=2)).terms["reference"] == (pt + pf) * 2


def test_activations_scale_with_tokens_and_drop_with_checkpointing_and_sp(tiny):
    arch, _ = tiny
    h, i, layers = arch.llm.hidden_size, arch.llm.intermediate_size, arch.llm.num_hidden_layers
    s = _setup(shared_prefix=False)
    one, two = (train_activations(arch, s, batch_shape(s, [1, 1], w - 32)) for w in (1000, 2000))
    per_token = layer_bytes_per_token(h, i, s)
    assert per_token == 4 * (10 * h + 4 * i)
    assert one["layers"] == layers * per_token * 2000
    for key in ("layers", "final_norm", "backward"):
        assert two[key] == 2 * one[key]
    ckpt = train_activations(arch, s.with_(checkpointing=True), batch_shape(s, [1, 1], 968))
    assert ckpt["layers"] == layers * 4 * h * 2000 + per_token * 2000  # the layer inputs + one layer
    assert ckpt["layers"] < one["layers"]  # (2 layers here; the 7B's 28 keep 28 inputs and one layer)
    # bf16 autocast: the norm math stays fp32, the matmul inputs are bf16 casts
    assert layer_bytes_per_token(h, i, s.with_(compute_bytes=2)) == 4 * 4 * h + 2 * (9 * h + 4 * i)
    # SP 2 halves the per-token terms; beside them the received q|k|v buffer's KV part and
    # SDPA's own output (no longer o_proj's input); the packed embeddings stay whole on every rank
    s2 = s.with_(sp=2)
    b1, b2 = batch_shape(s, [1, 1], 968), batch_shape(s2, [1, 1], 968)
    a1, a2 = train_activations(arch, s, b1), train_activations(arch, s2, b2)
    assert b2.local == b1.width // 2
    kv = 2 * h // arch.llm.num_attention_heads * arch.llm.num_key_value_heads  # Ulysses' k, v beside q|k|v
    assert a2["layers"] == pytest.approx(a1["layers"] / 2 + layers * 2 * b2.local * 4 * (kv + h))
    assert a2["embeds_full"] == pytest.approx(2 * b1.width * h * 4 / 2) and a1["embeds_full"] == 0
    # shared prefix: per layer and response the concatenated prefix + response K and V, the
    # rank's heads wide (split by SP), SDPA's outputs beside o_proj's input and, on CPU only,
    # the materialised [r, p + r] float bias (one per response, whatever the heads)
    for sp in (1, 2):
        b = batch_shape(_setup(sp=sp), [4], 968)  # 968 + 4 x 32 = 1096 tokens, one row
        assert (b.rows, b.width, b.shared) == (1, 1096, (True,))
        base = (per_token + (4 * kv if sp > 1 else 0)) * 1096 / sp  # SP: the q|k|v buffer's KV part
        cats, bias, outputs = 4 * 2 * 1000 * h / sp * 4, 4 * 32 * 1000 * 4, 1096 * h / sp * 4
        got = train_activations(arch, _setup(sp=sp), b)["layers"]
        assert got == pytest.approx(layers * (base + outputs + cats + bias))
        on_gpu = train_activations(arch, _setup(sp=sp, on_gpu=True), b)["layers"]
        assert got - on_gpu == pytest.approx(layers * bias)


def _widths(x) -> tuple[int, int, int, int]:
    return x.attended, x.buffer, x.before, x.after


def test_ulysses_pads_heads_sp_does_not_divide():
    """ulysses.py: 28 heads over SP 8 run (no refusal) as 32 heads, k and v repeated to 28 and
    padded with q: the buffer, SDPA's q, k, v and output widen by 32/28, and under bf16
    autocast the exchange carries them (with the copies made for it) in bf16."""
    from perf.model_arch import longvila_r1_7b

    vila, qwen = longvila_r1_7b(), qwen2_5_vl_3b()
    assert spread_kv_heads(4, 28, 8) == 0 and spread_kv_heads(4, 28, 4) == 1
    d = 3584 // 28
    assert _widths(heads(vila.llm, 8)) == (32 * d, 3 * 32 * d, 3 * 32 * d, 0)
    assert _widths(heads(vila.llm, 4)) == (28 * d, (28 + 8) * d, 0, 2 * 28 * d)  # KV heads 4 / 4: repeated after
    assert _widths(heads(qwen.llm, 8)) == (2048, 2048 + 2 * 1024, 2 * 1024, 2 * 2048)  # 2 KV heads x 4 before, x 2 after
    s8 = _setup(dp=1, sp=8, frames=256, prompt_tokens=65_992, response=1024, n=8, prompts=1, micro_batch=8,
                compute_bytes=2, on_gpu=True, padding_free=True)
    pad = predict(vila, s8).details
    tokens = (65_992 + 8 * 1024) // 8
    assert pad["attention/qkv"] == pytest.approx(tokens * 2 * 3 * 4 * d)  # the bf16 buffer: 4 more heads each
    # q and k as rotary leaves them (fp32, 28 + 4 heads), v (bf16, 4), then in bf16 the
    # repeated and padded copies (3 x 32 heads; the casts replaced by them), the send buffer
    # and the received pieces (the concatenation is kept)
    assert pad["attention/exchange"] == pytest.approx(tokens * (4 * 32 + 2 * 4 + 2 * (96 + 2 * 96)) * d)
    assert pad["train/backward"] == max(pad["attention/exchange"], tokens * (2 * 2 * 18944 + 4 * 3584))
    # the 3B under SP 8 (KV heads 2 x 4 before, x 2 after): SDPA keeps views of the bf16
    # buffer and k, v repeated after it; in flight the fp32 q and k, v, q's cast, the copies, two buffers
    s3 = s8.with_(prompt_tokens=216_200, response=2048, n=5, micro_batch=5)
    hour = predict(qwen, s3).details
    local = (216_200 + 5 * 2048) // 8
    assert hour["attention/qkv"] == pytest.approx(local * 2 * (4096 + 4096 - 3 * 2048))
    assert hour["attention/exchange"] == pytest.approx(local * (4 * 2304 + 2 * 256 + 2 * (2048 + 2048 + 2 * 4096)))


def _emulate_exchange(monkeypatch, sp: int) -> None:
    """Rank sp - 1 of an SP group of `sp` in this process, comm.py's all-to-all itself run
    (its chunks, received pieces and concatenation), the collective copying this rank's
    own pieces (values meaningless, allocations as on a real rank)."""
    monkeypatch.setattr(dist, "get_world_size", lambda group=None: sp)
    monkeypatch.setattr(dist, "get_rank", lambda group=None: sp - 1)
    monkeypatch.setattr(dist, "all_to_all",
                        lambda outs, ins, group=None: [o.copy_(i) for o, i in zip(outs, ins, strict=True)])


@pytest.mark.parametrize("sp, q_heads, kv_heads", [(2, 4, 2), (4, 4, 2), (3, 4, 2), (8, 16, 2), (8, 28, 4)])
def test_exchange_bytes_are_what_ulysses_allocates(monkeypatch, sp, q_heads, kv_heads):
    """At attention (after the q|k|v exchange) the storages alive and the peak so far,
    counted as torch allocates them: q and k as rotary leaves them (fp32), v, then in the
    compute dtype (bf16 under autocast: `autocast_inputs` before the exchange) the casts,
    the copies made for the exchange, the send buffer, the received pieces and their
    concatenation; a non-contiguous chunk copy per rank with 2+ rows. KV heads repeated after
    (SP 2), before (SP 4, the 3B's SP 8) and every head padded (SP 3, the 7B's 28 over SP 8)."""
    _emulate_exchange(monkeypatch, sp)
    d, local = 16, 12
    llm = types.SimpleNamespace(hidden_size=q_heads * d, num_attention_heads=q_heads, num_key_value_heads=kv_heads)
    seen = {}

    def attend(q, k, v, peak):
        seen["peak"] = peak.peak  # the exchange done, attention not yet run
        return torch.zeros_like(q)

    for bf16, rows in ((False, 1), (True, 1), (True, 2)):
        precision = torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else torch.autocast("cpu", enabled=False)
        with TensorPeak() as peak, precision:
            q, k = torch.randn(rows, q_heads, local, d), torch.randn(rows, kv_heads, local, d)
            v = torch.randn(rows, kv_heads, local, d, dtype=torch.bfloat16 if bf16 else torch.float32)
            ulysses.ulysses_attention(q, k, v, lambda q, k, v: attend(q, k, v, peak), None)
        s = _setup(sp=sp, compute_bytes=2 if bf16 else 4)
        # nothing kept (a no-grad pass): every buffer counts; in training the concatenation is kept
        assert seen["peak"] == exchange_bytes(llm, s, rows, kept=False) * rows * local, (bf16, rows)
        geo = heads(llm, sp)
        assert exchange_bytes(llm, s, rows, kept=False) - exchange_bytes(llm, s, rows, kept=True) == \
            geo.buffer * (2 if bf16 else 4)


def test_rows_follow_pack_groups():
    """micro_batches as rl_update.pack_samples groups samples, and batch_shape's rows, width
    and busiest rank's logits as batch.py pack_groups and model/sp.py lay them out, padded
    and padding-free, for SP 1-4."""
    assert micro_batches(_setup(prompts=2, n=4, micro_batch=4)) == [[4], [4]]
    assert micro_batches(_setup(prompts=2, n=4, micro_batch=8)) == [[4, 4]]
    assert micro_batches(_setup(prompts=2, n=4, micro_batch=3)) == [[3], [1, 2], [2]]
    assert micro_batches(_setup(prompts=1, n=4, micro_batch=4, shared_prefix=False)) == [[1, 1, 1, 1]]
    model = init_model("vila", "tiny", seed=0)
    for groups in ([4], [1, 2], [1, 1, 1]):
        for free in (False, True):
            batch, prompt = perf_batch(model, 4, groups, 7, free)
            index = batch.response_index[batch.response_mask]
            for sp in (1, 2, 3, 4):
                b = batch_shape(_setup(sp=sp, response=7, padding_free=free), groups, prompt)
                width = batch.segments.shape[1]
                assert (b.rows, b.width, b.real_tokens) == (batch.segments.shape[0], -(-width // sp) * sp,
                                                             int((batch.segments >= 0).sum()))
                assert b.logit_tokens == max(int(((index >= r * b.local) & (index < (r + 1) * b.local)).sum())
                                             for r in range(sp))
                # padded rows: the shared path for every row once any has 2+ responses; padding-free: per group
                assert b.shared == (tuple(g > 1 for g in groups) if free else (max(groups) > 1,) * len(groups))


def _emulate_sp(monkeypatch, sp: int, rank: int):
    """Rank `rank` of an SP group of `sp` in this one process: the all-to-alls return pieces of
    this rank's own tensors in the shapes the real exchange gives (values meaningless), so
    autograd saves what it saves on a real rank (perf.model --validate checks against real
    gloo ranks)."""
    import torch.distributed as dist

    monkeypatch.setattr(dist, "get_world_size", lambda group=None: sp)
    monkeypatch.setattr(dist, "get_rank", lambda group=None: rank)
    monkeypatch.setattr(ulysses, "all_to_all", lambda x, scatter, gather, group: torch.cat(
        x.chunk(sp, dim=scatter), dim=gather))
    return object()


CASES = [  # (shared prefix, padding-free, bf16 autocast, SP size)
    (False, False, False, 1), (False, False, True, 1), (True, False, False, 1), (True, True, False, 1),
    (False, True, False, 1), (False, True, True, 1), (True, False, True, 1), (True, True, True, 1),
    (False, False, False, 2), (True, True, False, 3), (True, True, True, 3), (False, False, True, 3),
    (False, True, False, 3), (True, False, False, 4), (False, True, True, 2), (True, False, True, 4),
]


@pytest.fixture(scope="module")
def perf_model():
    return init_model("vila", "perf", seed=0).train()  # forward passes only: shared by the cases


@pytest.mark.parametrize("shared, free, bf16, sp", CASES)
def test_per_layer_count_matches_what_autograd_keeps(perf_arch, perf_model, monkeypatch, shared, free, bf16, sp):
    """The formula's bytes against the tensors autograd saves in a real forward of the perf
    model (4 heads, 2 KV heads: SP 2 repeats KV heads after the exchange, SP 3 pads the heads
    to 6, SP 4 repeats KV heads before it), fp32 and bf16 autocast, padded and padding-free
    rows, shared prefix or not; under SP the last rank (the one forming the logits). The LM
    head's checkpointed chunks save their inputs only (no fp32 log-softmax)."""
    groups = [4, 2] if shared else [1] * 4
    batch, prompt = perf_batch(perf_model, 16, groups, 32, free)
    group = _emulate_sp(monkeypatch, sp, sp - 1) if sp > 1 else None
    measured, owned = saved_activation_bytes(perf_model, batch, bf16, group)
    s = _setup(prompts=1, n=4, response=32, micro_batch=6, shared_prefix=shared, compute_bytes=2 if bf16 else 4,
               sp=sp, padding_free=free)
    assert predicted_saved_bytes(perf_arch, s, groups, prompt, owned) == pytest.approx(measured, rel=0.02)  # <= 1%


def test_chunk_sizes_are_the_code_s():
    from harness.model import batch as batch_mod
    from harness.model.interface import VideoLM

    assert (ENCODE_CHUNK, LOGIT_CHUNK) == (VideoLM.encode_chunk, batch_mod.LOGIT_CHUNK)
    assert (Setup.encode_chunk, Setup.logit_chunk) == (ENCODE_CHUNK, LOGIT_CHUNK)


def test_lm_head_keeps_its_input_and_one_chunk_of_logits_in_backward():
    """logprobs_at over more response tokens than a chunk: autograd saves the final states
    and the ids (the chunks are recomputed), and the backward's peak is one chunk's fp32
    log-softmax, its dense gradient and its input gradient (the model's `logits` and
    `logit_states`); all tokens in one chunk peak at all tokens' logits."""
    tokens, hidden, vocab = 1500, 32, 4096
    llm = types.SimpleNamespace(hidden_size=hidden, intermediate_size=1, num_hidden_layers=0, vocab_size=vocab,
                                num_attention_heads=1, num_key_value_heads=1)
    arch = types.SimpleNamespace(llm=llm)
    for chunk in (256, tokens):
        s = _setup(logit_chunk=chunk, response=tokens)
        b = replace(batch_shape(s, [1], 0), logit_tokens=tokens)  # one response, every token's logit
        t = train_activations(arch, s, b)
        peak, saved = head_peak(tokens, hidden, vocab, chunk)
        assert saved == t["logit_states"] == tokens * (hidden * 4 + 3 * 8 + 1)  # states; ids, indices, mask
        assert peak == pytest.approx(t["logits"] + t["logit_states"], rel=0.01)
        gradient = tokens * hidden * 4 if chunk < tokens else 0  # the states', as the chunks accumulate it
        assert t["logits"] == min(chunk, tokens) * vocab * 12 + gradient
    # unchunked (the code before 50a89da): the kept fp32 log-softmax too
    unchunked, chunked = (predicted_saved_bytes(arch, _setup(logit_chunk=c, response=tokens), [1], 0, tokens)
                          for c in (None, 256))
    assert unchunked - chunked == tokens * vocab * 4


@pytest.mark.parametrize("chunk", [None, 8, 4])
def test_encoding_peak_follows_the_chunk(tiny, chunk):
    """encode_units with the tower on `chunk` units per call (None: all in one), as torch
    allocates it: the larger of the last call (the tower's hidden states of its frames, one
    layer's MLP and q/k/v, the outputs so far) and the concatenation of the calls' outputs
    (twice the video's embeddings). (SigLIP; Qwen's tower keeps more: see perf/model.py.)"""
    arch, model = tiny
    t = encode_terms(arch, cpu_setup(frames=64, encode_chunk=chunk))
    assert (t["cat"] >= t["call"]) == (chunk == 4)  # 4 frames per call: the outputs' moment
    assert encode_peak(model.eval(), 64, chunk) == pytest.approx(max(t["call"], t["cat"]), rel=0.05)


def test_flops_agree_with_perf_flops(perf_arch):
    s = _setup(frames=64)
    prompt = perf_arch.prompt_tokens(64)
    model = pm.model_flops(perf_arch, s, prompt)
    assert model == step_flops(perf_arch.vision_config, perf_arch.llm, frames=64, prompts=2, prefix=prompt, n=4,
                               response=32, reference=True)["total"]
    assert perf_arch.vision_flops_per_frame(64) == vila_frame_costs(perf_arch.vision_config, perf_arch.llm)[
        "vision_gflop_per_frame"] * 1e9
    # one prompt copy per group (micro-batch = n): the step runs the model FLOPs and the LM
    # head once more over every response token (backward recomputes its chunks' logits)
    head = 2 * 4 * 32 * 2 * perf_arch.llm.hidden_size * perf_arch.llm.vocab_size
    assert pm.executed_flops(perf_arch, s, prompt) == pytest.approx(model + head)
    assert pm.executed_flops(perf_arch, s.with_(logit_chunk=None), prompt) == pytest.approx(model)
    one, grouped = (llm_forward_flops(perf_arch.llm, prompt, k, 32) for k in (1, 4))
    rows = pm.executed_flops(perf_arch, s.with_(shared_prefix=False, micro_batch=1), prompt)
    assert rows - model - head == pytest.approx(5 * 2 * (4 * one - grouped))  # old, ref, update x3: prompt per response
    # checkpointing recomputes the layers too: a whole forward
    assert pm.executed_flops(perf_arch, s.with_(checkpointing=True), prompt) - model == pytest.approx(2 * grouped)
    r = pm.evaluate(perf_arch, s.with_(frames=64), mfu=0.5, peak_flops=1e12)
    assert r["seconds"] == pytest.approx(r["executed_flops"] / (1 * 1e12 * 0.5))


def test_layouts_our_code_refuses():
    from perf.model_arch import longvila_r1_7b

    vila, qwen = longvila_r1_7b(), qwen2_5_vl_3b()
    s = _setup(dp=1, sp=8)
    assert pm.refusal(vila, s) is None  # 28 heads over SP 8: Ulysses pads them to 32
    assert pm.refusal(vila, s.with_(sp=4, dp=2, zero_stage=3)) is None
    assert "tied embeddings" in pm.refusal(qwen, s.with_(zero_stage=3))  # tied embeddings: no FSDP units
    assert pm.refusal(qwen, s.with_(zero_stage=1)) is None
    assert pm.refusal(vila, s.with_(sp=1, zero_stage=2)) == "ZeRO-2 needs 2+ ranks"
    assert qwen.tokens_per_frame(3600) == 60  # Long-RL's pixel bounds on a 720p frame
    layouts = pm.candidates(vila, s, 8)
    assert {c.sp for c in layouts} == {1, 2, 4, 8} and {c.padding_free for c in layouts} == {False, True}
    assert {c.zero_stage for c in pm.candidates(qwen, s, 8)} == {0, 1}


def test_recorded_cpu_memory_within_ten_percent(perf_arch):
    """The memory suite's recorded per-rank peaks (perf/results/memory.json), each predicted as
    the code that recorded it ran (padded or padding-free rows, stored or checkpointed), with
    vLLM's CPU runtime as --validate measured it (0.244 GiB on the 2-core machine)."""
    from perf.model_validate import memory_suite_rows

    rows = memory_suite_rows(perf_arch, runtime_gib=0.244)
    assert len(rows) >= 6  # SP 1 and 2 at 128, 256, 512 frames when recorded
    for name, measured, predicted in rows:
        assert abs(predicted - measured) / measured < 0.1, name


def test_cli_prints_tables_for_the_7b_config(capsys):
    assert pm.main(["--config", "configs/rl/longvila-7b-8gpu.yaml", "--frames", "256", "1024"]) == 0
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.startswith(("| 256 |", "| 1024 |"))]
    assert len(rows) == 4  # as configured, and the cheapest mode, per frame count
    assert "longvila-r1-7b" in out and "refused" not in out  # SP 8 runs now (padded heads)
    assert "As configured (SP 8 x DP 1, ZeRO 3, shared prefix, micro 8, padding-free, vLLM 0.35)" in out


@pytest.mark.parametrize("argv, message", [
    (["--config", "configs/rl/nope.yaml"], "does not exist"),
    (["--config", "configs/rl/longvila-7b-8gpu.yaml", "--frames", "0"], "--frames must be in"),
    (["--config", "configs/rl/longvila-7b-8gpu.yaml", "--frames", "many"], "whole numbers"),
    (["--frames", "256"], "--config is required"),
])
def test_cli_errors_are_one_line_and_exit_2(capsys, argv, message):
    try:
        code = pm.main(argv)
    except SystemExit as stop:
        code = stop.code
    err = capsys.readouterr().err.strip()
    assert code == 2 and message in err and len(err.splitlines()) == 1


def test_hour_config_read_as_written():
    """The Qwen2.5-VL-3B hour-long config: ZeRO-1 (not refused), padding-free rows, vLLM asleep
    in the log-prob and update passes (rollout.vllm_sleep), a sane per-GPU size."""
    from harness.config import RLConfig, load_config

    cfg = load_config("configs/rl/qwen2_5-vl-3b-hour-8gpu.yaml", [], RLConfig)
    s = pm.setup_from_config(cfg, 3600, 80.0, 1.5)
    arch = qwen2_5_vl_3b(cfg.model.video_pixels)
    assert (s.zero_stage, s.padding_free, s.vllm_sleep) == (1, True, True) and pm.refusal(arch, s) is None
    p = predict(arch, s)
    assert p.prompt_tokens == 3600 * 60 + 200
    assert 10 * GIB < p.peak < 200 * GIB and p.peak_phase in PHASES
    awake = predict(arch, pm.setup_from_config(load_config(
        "configs/rl/qwen2_5-vl-3b-hour-8gpu.yaml", ["rollout.vllm_sleep=false"], RLConfig), 3600, 80.0, 1.5))
    engine = 0.4 * 80 * GIB
    for phase in PHASES:  # asleep: the engine's share comes back for the two training passes
        gone = engine if phase in ("logprob", "update") else 0.0
        assert awake.phases[phase] - p.phases[phase] == pytest.approx(gone)


def test_padded_rows_execute_their_padding(perf_arch):
    """Groups of unequal size (micro-batch 3 of 4 responses: [3], [1, 2], [2]): padded rows
    run the linear layers over the shorter group's padding; padding-free rows do not."""
    s = _setup(frames=64, micro_batch=3)
    prompt = perf_arch.prompt_tokens(64)
    padded, free = (pm.executed_flops(perf_arch, s.with_(padding_free=f), prompt) for f in (False, True))
    passes = 1 + 1 + 3  # old, reference, update
    assert padded - free == pytest.approx(passes * 32 * llm_linear_flops_per_token(perf_arch.llm))
