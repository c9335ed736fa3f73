"""Sequence-parallel forward passes of a `VideoLM` (MR-SP stage 2).

The packed batch (rows [prompt | video | responses], positions computed on the full
sequence) is padded to a multiple of the SP size and split along the sequence; each rank
runs the LLM on its slice with Ulysses attention and forms logits only for the response
tokens predicted from its own positions, so no rank ever holds the full sequence's
activations or logits. Each response token is owned by exactly one rank: the ranks' losses
add up to the full loss (differentiable `sp_local_logprobs`), and a sum over the group
assembles the full [N, R] log-probs for scoring passes (`sp_response_logprobs`).

Inside attention, after the all-to-all, every rank holds the whole sequence for its heads
and runs the packed-row attention of attention.py (shared prefix included) on it; the SP
group and the full row layout travel as keyword arguments of the forward call.
"""

from __future__ import annotations

import torch
import torch.distributed as dist

from harness.model.attention import RowLayout, packed_call_mask
from harness.model.batch import logprobs_at
from harness.model.interface import VideoLM
from harness.types import SequenceBatch


def padded_length(length: int, sp: int) -> int:
    return -(-length // sp) * sp


def local_slice(x: torch.Tensor, dim: int, group: dist.ProcessGroup) -> torch.Tensor:
    """This rank's contiguous share of `x` along `dim`, after zero-padding that dimension
    to a multiple of the group size."""
    sp, rank = dist.get_world_size(group), dist.get_rank(group)
    length = x.shape[dim]
    total = padded_length(length, sp)
    if total > length:
        shape = list(x.shape)
        shape[dim] = total - length
        x = torch.cat([x, x.new_zeros(shape)], dim=dim)
    chunk = total // sp
    return x.narrow(dim, rank * chunk, chunk)


def sp_local_logprobs(model: VideoLM, batch: SequenceBatch, group: dist.ProcessGroup
                      ) -> tuple[torch.Tensor, torch.Tensor]:
    """(log-probs [N, R], owned [N, R] bool): this rank's share, differentiable; zero
    outside `owned`, the response tokens predicted from this rank's slice of the sequence."""
    sp, rank = dist.get_world_size(group), dist.get_rank(group)
    length = batch.segments.shape[1]
    total = padded_length(length, sp)
    chunk = total // sp
    start = rank * chunk
    embeds = local_slice(batch.embeds, 1, group)  # [B, Lc, D]
    positions = local_slice(batch.positions, batch.positions.dim() - 1, group)  # [B, Lc] or [3, B, Lc]
    hidden = model.language_model(inputs_embeds=embeds, position_ids=positions, attention_mask=packed_call_mask(embeds),
                                  use_cache=False, sp_group=group, row_layout=RowLayout(batch.segments, batch.groups).padded(total)
                                  ).last_hidden_state  # [B, Lc, D]
    index = batch.response_index
    owned = batch.response_mask & (index >= start) & (index < start + chunk)  # [N, R]
    return logprobs_at(model, hidden, batch, index - start, owned), owned


def sp_response_logprobs(model: VideoLM, batch: SequenceBatch, group: dist.ProcessGroup) -> torch.Tensor:
    """The full [N, R] log-probs computed sequence-parallel (scoring passes, no gradient):
    every token's value comes from the one rank that owns it, the others add zero."""
    local, _ = sp_local_logprobs(model, batch, group)
    local = local.detach()
    dist.all_reduce(local, group=group)
    return local
