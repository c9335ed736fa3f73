"""Rank functions for tests/parallel/test_sharding.py (module level so that spawn can import
them). Each rank builds the same model from the same seed and compares the sharded update
with the single-process one computed in the same process."""

from __future__ import annotations

import copy

import torch
import torch.distributed as dist
from torch.distributed.tensor import DTensor

from harness.config import OptimConfig
from harness.model.batch import response_logprobs
from harness.model.build import init_model
from harness.parallel import sharding
from harness.parallel.groups import build_layout
from harness.parallel.strategy import Sharded, sharding_units
from harness.trainer.common import build_optimizer
from tests.parallel.workers import _batch

CASES = [(4, 5, 7), (6, 3, 4)]  # (frames, question length, response length)


def _loss(model, seed: int) -> torch.Tensor:
    """A weighted sum of log-probs over one rank's batch: each rank's part of the loss."""
    batch = _batch(model, CASES, seed)
    logp = response_logprobs(model, batch)  # [N, R]
    weights = torch.randn(logp.shape, generator=torch.Generator().manual_seed(seed))
    return (logp * weights).sum() * 1e-2


def _steps(model, optimizer, params, seeds_per_step, sharded: bool) -> list[float]:
    norms = []
    for seeds in seeds_per_step:
        model.train()
        for seed in seeds:  # micro-batches; under sharding each rank runs its own seeds
            _loss(model, seed).backward()
        if sharded:
            norms.append(sharding.clip_grad_norm(params, 0.05))
        else:
            norms.append(float(torch.nn.utils.clip_grad_norm_(params, 0.05)))
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if sharded:
            sharding.after_step(model)
        model.eval()
    return norms


def _sharded(base, stage: int, optim: OptimConfig):
    model = copy.deepcopy(base)  # building a model (tokenizer included) costs seconds; copying does not
    model.set_trainable(vision=False, projector=True)  # a trainable unit on the vision side too
    strategy = Sharded(build_layout(dist.get_world_size(), 1), stage)
    strategy.prepare(model)  # the recipes' path: shard_model over sharding_units(model)
    opt, _ = build_optimizer(model, optim, strategy)
    return model, opt


def _err(a: dict, b: dict) -> float:
    return max(float((a[k] - v).abs().max()) for k, v in b.items())


def direct_updates(rank: int, world: int, family: str, stages: list[int]) -> dict:
    """Per stage: two AdamW steps of 2 micro-batches per rank, sharded over the ranks
    (gradients summed), vs one process running every rank's micro-batches; then the full
    replicated run's weights and AdamW state loaded into a fresh sharded model continue
    exactly (one more step)."""
    optim = OptimConfig(lr=1e-2, weight_decay=1e-2, grad_clip=0.05)
    everyone = [[10 * s + 2 * r + m for r in range(world) for m in range(2)] for s in range(3)]
    mine = [[10 * s + 2 * rank + m for m in range(2)] for s in range(3)]

    base = init_model(family, "tiny", seed=0)
    initial = {k: v.clone() for k, v in base.state_dict().items()}
    other = copy.deepcopy(base)  # a different starting point for the resumed model
    with torch.no_grad():
        for p in other.parameters():
            p.mul_(0.5)
    ref = copy.deepcopy(base)
    ref.set_trainable(vision=False, projector=True)
    ref_opt, _ = build_optimizer(ref, optim)
    ref_params = [p for p in ref.parameters() if p.requires_grad]
    ref_norms = _steps(ref, ref_opt, ref_params, everyone[:2], sharded=False)
    after_two = {k: v.clone() for k, v in ref.state_dict().items()}
    ref_state = ref_opt.state_dict()
    ref_optim = {i: {k: v.clone() for k, v in s.items()} for i, s in ref_state["state"].items()}
    plain_optim = {"state": ref_optim, "param_groups": copy.deepcopy(ref_state["param_groups"])}
    _steps(ref, ref_opt, ref_params, everyone[2:], sharded=False)
    after_three = ref.state_dict()

    out = {}
    for stage in stages:
        model, opt = _sharded(base, stage, optim)
        norms = _steps(model, opt, sharding.trainable_parameters(model), mine[:2], sharded=True)
        full = sharding.full_state_dict(model)
        optim_state = sharding.full_optimizer_state(opt)
        r = {
            "norm_err": max(abs(a - b) for a, b in zip(norms, ref_norms, strict=True)),
            "weight_err": _err(full, after_two),
            "keys_equal": full.keys() == after_two.keys(),
            "moved": _err(full, initial),
            "optim_err": max(_err(optim_state["state"][i], s) for i, s in ref_optim.items()),
            "copy_err": _err(sharding.full_copy(model, full).state_dict(), after_two),
        }
        # Stage 3 frees the parameters after a training forward/backward; stage 2 keeps them.
        model.train()
        _loss(model, 5).backward()
        layer = sharding_units(model)[0]
        r["sharded_in_training"] = any(isinstance(p, DTensor) for p in layer.parameters())
        opt.zero_grad(set_to_none=True)
        sharding.after_step(model)
        model.eval()
        r["gathered_after_step"] = not any(isinstance(p, DTensor) for p in layer.parameters())

        # resume: a fresh sharded model + optimizer (other init) loaded from the replicated
        # (stage 0) weights and AdamW state dict: the plain formats the sharded ones equal
        fresh, fresh_opt = _sharded(other, stage, optim)
        sharding.load_full_state_dict(fresh, after_two)
        sharding.load_full_optimizer_state(fresh_opt, plain_optim)
        _steps(fresh, fresh_opt, sharding.trainable_parameters(fresh), mine[2:], sharded=True)
        r["resume_err"] = _err(sharding.full_state_dict(fresh), after_three)
        if rank == 0:  # one rank alone runs the gathered model, as the rollout engine and eval do
            with torch.no_grad():
                r["one_rank_forward"] = bool(torch.isfinite(_loss(fresh, 99)))
        torch.distributed.barrier()
        out[stage] = r
    return out
