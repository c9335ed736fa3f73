"""Rank functions for the vLLM-under-torch.distributed tests (module level so that spawn can
import them). Every rank builds its own engine, as the trainer does under world size > 1 with
rollout.engine=vllm (with parallel.sp_size > 1 each samples its share of its SP group's prompts)."""

from __future__ import annotations

import copy

import torch
import torch.distributed as dist

from harness.model.build import init_model
from harness.model.interface import VideoLM
from harness.parallel import sharding
from harness.parallel.strategy import sharding_units
from harness.rollout import choose_engine, vllm_engine
from harness.rollout.engine import SamplingConfig
from harness.rollout.hf_engine import HFEngine
from tests.rollout.test_hf_engine import PROMPT_SPECS, make_prompt

GREEDY = SamplingConfig(n=1, greedy=True, max_new_tokens=8)


def _greedy_gap(engine, reference: VideoLM, prompts) -> dict:
    """vLLM's greedy tokens vs the HF engine's on `reference`, and the largest log-prob gap."""
    ours = engine.generate(prompts, GREEDY)
    theirs = HFEngine(reference).generate(prompts, GREEDY)
    return {
        "same_tokens": all(a.token_ids.tolist() == b.token_ids.tolist() for a, b in zip(ours, theirs, strict=True)),
        "logp_gap": max(float((a.logprobs - b.logprobs).abs().max()) for a, b in zip(ours, theirs, strict=True)),
        "tokens": [o.token_ids.tolist() for o in ours],
    }


def engines_per_rank(rank: int, world: int) -> dict:
    """One engine per rank (each on its own prompts): greedy equals HF before and after a
    weight sync; the trainer's world survives the engines (a collective after each step);
    a second engine on a ZeRO-2 sharded model syncs the gathered weights."""
    model = init_model("vila", "toy", seed=0)
    with torch.no_grad():  # different prompts on each rank, as under data parallelism
        prompts = [make_prompt(model, 10 * rank + k, f, q) for k, (f, q) in enumerate(PROMPT_SPECS)]
    out = {"world_vllm": None}
    engine = vllm_engine.VLLMEngine(copy.deepcopy(model), kv_cache_gib=0.25, seed=0)
    from vllm.distributed import parallel_state

    out["world_vllm"] = parallel_state.get_world_group().world_size
    out["tp_ranks"] = parallel_state.get_tp_group().ranks
    out["start"] = _greedy_gap(engine, model, prompts)
    out["auto"], out["explicit"] = choose_engine("auto", model), choose_engine("vllm", model)

    policy = copy.deepcopy(model)  # a real AdamW step, same on every rank (gradients all-reduced)
    opt = torch.optim.AdamW([p for p in policy.parameters() if p.requires_grad], lr=5e-2)
    for prompt, o in zip(prompts, HFEngine(policy).generate(prompts, GREEDY), strict=True):
        policy.response_logprobs(prompt, o.token_ids).sum().backward()
    for p in policy.parameters():
        if p.grad is not None:
            dist.all_reduce(p.grad)
    opt.step()
    engine.sync_weights(policy)
    out["synced"] = _greedy_gap(engine, policy, prompts)
    out["moved"] = out["synced"]["tokens"] != out["start"]["tokens"]
    engine.close()
    check = torch.tensor([float(rank + 1)])
    dist.all_reduce(check)  # the trainer's default group is intact after close
    out["allreduce_after_close"] = float(check)

    sharded = copy.deepcopy(policy)
    sharding.shard_model(sharded, sharding_units(sharded), 2)
    engine = vllm_engine.VLLMEngine(sharded, kv_cache_gib=0.25, seed=0,
                                    state=sharding.full_state_dict(sharded))  # gathered: collective
    out["sharded"] = _greedy_gap(engine, policy, prompts)
    engine.close()
    dist.barrier()
    return out


def rl_runs(rank: int, world: int, runs: list[list[str]]) -> list:
    """train_rl once per override list in this process (the engines of later runs start in
    the vLLM groups of the first); per run: rank 0's final weights, or the error's text."""
    from harness.config import RLConfig, load_config
    from harness.model.build import load_model
    from harness.trainer.rl import train_rl

    results = []
    for overrides in runs:
        cfg = load_config("configs/rl/toy-cpu.yaml", overrides, RLConfig)
        try:
            train_rl(cfg)
        except ValueError as err:
            results.append(str(err))
            continue
        final = load_model(cfg.run.out_dir + "/final").state_dict() if rank == 0 else {}
        results.append({k: v.clone() for k, v in final.items()})
    return results


def engines_then_rl_runs(rank: int, world: int, runs: list[list[str]]) -> dict:
    """Both workloads above in one pair of processes (vLLM's import and groups once)."""
    return {"engines": engines_per_rank(rank, world), "rl": rl_runs(rank, world, runs)}
