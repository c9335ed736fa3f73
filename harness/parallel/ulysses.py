"""MR-SP stage 2: Ulysses sequence parallelism around attention.

Each rank of the SP group holds a contiguous slice of the sequence ([B, L/P, ...]) through
every layer; only attention needs the whole sequence, so it trades the sequence split for
a head split with one all-to-all before (q, k, v: [B, H, L/P, d] -> [B, H/P, L, d]) and one
after. Activations outside attention stay at L/P per rank.

The mask belongs to the whole sequence, so the attention proper is the caller's `attend`
(model/attention.py's packed-row attention): a mask a model builds from its local slice
would be wrong.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.distributed as dist
import torch.nn.functional as F

from harness.parallel.comm import all_to_all


def spread_kv_heads(kv_heads: int, q_heads: int, sp: int) -> int:
    """How many times to repeat each KV head so that KV heads split evenly over `sp` ranks
    (0: no repetition does; `ulysses_attention` then pads the heads, see there).

    With GQA there may be fewer KV heads than ranks (e.g. 4 KV heads, SP 8): repeating
    KV heads (as attention itself does for GQA) keeps the result exact."""
    if q_heads % sp:
        return 0
    if kv_heads % sp == 0:
        return 1
    for rep in range(2, q_heads // kv_heads + 1):
        if (q_heads // kv_heads) % rep == 0 and (kv_heads * rep) % sp == 0:
            return rep
    return 0


def autocast_inputs(*xs: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """q, k, v cast as autocast would cast attention's inputs (nothing outside autocast).
    Some attention calls check dtypes before autocast would cast (SDPA with a
    `causal_lower_right` bias); rotary embeddings leave q and k fp32 beside a bf16 v."""
    device = xs[0].device.type
    if not torch.is_autocast_enabled(device):
        return xs
    dtype = torch.get_autocast_dtype(device)
    return tuple(x.to(dtype) for x in xs)


def ulysses_attention(
    query: torch.Tensor,  # [B, H, Lc, d]
    key: torch.Tensor,  # [B, Hkv, Lc, d]
    value: torch.Tensor,  # [B, Hkv, Lc, d]
    attend: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor],
    group: dist.ProcessGroup,
) -> torch.Tensor:
    """Attention over the full sequence for this rank's slice of queries: `attend` maps the
    whole sequence's q, k, v for this rank's heads ([B, H/P, L, d], KV heads matched to the
    query's) to its output; returns [B, Lc, H, d] (the layout HF attention modules expect)."""
    sp = dist.get_world_size(group)
    heads = query.shape[1]
    # Under bf16 autocast rotary leaves q and k in fp32 (beside a bf16 v): exchange them in
    # the compute dtype, as attention would cast them anyway: half the traffic and buffers.
    query, key, value = autocast_inputs(query, key, value)
    rep = spread_kv_heads(key.shape[1], heads, sp)
    if rep == 0:
        # The heads do not split evenly (LongVILA-7B's 28 over SP 8): one KV head per query
        # head, and all-zero heads appended up to a multiple of P. A zero query attends
        # uniformly over zero values: finite zeros, dropped after the exchange back. Costs
        # more traffic (k and v at the query's head count), never a wrong result.
        pad = -heads % sp
        query, key, value = (F.pad(x.repeat_interleave(heads // x.shape[1], dim=1), (0, 0, 0, 0, 0, pad))
                             for x in (query, key, value))  # [B, H + pad, Lc, d]
    elif rep > 1:
        key, value = key.repeat_interleave(rep, dim=1), value.repeat_interleave(rep, dim=1)
    q, k, v = _exchange_qkv(query, key, value, group)  # [B, H/P, L, d], [B, Hkv'/P, L, d] x 2
    groups = q.shape[1] // k.shape[1]
    if groups > 1:
        k, v = k.repeat_interleave(groups, dim=1), v.repeat_interleave(groups, dim=1)
    out = attend(q, k, v)  # [B, H/P, L, d]
    out = all_to_all(out, 2, 1, group)[:, :heads]  # [B, H, Lc, d] (padding heads dropped)
    return out.transpose(1, 2).contiguous()  # [B, Lc, H, d]


def _exchange_qkv(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, group: dist.ProcessGroup
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One all-to-all for q, k and v together (not three: each collective costs a round of
    latency per layer, forward and backward). Each rank's piece holds its heads of all
    three: [B, P, (H + 2 Hkv) / P, Lc, d] -> [B, (H + 2 Hkv) / P, L, d], split back."""
    sp = dist.get_world_size(group)
    b, h, lc, d = query.shape
    hkv = key.shape[1]
    parts = [x.reshape(b, sp, x.shape[1] // sp, lc, d) for x in (query, key, value)]
    fused = torch.cat(parts, dim=2).reshape(b, h + 2 * hkv, lc, d)  # rank r's heads contiguous
    out = all_to_all(fused, 1, 2, group)  # [B, (H + 2 Hkv) / P, L, d]
    return out.split([h // sp, hkv // sp, hkv // sp], dim=1)
