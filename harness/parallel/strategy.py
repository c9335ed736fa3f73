"""How the trained model's state lies across ranks, decided once when a run is set up
(`make_strategy`). The recipes and the rollout engines go through the strategy for every
step that depends on it and never ask how the model is held:

    strategy.prepare(model)                          # shard it (ZeRO-2/3), once
    optimizer = strategy.optimizer(model, lr=..., ...)
    ... loss.backward() per pass; strategy.stand_in_passes(n) extra weight-0 passes ...
    norm = strategy.reduce_and_clip(model, max_norm) # gradients summed over ranks, clipped
    optimizer.step(); strategy.after_step(model)
    strategy.full_state_dict(model)                  # collective where sharded
    strategy.gather_for_save(model, optimizer)       # collective: what rank 0 writes
    strategy.whole_model(model)                      # collective: the final weights

Strategies (`parallel.zero_stage`):
- 0 `Replicated`: every rank holds full weights, gradients and AdamW state; gradients are
  all-reduced (summed: each rank's loss is its part of the global loss).
- 1 `ZeroOne`: as 0, AdamW state sharded over the world (torch's ZeroRedundancyOptimizer,
  consolidated on rank 0 for checkpoints).
- 2, 3 `Sharded`: FSDP2 units (harness/parallel/sharding.py has the mechanics).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch
import torch.distributed as dist
from torch import nn

from harness.model.interface import VideoLM
from harness.parallel import sharding
from harness.parallel.groups import Layout
from harness.parallel.reduce import dp_max


class Replicated:
    stage = 0

    def __init__(self, layout: Layout) -> None:
        self.layout = layout

    def prepare(self, model: VideoLM) -> None:
        """Called once, after the trainable parts are chosen and before the optimizer."""

    def trainable(self, model: nn.Module) -> list[nn.Parameter]:
        return [p for p in model.parameters() if p.requires_grad]

    def optimizer(self, model: nn.Module, **adamw) -> torch.optim.Optimizer:
        params = self.trainable(model)
        if not params:
            raise ValueError("nothing to train: every parameter is frozen")
        return self._adamw(params, **adamw)

    def _adamw(self, params: list[nn.Parameter], **adamw) -> torch.optim.Optimizer:
        return torch.optim.AdamW(params, **adamw)

    def stand_in_passes(self, passes: int) -> int:
        """How many weight-0 training passes this rank adds to its `passes` so that every
        rank runs as many (0 unless each pass is a collective)."""
        return 0

    def reduce_and_clip(self, model: nn.Module, max_norm: float) -> float:
        """Sum the ranks' gradients and clip by the global norm; returns the norm before
        clipping. A parameter without a gradient on a rank counts as zero there."""
        params = self.trainable(model)
        if self.layout.world_size > 1:
            for p in params:
                if p.grad is None:
                    p.grad = torch.zeros_like(p)
                dist.all_reduce(p.grad)
        return float(torch.nn.utils.clip_grad_norm_(params, max_norm))

    def after_step(self, model: nn.Module) -> None:
        """After the optimizer step (and its zero_grad), on every rank."""

    def full_state_dict(self, model: nn.Module) -> Mapping[str, torch.Tensor]:
        """The whole model's state dict on every rank (its live tensors where they are
        whole; collective where they are not)."""
        return model.state_dict()

    def whole_model(self, model: nn.Module) -> nn.Module:
        """A plain model holding the full weights, for the main rank to save (collective
        where sharded)."""
        return model

    def gather_for_save(self, model: nn.Module, optimizer) -> tuple[nn.Module, object]:
        """Collective, on every rank at a save step: (a plain model holding the full weights,
        the optimizer or its full state dict) for the main rank to write."""
        return model, optimizer

    def load_state(self, model: nn.Module, optimizer, weights: Mapping[str, torch.Tensor],
                   optimizer_state: dict | None, trainable_only: bool = False) -> None:
        """Full (unsharded) weights and optimizer state, present on every rank. With
        `trainable_only` the weights may leave out frozen tensors (a checkpoint of a LoRA
        adapter), which keep their values; every trainable parameter must be there."""
        if trainable_only:
            check_covers_trainable(model, weights)
        model.load_state_dict(weights, strict=not trainable_only)
        if optimizer is not None:
            optimizer.load_state_dict(optimizer_state)


class ZeroOne(Replicated):
    stage = 1

    def _adamw(self, params: list[nn.Parameter], **adamw) -> torch.optim.Optimizer:
        from torch.distributed.optim import ZeroRedundancyOptimizer

        return ZeroRedundancyOptimizer(params, optimizer_class=torch.optim.AdamW,
                                       process_group=dist.group.WORLD, **adamw)

    def gather_for_save(self, model: nn.Module, optimizer) -> tuple[nn.Module, object]:
        optimizer.consolidate_state_dict(to=0)  # every rank sends its shard of the moments
        return model, optimizer


class Sharded(Replicated):
    """ZeRO-2/3 over every rank of the DP x SP world. Each training forward/backward is a
    collective (parameter all-gather, gradient reduce-scatter), so every rank must run as
    many passes: a rank with fewer examples adds weight-0 stand-ins."""

    def __init__(self, layout: Layout, stage: int,
                 units: Callable[[nn.Module], list[nn.Module]] | None = None) -> None:
        """`units`: how to cut the model into FSDP2 units (`sharding_units` for a `VideoLM`)."""
        super().__init__(layout)
        self.stage = stage
        self.units = units or sharding_units

    def prepare(self, model: nn.Module) -> None:
        sharding.shard_model(model, self.units(model), self.stage)

    def trainable(self, model: nn.Module) -> list[nn.Parameter]:
        return sharding.trainable_parameters(model)  # the shards, as AdamW must step them

    def stand_in_passes(self, passes: int) -> int:
        # SP ranks of one DP rank run the same passes; the DP group decides
        return int(dp_max([passes], self.layout)[0]) - passes

    def reduce_and_clip(self, model: nn.Module, max_norm: float) -> float:
        # backward already reduce-scattered (summed) each unit's gradients
        return sharding.clip_grad_norm(self.trainable(model), max_norm)

    def after_step(self, model: nn.Module) -> None:
        sharding.after_step(model)  # all-gather the new values

    def full_state_dict(self, model: nn.Module) -> Mapping[str, torch.Tensor]:
        return sharding.full_state_dict(model)

    def whole_model(self, model: nn.Module) -> nn.Module:
        return sharding.full_copy(model, sharding.full_state_dict(model))

    def gather_for_save(self, model: nn.Module, optimizer) -> tuple[nn.Module, object]:
        return self.whole_model(model), sharding.full_optimizer_state(optimizer)

    def load_state(self, model: nn.Module, optimizer, weights: Mapping[str, torch.Tensor],
                   optimizer_state: dict | None, trainable_only: bool = False) -> None:
        if trainable_only:
            check_covers_trainable(model, weights)
        sharding.load_full_state_dict(model, dict(weights), partial=trainable_only)  # each rank keeps its shards
        if optimizer is not None:
            sharding.load_full_optimizer_state(optimizer, optimizer_state)


def check_covers_trainable(model: nn.Module, weights: Mapping[str, torch.Tensor]) -> None:
    """Raise unless `weights` name only the model's tensors and hold every trainable one."""
    own = {name for name, _ in model.named_parameters()} | {name for name, _ in model.named_buffers()}
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    if set(weights) - own or trainable - set(weights):
        raise RuntimeError(f"weights do not fit the model: unexpected {sorted(set(weights) - own)[:5]}, "
                           f"trainable but missing {sorted(trainable - set(weights))[:5]}")


def make_strategy(zero_stage: int, layout: Layout,
                  units: Callable[[nn.Module], list[nn.Module]] | None = None) -> Replicated:
    """`parallel.zero_stage` on this layout (ZeRO-1 needs more than one rank to shard over;
    the config refuses stages 2/3 on one rank). `units`: how ZeRO-2/3 cut the model
    (`sharding_units` below for a `VideoLM`)."""
    if zero_stage >= 2:
        return Sharded(layout, zero_stage, units)
    if zero_stage == 1 and layout.world_size > 1:
        return ZeroOne(layout)
    return Replicated(layout)


def sharding_units(model: VideoLM) -> list[nn.Module]:
    """The disjoint submodules ZeRO-2/3 shards one by one (harness/parallel/sharding.py):
    each decoder layer, the input embeddings, the final norm, lm_head, and the vision
    tower and projector when they train (Qwen2.5-VL's merger lives inside its tower)."""
    lm = model.language_model
    units = [*lm.layers, lm.get_input_embeddings(), lm.norm, model.lm_head]
    tower, projector = model.vision_modules()

    def trains(m: nn.Module) -> bool:
        return any(p.requires_grad for p in m.parameters())

    inside_tower = any(m is projector for m in tower.modules())
    if trains(tower):
        units += _layer_units(tower)
    if trains(projector) and not (inside_tower and trains(tower)):
        units.append(projector)
    return units


def _layer_units(tower: nn.Module) -> list[nn.Module]:
    """A vision tower cut into shardable units: each layer of its (longest) layer list and
    every other parameter-holding part beside it. Sharding the tower as one unit breaks
    transformers' `output_hidden_states` capture on the FSDP-wrapped root (measured: the
    tower returned hidden_states=None), and per-layer units gather less at a time."""
    lists = [m for m in tower.modules() if isinstance(m, nn.ModuleList)]
    if not lists:
        return [tower]
    layers = max(lists, key=len)

    def split(module: nn.Module) -> list[nn.Module]:
        if module is layers:
            return list(layers)
        if not any(True for _ in module.parameters()):
            return []
        if not any(m is layers for m in module.modules()):
            return [module]
        if any(True for _ in module.parameters(recurse=False)):
            raise ValueError(f"{type(module).__name__} holds parameters beside its layers; "
                             f"it cannot be sharded layer by layer")
        return [u for child in module.children() for u in split(child)]

    return split(tower)
