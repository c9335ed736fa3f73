"""ZeRO-2/3: gradients, optimizer state (and for stage 3 parameters) sharded over all ranks
of the DP x SP world, with torch's FSDP2 (`fully_shard`).

    shard_model(model, units, stage)          # once, then AdamW(trainable_parameters(model))
    loss.backward()                           # per micro-batch: reduce-scatters each unit's grads
    norm = clip_grad_norm(trainable_parameters(model), max_norm)  # global norm
    optimizer.step(); optimizer.zero_grad()   # plain AdamW on the shards (sharded moments)
    after_step(model)                         # all-gather the new values
    full_state_dict(model), full_optimizer_state(optimizer)   # collective; for checkpoints
    load_full_state_dict(model, sd), load_full_optimizer_state(optimizer, sd)  # resume

Units. Each unit (decoder layer, input embeddings, final norm, lm_head, and a trainable
vision tower / projector; the caller picks them) is sharded on its own. A unit may hold
units listed before it (a diffusion transformer's blocks, then the transformer: FSDP2 then
manages the root's own parameters, its embeddings and norms, in the root unit), when the
model runs that root as one forward call. A `VideoLM`'s units are disjoint: it never runs
one root forward (it calls `embed_tokens`, `language_model` and `lm_head` separately), and
FSDP2 makes the first unit that runs forward the root of
everything under it: a sharded parent (`language_model`) whose child (`embed_tokens`) ran
first fails with "requires running forward through the root module first". Disjoint units
are each their own root, so direct calls work. Every trainable parameter must lie in a unit
(checked); frozen modules outside the units (the vision tower in RL, the reference model)
stay replicated: they have no gradients or optimizer state, and sharding them would only
add communication to the rollout passes.

Stages (same gradient and optimizer sharding; they differ in where full parameters live):
- 2: every rank keeps the full parameters at all times (explicitly unsharded, never
  resharded), so forward passes communicate nothing; each unit's gradient is
  reduce-scattered in backward, AdamW steps the local shards, and `after_step`
  all-gathers the new values. The memory of ZeRO-2: full parameters, 1/W of gradients
  and optimizer state.
- 3: as 2, but while the model trains (a forward in train mode with autograd on, i.e. the
  policy update) each unit's parameters are freed after its forward and its backward and
  all-gathered when needed again, so the update holds 1/W of the parameters plus one unit.
  `after_step` gathers them again for the no-grad passes that follow (rollout, log-probs,
  eval, save): the HF rollout engine samples a different share of prompts (and tokens) on
  each rank, so it could not take part in per-unit all-gathers. (A rollout engine with its
  own weights, vLLM, does not need this; it is the switch to change then.)

Gradients are SUMMED over ranks, not averaged: every rank holds part of the loss with
global normalisers (rl_update.py `update`), as the replicated path's all_reduce assumes. Gloo has
no PREMUL_SUM, hence `set_force_sum_reduction_for_comms`. Every rank must run the same
number of backward passes (and under stage 3 of training forwards): the collectives are
per unit and per pass. The recipes pad a rank that has fewer examples with weight-0 passes
(`Strategy.stand_in_passes` in strategy.py says how many).

Checkpoints are written in the plain formats: `full_state_dict` has the keys of the
unsharded `model.state_dict()`, and `full_optimizer_state` is a torch AdamW state dict
indexed by trainable-parameter order, as a replicated AdamW (stage 0) or a consolidated
ZeroRedundancyOptimizer (stage 1) writes it; so a checkpoint moves between stages and
world sizes.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.fsdp import FSDPModule, fully_shard
from torch.distributed.tensor import DTensor, distribute_tensor

_STATE_ATTR = "_harness_sharding"


class _State:
    def __init__(self, stage: int, units: list[FSDPModule], params: list[nn.Parameter], skeleton: nn.Module):
        self.stage = stage
        self.units = units
        self.params = params  # the trainable parameters as the optimizer holds them (shards)
        self.skeleton = skeleton  # the unsharded module, parameters on the meta device
        self.gathered = False


def shard_model(model: nn.Module, units: list[nn.Module], stage: int) -> None:
    """Shard `units` (submodules of `model`, disjoint or nested inner-first, holding every
    trainable parameter)
    over the default process group, in place. Leaves the parameters gathered."""
    if stage not in (2, 3):
        raise ValueError(f"sharding stage must be 2 or 3, got {stage}")
    if not dist.is_initialized() or dist.get_world_size() < 2:
        raise RuntimeError(f"ZeRO stage {stage} shards over ranks and needs torch.distributed "
                           "with world size > 1")
    if is_sharded(model):
        raise RuntimeError("model is already sharded")
    _check_units(model, units)
    skeleton = _copy(model, meta=True)
    device = next(model.parameters()).device
    mesh = init_device_mesh(device.type, (dist.get_world_size(),))
    for unit in units:
        fully_shard(unit, mesh=mesh, reshard_after_forward=stage == 3)
        unit.set_gradient_divide_factor(1.0)  # sum, not mean
        unit.set_force_sum_reduction_for_comms(True)
        if stage == 3:
            _register_train_switch(model, unit)
    # Taken before gathering: while gathered, the module holds the full parameters, while
    # the optimizer must step the shards.
    params = [p for p in model.parameters() if p.requires_grad]
    setattr(model, _STATE_ATTR, _State(stage, list(units), params, skeleton))
    _gather(model)


def trainable_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The trainable parameters as sharded tensors: give these to the optimizer and to
    `clip_grad_norm` (the module itself holds the gathered ones most of the time)."""
    return list(_state(model).params)


def is_sharded(model: nn.Module) -> bool:
    return getattr(model, _STATE_ATTR, None) is not None


def clip_grad_norm(params: list[torch.Tensor], max_norm: float) -> float:
    """Clip by the global gradient norm (over every rank's shards); returns that norm.
    A parameter with no gradient counts as a zero gradient."""
    with_grad = [p for p in params if p.grad is not None]
    if not with_grad:
        return 0.0
    norm = torch.nn.utils.clip_grad_norm_(with_grad, max_norm)
    if isinstance(norm, DTensor):
        norm = norm.full_tensor()
    return float(norm)


def after_step(model: nn.Module) -> None:
    """All-gather the updated shards into full parameters (collective: every rank)."""
    state = _state(model)
    for unit in state.units:
        unit.reshard()  # stage 2 keeps the stale full values until here
    _gather(model)


def full_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The unsharded `model.state_dict()` on CPU, on every rank (collective)."""
    _state(model)
    out = {}
    with torch.no_grad():
        for name, p in _named_tensors(model):
            out[name] = (p.full_tensor() if isinstance(p, DTensor) else p).detach().cpu().clone()
    return out


def full_copy(model: nn.Module, state_dict: dict[str, torch.Tensor]) -> nn.Module:
    """A plain (unsharded) copy of `model` holding `state_dict`: what `save_pretrained`
    needs, on the rank that writes the checkpoint."""
    plain = _copy(_state(model).skeleton)
    plain.load_state_dict(state_dict, strict=True, assign=True)
    return plain


def load_full_state_dict(model: nn.Module, state_dict: dict[str, torch.Tensor], partial: bool = False) -> None:
    """Load full (unsharded) weights, present on every rank, into the sharded model
    (collective). Keys must match exactly, or with `partial` be a subset (the rest keep
    their values)."""
    state = _state(model)
    for unit in state.units:
        unit.reshard()
    own = dict(_named_tensors(model))
    if partial:
        own = {k: v for k, v in own.items() if k in state_dict}
    if own.keys() != state_dict.keys():
        missing, extra = sorted(own.keys() - state_dict.keys()), sorted(state_dict.keys() - own.keys())
        raise RuntimeError(f"state dict does not fit the model: missing {missing[:5]}, unexpected {extra[:5]}")
    with torch.no_grad():
        for name, p in own.items():
            _copy_full_into(p, state_dict[name])
    _gather(model)


def full_optimizer_state(optimizer: torch.optim.Optimizer) -> dict:
    """The optimizer's state dict with every sharded tensor made full (collective)."""
    sd = optimizer.state_dict()
    state = {}
    for idx in sorted(sd["state"]):
        state[idx] = {k: (v.full_tensor() if isinstance(v, DTensor) else v).detach().cpu().clone()
                      if torch.is_tensor(v) else v for k, v in sd["state"][idx].items()}
    return {"state": state, "param_groups": copy.deepcopy(sd["param_groups"])}


def load_full_optimizer_state(optimizer: torch.optim.Optimizer, full: dict) -> None:
    """Load a plain (full-tensor) optimizer state dict into an optimizer over sharded
    parameters: each rank keeps its own shard of every state tensor."""
    params = [p for g in optimizer.param_groups for p in g["params"]]
    state = {}
    for idx, entry in full["state"].items():
        p = params[int(idx)]
        # copies: torch's load_state_dict keeps `step` as given and then increments it in place
        state[idx] = {k: (_shard_like(p, v) if v.dim() > 0 else v.clone()) if torch.is_tensor(v) else v
                      for k, v in entry.items()}
    optimizer.load_state_dict({"state": state, "param_groups": full["param_groups"]})


# --- internals ----------------------------------------------------------------------------


def _state(model: nn.Module) -> _State:
    state = getattr(model, _STATE_ATTR, None)
    if state is None:
        raise RuntimeError("model is not sharded (call shard_model first)")
    return state


def _gather(model: nn.Module) -> None:
    state = _state(model)
    # outer units first: FSDP2 initialises a root before the units inside it
    for unit in reversed(state.units):
        unit.unshard()
        unit.set_reshard_after_forward(False, recurse=False)
        unit.set_reshard_after_backward(state.stage == 3, recurse=False)
    state.gathered = True


def _register_train_switch(model: nn.Module, unit: nn.Module) -> None:
    """Stage 3: the first forward in train mode with autograd on (the update; every rank
    runs it) switches every unit back to freeing its parameters after use."""

    def hook(module, args):
        state = getattr(model, _STATE_ATTR)
        if state.gathered and module.training and torch.is_grad_enabled():
            for u in state.units:
                u.set_reshard_after_forward(True, recurse=False)
            state.gathered = False

    unit.register_forward_pre_hook(hook, prepend=True)


def _check_units(model: nn.Module, units: list[nn.Module]) -> None:
    """Units are disjoint or nested, inner units listed first (fully_shard must see them
    before the unit around them); every trainable parameter lies in one; no parameter is
    shared by units that do not nest."""
    inside = [{id(m) for m in unit.modules()} for unit in units]
    for k, unit in enumerate(units):
        for j in range(k):
            if id(unit) in inside[j]:
                raise ValueError(f"sharding unit {k} lies inside unit {j}: list inner units first")
            if inside[j] & inside[k] and id(units[j]) not in inside[k]:
                raise ValueError(f"sharding units {j} and {k} overlap; units must be disjoint or nested")
    covered = {id(p) for unit in units for p in unit.parameters()}
    loose = [n for n, p in model.named_parameters() if p.requires_grad and id(p) not in covered]
    if loose:
        raise ValueError(f"trainable parameters outside every sharding unit: {loose[:5]}")
    # each unit's own parameters: those of its modules outside the units nested in it
    owner: dict[int, int] = {}
    for k, unit in enumerate(units):
        nested = set().union(*(inside[j] for j in range(k) if id(units[j]) in inside[k]))
        for m in unit.modules():
            if id(m) in nested:
                continue
            for p in m.parameters(recurse=False):
                if owner.setdefault(id(p), k) != k:
                    raise ValueError("a parameter is shared by two sharding units (tied input/output "
                                     "embeddings?); ZeRO-2/3 support untied weights only")


def _copy(model: nn.Module, meta: bool = False) -> nn.Module:
    """Deep copy of `model`, its parameters on the meta device with `meta` (no memory);
    buffers kept. Modules the model names in `copy_shares()` (frozen parts held beside its
    registered children, e.g. a pipeline's text encoders) are shared, not duplicated."""
    memo = {id(m): m for m in getattr(model, "copy_shares", list)()}
    if meta:
        memo.update({id(p): nn.Parameter(torch.empty_like(p, device="meta"), requires_grad=p.requires_grad)
                     for p in model.parameters()})
    return copy.deepcopy(model, memo)


def _named_tensors(model: nn.Module) -> Iterable[tuple[str, torch.Tensor]]:
    """(name, tensor) in `state_dict` order: parameters and persistent buffers, without
    triggering FSDP's state-dict hooks (they would reshard)."""
    for mod_name, module in model.named_modules():
        prefix = f"{mod_name}." if mod_name else ""
        for name, p in module._parameters.items():
            if p is not None:
                yield prefix + name, p
        for name, b in module._buffers.items():
            if b is not None and name not in module._non_persistent_buffers_set:
                yield prefix + name, b


def _copy_full_into(p: torch.Tensor, full: torch.Tensor) -> None:
    if isinstance(p, DTensor):
        p.to_local().copy_(_shard_like(p, full).to_local())
    else:
        p.copy_(full)


def _shard_like(p: torch.Tensor, full: torch.Tensor) -> torch.Tensor:
    if not isinstance(p, DTensor):
        return full.to(device=p.device)
    if full.shape != p.shape:
        raise RuntimeError(f"shape {tuple(full.shape)} does not fit parameter of shape {tuple(p.shape)}")
    # every rank holds the full tensor: slice locally, no communication
    return distribute_tensor(full.to(device=p.device, dtype=full.dtype), p.device_mesh, p.placements,
                             src_data_rank=None)
