"""Rank functions for the distributed tests (module level so that spawn can import them).

Each compares, inside every rank, the parallel computation with the single-process one
on the same weights (models are built from the same seed on every rank)."""

from __future__ import annotations

import numpy as np
import torch
import torch.distributed as dist

from harness.model.batch import pack_groups, pack_sequences
from harness.model.build import init_model
from harness.model.sp import sp_local_logprobs, sp_response_logprobs
from harness.parallel.encode import encode_split
from harness.parallel.groups import build_layout


def _video(model, seed: int, frames: int):
    rng = np.random.default_rng(seed)
    return model.preprocess(rng.integers(0, 256, (frames, 48, 64, 3), dtype=np.uint8), np.arange(frames) * 0.5)


def stage1_encode(rank: int, world: int, family: str, frame_counts: list[int]) -> list[float]:
    """Max |parallel - single| of the video embeddings for each frame count."""
    layout = build_layout(1, world)
    model = init_model(family, "tiny", seed=0)
    errors = []
    with torch.no_grad():
        for k, frames in enumerate(frame_counts):
            pixels = _video(model, k, frames)
            full = model.encode_video(pixels).embeds  # [U, T, D]
            def encode_slice(a, b, pixels=pixels):
                return model.encode_video(pixels.select(a, b)).embeds

            split = encode_split(pixels.units.shape[0], encode_slice, layout.sp_group)
            errors.append(float((split - full).abs().max()) if split.shape == full.shape else float("inf"))
    return errors


def _samples(model, cases, seed):
    """cases: list of (frames, question_len, response lengths): an int for one response, a
    tuple for a prompt with several. Returns (prompts [P], responses [P][g])."""
    rng = np.random.default_rng(seed)
    prompts, responses = [], []
    for k, (frames, q_len, r_lens) in enumerate(cases):
        video = model.encode_video(_video(model, seed * 100 + k, frames))
        prompts.append(model.build_prompt(model.chat_prompt_ids("x" * q_len), video))
        lens = (r_lens,) if isinstance(r_lens, int) else r_lens
        responses.append([torch.from_numpy(rng.integers(5, 500, r)) for r in lens])
    return prompts, responses


def _batch(model, cases, seed, share: bool = False, padding_free: bool = False):
    """The packed batch of `cases`: each prompt's responses behind one copy of it (`share`),
    or one group per response; groups in padded rows or one unpadded row (`padding_free`)."""
    prompts, responses = _samples(model, cases, seed)
    if share:
        return pack_groups(model, prompts, responses, padding_free)
    return pack_sequences(model, [p for p, rs in zip(prompts, responses, strict=True) for _ in rs],
                          [r for rs in responses for r in rs], padding_free)


def _reference(model, cases, seed) -> torch.Tensor:
    """[N, R] log-probs of every response, one unpadded sequence at a time through the LLM's
    own attention: the plain single-process computation."""
    prompts, responses = _samples(model, cases, seed)
    rows = [model.response_logprobs(p, r) for p, rs in zip(prompts, responses, strict=True) for r in rs]
    out = torch.zeros(len(rows), max(r.shape[0] for r in rows))
    for i, r in enumerate(rows):
        out[i, : r.shape[0]] = r
    return out


def stage2_logprobs_and_grads(rank: int, world: int, family: str, cases: list, seed: int,
                              share: bool = False, checkpointing: bool = False, padding_free: bool = False) -> dict:
    """SP log-probs vs single-process ones, and the gradients of a weighted sum (the SP
    passes with activation checkpointing when asked: its recomputation runs the all-to-alls
    again in backward)."""
    layout = build_layout(1, world)
    model = init_model(family, "tiny", seed=0)
    model.zero_grad()
    ref = _reference(model, cases, seed)  # [N, R]
    weights = torch.from_numpy(np.random.default_rng(seed + 1).normal(size=ref.shape)).float()
    (ref * weights).sum().backward()
    ref_grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    # sequence parallel: each rank's loss covers the tokens it owns; gradients summed over ranks
    model.zero_grad()
    if checkpointing:
        model.set_activation_checkpointing(True)
        model.train()
    local, _ = sp_local_logprobs(model, _batch(model, cases, seed, share, padding_free), layout.sp_group)
    (local * weights).sum().backward()
    grads = {}
    for n, p in model.named_parameters():
        if p.grad is not None:
            dist.all_reduce(p.grad, group=layout.sp_group)
            grads[n] = p.grad
    with torch.no_grad():
        full = sp_response_logprobs(model, _batch(model, cases, seed, share, padding_free), layout.sp_group)
    logp_err = float((full - ref.detach()).abs().max())
    grad_err = max(float((grads[n] - g).abs().max()) for n, g in ref_grads.items())
    grad_scale = max(float(g.abs().max()) for g in ref_grads.values())
    missing = sorted(set(ref_grads) ^ set(grads))
    return {"logp_err": logp_err, "grad_err": grad_err, "grad_scale": grad_scale, "missing": missing}


def stage2_batch_invariance(rank: int, world: int, family: str, cases: list, seed: int) -> dict:
    """Per-sample SP log-probs do not depend on the micro-batch they are computed in, nor
    on the order of the batch."""
    layout = build_layout(1, world)
    model = init_model(family, "tiny", seed=0)
    with torch.no_grad():
        whole_resp = sp_response_logprobs(model, _batch(model, cases, seed), layout.sp_group)  # [N, R]
        errs = []
        for micro in (1, 2, 4):
            for lo in range(0, len(cases), micro):
                part_cases = cases[lo : lo + micro]
                b = _batch_subset(model, cases, seed, range(lo, lo + len(part_cases)))
                resp = sp_response_logprobs(model, b, layout.sp_group)
                width = resp.shape[1]
                errs.append(float((resp - whole_resp[lo : lo + len(part_cases), :width]).abs().max()))
        perm = list(np.random.default_rng(seed).permutation(len(cases)))
        b = _batch_subset(model, cases, seed, perm)
        resp = sp_response_logprobs(model, b, layout.sp_group)
        width = resp.shape[1]
        errs.append(float((resp - whole_resp[perm, :width]).abs().max()))
    return {"max_err": max(errs)}


def _batch_subset(model, cases, seed, order):
    """The batch of `cases` restricted to `order`, with each sample built exactly as in the
    full batch (same video seed and response)."""
    full_rng = np.random.default_rng(seed)
    responses = [torch.from_numpy(full_rng.integers(5, 500, r)) for _, _, r in cases]
    prompts = []
    for k in order:
        frames, q_len, _ = cases[k]
        video = model.encode_video(_video(model, seed * 100 + k, frames))
        prompts.append(model.build_prompt(model.chat_prompt_ids("x" * q_len), video))
    return pack_sequences(model, prompts, [responses[k] for k in order])


def rl_run(rank: int, world: int, overrides: list[str]) -> dict:
    """A few full RL steps under torch.distributed; returns this rank's final weights."""
    return rl_run_config(rank, world, "configs/rl/toy-cpu.yaml", overrides)


def rl_run_config(rank: int, world: int, config: str, overrides: list[str]) -> dict:
    """`rl_run` from another config file."""
    from harness.config import RLConfig, load_config
    from harness.trainer.rl import train_rl

    cfg = load_config(config, overrides, RLConfig)
    policy_state = {}

    train_rl(cfg)
    from harness.model.build import load_model

    if rank == 0:
        policy_state = {k: v.clone() for k, v in load_model(cfg.run.out_dir + "/final").state_dict().items()}
    return policy_state


def pitfall_positions(rank: int, world: int) -> dict:
    """REFERENCE pitfall 1: the trainer must score rollouts with the positions the engine
    sampled them with (3-D M-RoPE for qwen2_5_vl). Returns the engine-vs-SP-trainer gap and
    the gap the authors' 1-D positions would have produced."""
    from harness.rollout import HFEngine, SamplingConfig

    layout = build_layout(1, world)
    model = init_model("qwen2_5_vl", "tiny", seed=0)
    with torch.no_grad():
        video = model.encode_video(_video(model, 3, 8))
        prompt = model.build_prompt(model.chat_prompt_ids("where did it go?"), video)
        (out,) = HFEngine(model).generate([prompt], SamplingConfig(n=1, max_new_tokens=6, seed=1))
        batch = pack_sequences(model, [prompt], [out.token_ids])
        sp = sp_response_logprobs(model, batch, layout.sp_group)[0]
        length = batch.positions.shape[-1]
        batch.positions = torch.arange(length).expand(3, 1, length).clone()  # what a 1-D trainer uses
        wrong = sp_response_logprobs(model, batch, layout.sp_group)[0]
    return {"gap": float((sp - out.logprobs).abs().max()), "gap_1d": float((wrong - out.logprobs).abs().max())}


def pitfall_frame_split(rank: int, world: int) -> dict:
    """REFERENCE pitfall 2: with a micro-batch of several videos, each video's frames are
    split across ranks on their own; every video gets exactly its own embeddings."""
    from harness.data.video import VideoClip
    from harness.trainer.videos import StepVideoCache

    layout = build_layout(1, world)
    model = init_model("vila", "tiny", seed=0)
    cache = StepVideoCache(model, reuse=True, sp_group=layout.sp_group)
    errors = []
    for k, frames in enumerate((3, 6)):  # different lengths, odd and even
        rng = np.random.default_rng(10 + k)
        clip = VideoClip(rng.integers(0, 256, (frames, 48, 64, 3), dtype=np.uint8), np.arange(frames),
                         np.arange(frames) * 0.5, 2.0, frames, frames / 2, f"v{k}.mp4")
        got = cache.get(f"v{k}", clip).embeds
        with torch.no_grad():
            want = model.encode_frames(clip.frames, clip.timestamps).embeds
        errors.append(float((got - want).abs().max()) if got.shape == want.shape else float("inf"))
    return {"errors": errors}


def pitfall_last_rank_slice(rank: int, world: int, family: str) -> dict:
    """REFERENCE pitfall 4: the last rank's slice holds the end of the video, the trailing
    text and the padding; its log-probs must equal the single-process ones. The prompt is
    built so that the slice boundary falls inside the video and the text after the video
    is long."""
    layout = build_layout(1, world)
    model = init_model(family, "tiny", seed=0)
    with torch.no_grad():
        video = model.encode_video(_video(model, 4, 6))
        # Search a question/response length whose split boundary lands inside the video
        # and whose total length is odd (so the last slice also carries padding).
        for q_len, r_len in ((q, r) for q in range(1, 30) for r in range(3, 12)):
            prompt = model.build_prompt(model.chat_prompt_ids("y" * q_len), video)
            length = len(prompt) + r_len
            start, end = prompt.spans[0][1:]
            if length % world and start < -(-length // world) < end and length - end > 10:
                break
        response = torch.arange(5, 5 + r_len)
        batch = pack_sequences(model, [prompt], [response])
        ref = model.response_logprobs(prompt, response)  # [R]
        sp = sp_response_logprobs(model, batch, layout.sp_group)[0]  # [R]
    half = -(-length // world)
    start, end = prompt.spans[0][1:]
    on_last = batch.response_index[0] >= half  # tokens predicted from the last rank's slice
    return {"boundary_in_video": start < half < end, "odd_length": length % world != 0,
            "last_slice_tokens": int(on_last.sum()),
            "last_slice_err": float((sp[on_last] - ref[on_last]).abs().max())}


def rl_run_resume(rank: int, world: int, first: list[str], second: list[str]) -> dict:
    """Run, then resume into the same out_dir with more steps (exercises checkpoints of a
    sharded optimizer)."""
    from harness.config import RLConfig, load_config
    from harness.model.build import load_model
    from harness.trainer.rl import train_rl

    train_rl(load_config("configs/rl/toy-cpu.yaml", first, RLConfig))
    cfg = load_config("configs/rl/toy-cpu.yaml", second, RLConfig)
    train_rl(cfg, resume=True)
    if rank != 0:
        return {}
    return {k: v.clone() for k, v in load_model(cfg.run.out_dir + "/final").state_dict().items()}


def sft_run(rank: int, world: int, first: list[str], second: list[str] | None = None) -> dict:
    """SFT under torch.distributed (then, with `second`, resumed into the same out_dir);
    returns rank 0's final weights and logged losses."""
    from harness.config import SFTConfig, load_config
    from harness.model.build import load_model
    from harness.trainer.metrics import read_metrics
    from harness.trainer.sft import train_sft

    cfg = load_config("configs/sft/toy-cpu.yaml", first, SFTConfig)
    train_sft(cfg)
    if second is not None:
        cfg = load_config("configs/sft/toy-cpu.yaml", second, SFTConfig)
        train_sft(cfg, resume=True)
    if rank != 0:
        return {}
    weights = {k: v.clone() for k, v in load_model(cfg.run.out_dir + "/final").state_dict().items()}
    rows = [r for r in read_metrics(cfg.run.out_dir + "/metrics.jsonl") if "loss" in r]
    return {"weights": weights, "losses": [r["loss"] for r in rows], "grad_norms": [r["grad_norm"] for r in rows]}


def run_error(rank: int, world: int, recipe: str, overrides: list[str]) -> str | None:
    """A run expected to stop (`recipe`: "sft" or "rl", on its toy-cpu config): this rank's
    RuntimeError message, None if it finished."""
    from harness.config import RLConfig, SFTConfig, load_config
    from harness.trainer.rl import train_rl
    from harness.trainer.sft import train_sft

    config, train = {"sft": (SFTConfig, train_sft), "rl": (RLConfig, train_rl)}[recipe]
    try:
        train(load_config(f"configs/{recipe}/toy-cpu.yaml", overrides, config))
    except RuntimeError as err:
        return str(err)
    return None


def sp_rollout_shares(rank: int, world: int, overrides: list[str]) -> dict:
    """One RL collection under SP = world: how many prompts this rank's engine sampled, and
    the step's samples; rank 0 also samples the same draw alone (one engine, no SP) for
    reference."""
    from harness.config import RLConfig, load_config
    from harness.rollout import HFEngine
    from harness.trainer.rl_collect import collect
    from harness.trainer.run import open_run
    from harness.trainer.videos import StepVideoCache

    class CountingEngine(HFEngine):  # the real engine; it also counts the prompts it is given
        prompts = 0

        def generate(self, prompts, sampling):
            self.prompts += len(prompts)
            return super().generate(prompts, sampling)

    cfg = load_config("configs/rl/toy-cpu.yaml", overrides, RLConfig)
    run = open_run(cfg, resume=False, name="rl")
    run.start(resume=False)
    engine = CountingEngine(run.model)
    videos = StepVideoCache(run.model, reuse=True, sp_group=run.layout.sp_group)
    batch = collect(run, engine, videos, lambda text, key, kind: 0.5, step=0)
    out = {"sampled_here": engine.prompts, "tokens": [s.tokens.tolist() for s in batch.samples],
           "owners": [s.item.record.problem_id for s in batch.samples]}
    if rank == 0:  # the same prompts, all sampled by one engine: what one process would draw
        from harness.rollout.engine import SamplingConfig
        from harness.trainer.rl_collect import _round_seed, prompt_embeds

        items = list({id(s.item): s.item for s in batch.samples}.values())  # in order of first use
        r = cfg.rollout
        alone = HFEngine(run.model).generate(
            [prompt_embeds(run.model, videos, it) for it in items],
            SamplingConfig(n=r.n, temperature=r.temperature, top_p=r.top_p, max_new_tokens=r.max_new_tokens,
                           seed=_round_seed(cfg, 0, 0), prompt_keys=tuple(it.position for it in items)))
        out["alone"] = [o.token_ids.tolist() for o in alone]
    return out


def sp_decode_vs_full(rank: int, world: int, prompt_len: int, new: int, q_len: int, heads: int, seed: int) -> float:
    """Max |difference| between decode attention over a KV cache split along the sequence
    (each rank its slice of a `prompt_len` prompt padded to the world size, plus `new`
    generated tokens' keys in every rank's cache) and plain attention over all keys."""
    from harness.model.sp import local_slice, padded_length
    from harness.parallel.sp_decode import SPDecode, sp_decode_attention

    group = build_layout(1, world).sp_group
    gen = torch.Generator().manual_seed(seed)
    keys, values = (torch.randn(1, heads, prompt_len + new, 8, generator=gen) for _ in range(2))
    query = torch.randn(1, heads, q_len, 8, generator=gen)
    # the reference: the last q_len keys are the queries' own tokens, causal among them
    allowed = torch.ones(q_len, prompt_len + new, dtype=torch.bool)
    allowed[:, prompt_len + new - q_len :] = torch.ones(q_len, q_len).tril().bool()
    want = torch.nn.functional.scaled_dot_product_attention(query, keys, values, attn_mask=allowed)
    chunk = padded_length(prompt_len, world) // world
    local = [torch.cat([local_slice(x[:, :, :prompt_len], 2, group), x[:, :, prompt_len:]], dim=2)
             for x in (keys, values)]  # this rank's cache: its prompt slice, then the new tokens
    step = SPDecode(group, valid=max(0, min(chunk, prompt_len - rank * chunk)), prefill=chunk, owner=rank == world - 1)
    ours = sp_decode_attention(query, local[0], local[1], step, None)
    return float((ours - want).abs().max())


def sp_engine_vs_hf(rank: int, world: int, family: str, cases: list, max_new: int) -> list:
    """(SP greedy tokens == one-process greedy tokens, max |log-prob difference|) per prompt.
    cases: (frames, question length)."""
    from harness.rollout.engine import SamplingConfig
    from harness.rollout.hf_engine import HFEngine
    from harness.rollout.sp_engine import SPGreedyEngine

    layout = build_layout(1, world)
    model = init_model(family, "tiny", seed=0).eval()
    with torch.no_grad():
        prompts = [model.build_prompt(model.chat_prompt_ids("x" * q), model.encode_video(_video(model, k, frames)))
                   for k, (frames, q) in enumerate(cases)]
        sampling = SamplingConfig(greedy=True, max_new_tokens=max_new)
        ours = SPGreedyEngine(model, layout.sp_group).generate(prompts, sampling)
        ref = HFEngine(model).generate(prompts, sampling)
    return [(a.token_ids.tolist() == b.token_ids.tolist(), float((a.logprobs - b.logprobs).abs().max()))
            for a, b in zip(ours, ref, strict=True)]


def ulysses_vs_single(rank: int, world: int, heads: int, kv_heads: int, length: int, seed: int) -> tuple[float, float]:
    """(max |output difference|, max |input-gradient difference|) between Ulysses attention
    over the SP group and causal attention on one process, for any head counts (heads the
    group size does not divide are padded)."""
    from harness.model.attention import RowLayout, repeat_kv_heads, rows_attention
    from harness.model.sp import local_slice, padded_length
    from harness.parallel.ulysses import ulysses_attention

    group = build_layout(1, world).sp_group
    gen = torch.Generator().manual_seed(seed)
    q = torch.randn(1, heads, length, 8, generator=gen, requires_grad=True)
    k, v = (torch.randn(1, kv_heads, length, 8, generator=gen, requires_grad=True) for _ in range(2))
    total = padded_length(length, world)
    layout = RowLayout(torch.zeros(1, length, dtype=torch.long)).padded(total)
    ref = rows_attention(q, repeat_kv_heads(k, heads), repeat_kv_heads(v, heads), layout.__class__(
        layout.segments[:, :length]), None).transpose(1, 2)  # [1, L, H, d]
    weights = torch.randn(ref.shape, generator=gen)
    ref_grads = torch.autograd.grad((ref * weights).sum(), (q, k, v))
    local = [local_slice(x, 2, group).detach().requires_grad_() for x in (q, k, v)]
    out = ulysses_attention(*local, lambda a, b, c: rows_attention(a, b, c, layout, None), group)  # [1, Lc, H, d]
    real = local_slice(torch.ones(1, length, 1, 1), 1, group)  # [1, Lc, 1, 1]: 0 at SP padding
    mine = local_slice(ref, 1, group)
    grads = torch.autograd.grad((out * local_slice(weights, 1, group)).sum(), local)
    grad_err = 0.0
    for g, full in zip(grads, ref_grads, strict=True):
        whole = [torch.zeros_like(g) for _ in range(world)]
        dist.all_gather(whole, g.contiguous(), group=group)
        grad_err = max(grad_err, float((torch.cat(whole, dim=2)[:, :, :length] - full).abs().max()))
    return float(((out - mine) * real).abs().max()), grad_err
