"""Decoding after a sequence-parallel prefill: attention over a KV cache split along the
sequence, for inference on prompts too long for one device (8,192-frame videos).

After an SP prefill (Ulysses, model/sp.py) each rank's KV cache holds the keys and values of
its own slice of the prompt, all heads (HF attention layers store k, v before the attention
function runs, i.e. before Ulysses' all-to-all). A decode step runs the whole model for the
one new token on every rank (its projections are cheap and identical everywhere) and splits
only attention: each rank scores the query against the keys it holds, and the ranks'
partial softmaxes are merged exactly, as flash-decoding merges key blocks:

    m = max_r m_r,   s = sum_r exp(m_r - m) s_r,   o = sum_r exp(m_r - m) o_r,   out = o / s

with m_r, s_r, o_r a rank's max score, sum of exp(score - m_r) and exp-weighted values. Two
collectives per layer and token: one MAX of [H] maxima, one SUM of [H] sums and [H, d]
outputs. The new tokens' own keys enter every rank's cache (every rank runs the token);
only `owner` counts them, so each key is counted once. A rank's cached SP padding (the
prompt padded to a multiple of the SP size) is never attended (`valid`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class SPDecode:
    """A decode step's view of this rank's cache: keys [0, valid) are its real prompt keys,
    keys [prefill, ...) the generated tokens', counted on the `owner` rank only."""

    group: dist.ProcessGroup
    valid: int
    prefill: int
    owner: bool


def sp_decode_attention(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, step: SPDecode,
                        scaling: float | None) -> torch.Tensor:
    """query [B, H, Q, d] (the new tokens, every rank alike), key/value [B, H, K, d] (this
    rank's cache, KV heads matched to the query's) -> [B, H, Q, d], the attention over every
    rank's keys. Q > 1 decodes several tokens at once, each seeing the cached prompt and the
    new tokens up to itself."""
    q_len, k_len = query.shape[2], key.shape[2]
    scale = query.shape[-1] ** -0.5 if scaling is None else scaling
    scores = (query.float() @ key.float().transpose(-1, -2)) * scale  # [B, H, Q, K]
    keys = torch.arange(k_len, device=query.device)
    keep = (keys < step.valid)[None].expand(q_len, -1)  # [Q, K]
    if step.owner:  # new token q sees the new tokens up to itself
        newest = k_len - q_len + torch.arange(q_len, device=query.device)  # [Q]
        keep = keep | ((keys >= step.prefill)[None] & (keys[None] <= newest[:, None]))
    scores = scores.masked_fill(~keep, float("-inf"))
    local_max = scores.amax(dim=-1)  # [B, H, Q]; -inf where this rank holds no key to see
    top = local_max.clone()
    dist.all_reduce(top, op=dist.ReduceOp.MAX, group=step.group)
    weights = torch.exp(scores - top[..., None])  # [B, H, Q, K]; 0 at masked keys
    parts = torch.cat([weights.sum(-1, keepdim=True), weights @ value.float()], dim=-1)  # [B, H, Q, 1 + d]
    dist.all_reduce(parts, group=step.group)
    return (parts[..., 1:] / parts[..., :1]).to(query.dtype)  # [B, H, Q, d]
