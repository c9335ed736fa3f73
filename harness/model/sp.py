"""Sequence-parallel forward passes of a `VideoLM` (MR-SP stage 2).

The full batch ([prompt | video | response], positions computed on the full sequence) is
padded to a multiple of the SP size and split along the sequence; each rank runs the LLM
on its slice with Ulysses attention and forms logits only for its own positions, so no
rank ever holds the full sequence's activations or logits. Log-probs of the slice are
differentiable (the loss is summed over ranks); `gather_sequence` assembles the full
[B, L] log-probs (no gradient) for scoring passes.

The attention is plugged in through transformers' AttentionInterface registry (its
extension point for custom attention), under the name `harness_ulysses`; the SP group and
the full key-padding mask travel as keyword arguments of the forward call.
"""

from __future__ import annotations

from contextlib import contextmanager

import torch
import torch.distributed as dist
from transformers import AttentionInterface
from transformers.masking_utils import AttentionMaskInterface

from harness.model.interface import VideoLM
from harness.parallel.comm import all_gather_uneven
from harness.parallel.ulysses import ulysses_attention
from harness.types import SequenceBatch

ATTENTION_NAME = "harness_ulysses"


def _hf_attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0,
                  sp_group=None, sp_key_padding=None, **kwargs):
    if sp_group is None or sp_key_padding is None:
        raise RuntimeError(f"{ATTENTION_NAME} attention needs sp_group and sp_key_padding keyword arguments")
    if dropout:
        raise ValueError("attention dropout is not supported under sequence parallelism")
    return ulysses_attention(query, key, value, sp_key_padding, scaling, sp_group), None


def _no_mask(*args, **kwargs):
    return None  # the Ulysses attention builds its own mask from the full padding mask


AttentionInterface.register(ATTENTION_NAME, _hf_attention)
AttentionMaskInterface.register(ATTENTION_NAME, _no_mask)


@contextmanager
def ulysses_attention_enabled(model: VideoLM):
    config = model.language_model.config
    before = config._attn_implementation
    config._attn_implementation = ATTENTION_NAME
    try:
        yield
    finally:
        config._attn_implementation = before


def padded_length(length: int, sp: int) -> int:
    return -(-length // sp) * sp


def sp_local_logprobs(model: VideoLM, batch: SequenceBatch, group: dist.ProcessGroup
                      ) -> tuple[torch.Tensor, int, int]:
    """This rank's slice: (log-probs [B, Lc] of batch.targets at positions [start, end) of
    the padded sequence, differentiable; start; end). Zero where target_mask is False."""
    sp, rank = dist.get_world_size(group), dist.get_rank(group)
    b, length = batch.targets.shape
    total = padded_length(length, sp)
    chunk = total // sp
    start, end = rank * chunk, (rank + 1) * chunk
    pad = total - length

    def cut(x: torch.Tensor, dim: int) -> torch.Tensor:
        if pad:
            shape = list(x.shape)
            shape[dim] = pad
            x = torch.cat([x, x.new_zeros(shape)], dim=dim)
        return x.narrow(dim, start, chunk)

    embeds = cut(batch.embeds, 1)  # [B, Lc, D]
    positions = cut(batch.positions, batch.positions.dim() - 1)  # [B, Lc] or [3, B, Lc]
    targets, mask = cut(batch.targets, 1), cut(batch.target_mask, 1)  # [B, Lc]
    key_padding = torch.cat([batch.attention_mask.bool(),
                             batch.attention_mask.new_zeros(b, pad).bool()], dim=1)  # [B, L+pad]
    with ulysses_attention_enabled(model):
        hidden = model.language_model(inputs_embeds=embeds, position_ids=positions, attention_mask=None,
                                      use_cache=False, sp_group=group,
                                      sp_key_padding=key_padding).last_hidden_state  # [B, Lc, D]
    logits = model.lm_head(hidden[mask]).float()  # [N, V]: only this rank's scored positions
    picked = torch.log_softmax(logits, -1).gather(-1, targets[mask].unsqueeze(-1)).squeeze(-1)
    out = torch.zeros(b, chunk, dtype=torch.float32, device=hidden.device)
    out[mask] = picked
    return out, start, min(end, length)


def gather_sequence(local: torch.Tensor, length: int, group: dist.ProcessGroup) -> torch.Tensor:
    """Every rank's [B, Lc] slice -> the full [B, length] (no gradient)."""
    sp = dist.get_world_size(group)
    parts = all_gather_uneven(local.detach().transpose(0, 1).contiguous(), [local.shape[1]] * sp, group)
    return parts.transpose(0, 1)[:, :length]  # [B, L]


def sp_token_logprobs(model: VideoLM, batch: SequenceBatch, group: dist.ProcessGroup) -> torch.Tensor:
    """Full [B, L] log-probs computed sequence-parallel (for scoring passes, no gradient)."""
    local, _, _ = sp_local_logprobs(model, batch, group)
    return gather_sequence(local, batch.targets.shape[1], group)
