"""Attention over packed rows [prompt | response_1 | ... | response_G | padding].

A row holds one prompt (its text and video tokens: the shared prefix) followed by responses
sampled for it. Prefix tokens attend causally to the prefix; each response token attends to
the whole prefix and causally to its own response, never to the row's other responses. With
one response per row this is plain causal attention with padding at the end. With G
responses the prefix goes through the LLM once per pass instead of G times, and every
response sees exactly what it would in a row of its own (the shared-prefix passes, after
"Prefix Grouper", arXiv 2506.05433; tests/model/test_attention.py). Gradients reaching the
prefix are the sum over its responses, as autograd forms them through the shared keys.

Two SDPA calls compute it: the prefix queries with the causal kernel (SDPA's fast path, no
mask tensor), then only the response queries against all keys with a [Q, L] boolean mask
(prefix, or same response and not later). The mask is O(response tokens x L), never O(L^2).

The attention plugs into transformers through its AttentionInterface registry (the
extension point for custom attention) as `harness_rows`; the layout travels as the forward
call's `row_layout` keyword. `sp.py` runs the same function inside Ulysses attention.
"""

from __future__ import annotations

import functools
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import AttentionInterface
from transformers.masking_utils import AttentionMaskInterface

ROWS_ATTENTION = "harness_rows"


@dataclass
class RowLayout:
    """Which tokens of each row belong together."""

    segments: torch.Tensor  # [B, L] long: 0 prefix, k >= 1 the row's k-th response, -1 padding

    def padded(self, length: int) -> RowLayout:
        """The same rows padded at the end to `length` (sequence-parallel padding)."""
        extra = length - self.segments.shape[1]
        return self if extra == 0 else RowLayout(F.pad(self.segments, (0, extra), value=-1))

    @functools.cached_property
    def shares_prefix(self) -> bool:
        """Whether some row holds more than one response (else plain causal attention)."""
        return bool(self.segments.max() > 1)

    @functools.cached_property
    def prefix_length(self) -> int:
        """The longest prefix of any row."""
        return int((self.segments == 0).sum(1).max())

    @functools.cached_property
    def response_queries(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(index [B, Q], allowed [B, 1, Q, L]): the positions of every row's response
        tokens (index L fills a row's unused slots) and the keys each may see. Built once
        per forward and reused by every layer."""
        seg = self.segments
        b, length = seg.shape
        is_response = seg > 0  # [B, L]
        q = max(int(is_response.sum(1).max()), 1)
        index = torch.full((b, q), length, dtype=torch.long, device=seg.device)  # [B, Q]
        for row in range(b):
            where = is_response[row].nonzero().squeeze(1)
            index[row, : where.numel()] = where
        used = index < length  # [B, Q]
        query_seg = seg.gather(1, index.clamp(max=length - 1))  # [B, Q]
        keys = torch.arange(length, device=seg.device)  # [L]
        allowed = (keys[None, None] <= index[..., None]) & (
            (seg[:, None] == 0) | (seg[:, None] == query_seg[..., None]))  # [B, Q, L]
        # An unused slot sees key 0 only, so its softmax stays finite (its output is dropped).
        allowed |= ~used[..., None] & (keys == 0)[None, None]
        return index, allowed[:, None]


def rows_attention(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, layout: RowLayout,
                   scaling: float | None) -> torch.Tensor:
    """query/key/value [B, H, L, d] (key/value heads already matching the query's) ->
    [B, H, L, d]. Outputs at padding positions are finite and meaningless."""
    if not layout.shares_prefix:
        # One response per row, padding only at the end: under the causal mask a real query
        # sees only real keys, so the plain causal kernel is exact for every used position.
        return F.scaled_dot_product_attention(query, key, value, is_causal=True, scale=scaling)
    b, h, length, d = query.shape
    p = layout.prefix_length
    head = F.scaled_dot_product_attention(query[:, :, :p], key[:, :, :p], value[:, :, :p],
                                          is_causal=True, scale=scaling)  # [B, H, p, d]
    index, allowed = layout.response_queries  # [B, Q], [B, 1, Q, L]
    slots = index[:, None, :, None].expand(-1, h, -1, d)  # [B, H, Q, d]
    tail = F.scaled_dot_product_attention(query.gather(2, slots.clamp(max=length - 1)), key, value,
                                          attn_mask=allowed, scale=scaling)  # [B, H, Q, d]
    # Rows whose prefix is shorter than p got causal outputs for some response positions in
    # `head`; the scatter overwrites every response position. Column L takes unused slots.
    out = torch.cat([head, head.new_zeros(b, h, length + 1 - p, d)], dim=2)  # [B, H, L+1, d]
    return out.scatter(2, slots, tail.to(out.dtype))[:, :, :length]  # (autocast may differ per call)


def repeat_kv_heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    """[B, Hkv, L, d] -> [B, heads, L, d], each KV head serving its consecutive query heads (GQA)."""
    return x if x.shape[1] == heads else x.repeat_interleave(heads // x.shape[1], dim=1)


def _hf_rows_attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0,
                       row_layout: RowLayout | None = None, **kwargs):
    if row_layout is None:
        raise RuntimeError(f"{ROWS_ATTENTION} attention needs the row_layout keyword argument")
    if dropout:
        raise ValueError("attention dropout is not supported by the packed-row attention")
    heads = query.shape[1]
    out = rows_attention(query, repeat_kv_heads(key, heads), repeat_kv_heads(value, heads), row_layout, scaling)
    return out.transpose(1, 2).contiguous(), None  # [B, L, H, d], the layout HF modules expect


def _no_mask(*args, **kwargs):
    return None  # the row layout is the mask


AttentionInterface.register(ROWS_ATTENTION, _hf_rows_attention)
AttentionMaskInterface.register(ROWS_ATTENTION, _no_mask)


@contextmanager
def attention_implementation(llm: nn.Module, name: str):
    """Run `llm` (a transformers decoder) with the registered attention `name`."""
    config = llm.config
    before = config._attn_implementation
    config._attn_implementation = name
    try:
        yield
    finally:
        config._attn_implementation = before
