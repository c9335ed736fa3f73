"""MR-SP stage 2: Ulysses sequence parallelism around attention.

Each rank of the SP group holds a contiguous slice of the sequence ([B, L/P, ...]) through
every layer; only attention needs the whole sequence, so it trades the sequence split for
a head split with one all-to-all before (q, k, v: [B, H, L/P, d] -> [B, H/P, L, d]) and one
after. Activations outside attention stay at L/P per rank.

The causal + key-padding mask is built here from the FULL sequence's padding mask, which
the caller passes as `sp_key_padding` ([B, L] bool, True = real token); the mask a model
builds from its local slice would be wrong.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F

from harness.parallel.comm import all_to_all


def spread_kv_heads(kv_heads: int, q_heads: int, sp: int) -> int:
    """How many times to repeat each KV head so that KV heads split evenly over `sp` ranks.

    With GQA there may be fewer KV heads than ranks (e.g. 4 KV heads, SP 8): repeating
    KV heads (as attention itself does for GQA) keeps the result exact."""
    if q_heads % sp:
        raise ValueError(f"{q_heads} attention heads cannot be split over sequence-parallel size {sp}")
    if kv_heads % sp == 0:
        return 1
    for rep in range(2, q_heads // kv_heads + 1):
        if (q_heads // kv_heads) % rep == 0 and (kv_heads * rep) % sp == 0:
            return rep
    raise ValueError(f"{kv_heads} KV heads cannot be spread over sequence-parallel size {sp}")


def ulysses_attention(
    query: torch.Tensor,  # [B, H, Lc, d]
    key: torch.Tensor,  # [B, Hkv, Lc, d]
    value: torch.Tensor,  # [B, Hkv, Lc, d]
    key_padding: torch.Tensor,  # [B, L] bool over the full (padded) sequence
    scaling: float,
    group: dist.ProcessGroup,
) -> torch.Tensor:
    """Causal attention over the full sequence for this rank's slice of queries;
    returns [B, Lc, H, d] (the layout HF attention modules expect back)."""
    sp = dist.get_world_size(group)
    rep = spread_kv_heads(key.shape[1], query.shape[1], sp)
    if rep > 1:
        key, value = key.repeat_interleave(rep, dim=1), value.repeat_interleave(rep, dim=1)
    q = all_to_all(query, 1, 2, group)  # [B, H/P, L, d]
    k = all_to_all(key, 1, 2, group)  # [B, Hkv'/P, L, d]
    v = all_to_all(value, 1, 2, group)
    groups = q.shape[1] // k.shape[1]
    if groups > 1:
        k, v = k.repeat_interleave(groups, dim=1), v.repeat_interleave(groups, dim=1)
    length = q.shape[2]
    real = key_padding.sum(1)  # [B]
    if torch.equal(key_padding, torch.arange(length, device=q.device)[None] < real[:, None]):
        # Padding only at the end (as the trainer packs): under the causal mask a real query
        # sees only real keys, so the plain causal kernel is exact for every position that is
        # used (padding queries' outputs never are). It avoids the [B, L, L] mask below,
        # which sends SDPA down its math path: O(L^2) memory per layer and ~2.5x the time on CPU
        # (found by perf/test_mrsp.py).
        out = F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=scaling)  # [B, H/P, L, d]
        out = all_to_all(out, 2, 1, group)  # [B, H, Lc, d]
        return out.transpose(1, 2).contiguous()  # [B, Lc, H, d]
    causal = torch.ones(length, length, dtype=torch.bool, device=q.device).tril()  # [L, L]
    allowed = causal[None] & key_padding[:, None, :]  # [B, L, L]
    # A padding query may see no key at all; let it see itself so softmax stays finite
    # (its output is never used).
    allowed |= torch.eye(length, dtype=torch.bool, device=q.device)[None]
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed[:, None], scale=scaling)  # [B, H/P, L, d]
    out = all_to_all(out, 2, 1, group)  # [B, H, Lc, d]
    return out.transpose(1, 2).contiguous()  # [B, Lc, H, d]
