"""Attention over packed rows [prompt | response_1 | ... | response_G | padding].

A row holds one prompt (its text and video tokens: the shared prefix) followed by responses
sampled for it. Prefix tokens attend causally to the prefix; each response token attends to
the whole prefix and causally to its own response, never to the row's other responses. With
one response per row this is plain causal attention with padding at the end. With G
responses the prefix goes through the LLM once per pass instead of G times, and every
response sees exactly what it would in a row of its own (the shared-prefix passes, after
"Prefix Grouper", arXiv 2506.05433; tests/model/test_attention.py). Gradients reaching the
prefix are the sum over its responses, as autograd forms them through the shared keys.

Padding-free rows hold several such groups one after another ([prompt_1 | its responses |
prompt_2 | ...], `RowLayout.groups`): a token sees only its own group, so each group's
stretch of the row is attended on its own, as a variable-length kernel would, and no
padding is computed (`spans`).

SDPA computes it without any mask tensor: the prefix queries with the causal kernel, then
each response's queries against [prefix | that response] with the bottom-right-aligned
causal bias (`causal_lower_right`: query j of an r-token response sees the prefix and
response tokens up to j), which the fused kernels take without materialising a mask. (An
earlier form ran all response queries against the whole row under a [response tokens x L]
boolean mask: 2.2 GB at an hour of video, and SDPA turns a boolean mask into a float bias
per layer.)

The attention plugs into transformers through its AttentionInterface registry (the
extension point for custom attention) as `harness`, set once on the LLM when the model is
built (`VideoLM.use_harness_attention`): a forward call given `row_layout` gets the packed-row
attention (inside Ulysses attention when it also gets `sp_group`, MR-SP stage 2); any other
call (generation with its KV cache, the one-sequence reference) gets transformers' own SDPA
attention and mask, unchanged; a call given `sp_decode` decodes over a KV cache split along
the sequence (parallel/sp_decode.py). The choice travels with the call, not with a switch on the
config, so activation checkpointing's recomputation in backward sees the same attention.
Packed calls pass an all-ones padding mask: transformers then builds no mask at all (the
layout is the mask) and does not guess packed sequences from the positions.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch.nn.attention.bias import causal_lower_right
from transformers import AttentionInterface
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

from harness.parallel.sp_decode import SPDecode, sp_decode_attention
from harness.parallel.ulysses import autocast_inputs, ulysses_attention

ATTENTION_NAME = "harness"


@dataclass
class RowLayout:
    """Which tokens of each row belong together."""

    segments: torch.Tensor  # [B, L] long: 0 prefix, k >= 1 the group's k-th response, -1 padding
    # [B, L] long: the group (prompt) of each token, -1 padding; None: one group per row
    groups: torch.Tensor | None = None

    def padded(self, length: int) -> RowLayout:
        """The same rows padded at the end to `length` (sequence-parallel padding)."""
        extra = length - self.segments.shape[1]
        if extra == 0:
            return self
        groups = None if self.groups is None else F.pad(self.groups, (0, extra), value=-1)
        return RowLayout(F.pad(self.segments, (0, extra), value=-1), groups)

    @functools.cached_property
    def spans(self) -> list[tuple[int, int, int]]:
        """(row, start, end) of every group, in order (padding-free rows)."""
        out = []
        for row, ids in enumerate(self.groups.tolist()):
            start = 0
            for i in range(1, len(ids) + 1):
                if i == len(ids) or ids[i] != ids[start]:
                    if ids[start] >= 0:
                        out.append((row, start, i))
                    start = i
        return out

    @functools.cached_property
    def shares_prefix(self) -> bool:
        """Whether some row holds more than one response (else plain causal attention)."""
        return bool(self.segments.max() > 1)

    @functools.cached_property
    def prefix_length(self) -> int:
        """The longest prefix of any row."""
        return int((self.segments == 0).sum(1).max())

    @functools.cached_property
    def rows(self) -> list[tuple[int, list[tuple[int, int]]]]:
        """(prefix length, [(start, end) of each response]) of every row."""
        out = []
        for seg in self.segments.tolist():
            prefix, spans = seg.count(0), []
            for i, k in enumerate(seg):
                if k > 0 and (i == 0 or seg[i - 1] != k):
                    spans.append([i, i + 1])
                elif k > 0:
                    spans[-1][1] = i + 1
            out.append((prefix, [tuple(x) for x in spans]))
        return out


def rows_attention(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, layout: RowLayout,
                   scaling: float | None) -> torch.Tensor:
    """query/key/value [B, H, L, d] (key/value heads already matching the query's) ->
    [B, H, L, d]. Outputs at padding positions are finite and meaningless."""
    if layout.groups is not None:
        return _grouped_attention(query, key, value, layout, scaling)
    if not layout.shares_prefix:
        # One response per row, padding only at the end: under the causal mask a real query
        # sees only real keys, so the plain causal kernel is exact for every used position.
        return F.scaled_dot_product_attention(query, key, value, is_causal=True, scale=scaling)
    b, h, length, d = query.shape
    p = layout.prefix_length
    head = F.scaled_dot_product_attention(query[:, :, :p], key[:, :, :p], value[:, :, :p],
                                          is_causal=True, scale=scaling)  # [B, H, p, d]
    out = []
    for row, (prefix, spans) in enumerate(layout.rows):
        parts = [head[row : row + 1, :, :prefix]]  # [1, H, prefix, d]
        k_pre, v_pre = key[row : row + 1, :, :prefix], value[row : row + 1, :, :prefix]
        for start, end in spans:  # this response's queries on [prefix | the response itself]
            r = end - start
            q, k, v = autocast_inputs(query[row : row + 1, :, start:end],
                                       torch.cat([k_pre, key[row : row + 1, :, start:end]], dim=2),
                                       torch.cat([v_pre, value[row : row + 1, :, start:end]], dim=2))
            parts.append(F.scaled_dot_product_attention(q, k, v, attn_mask=causal_lower_right(r, prefix + r),
                                                        scale=scaling).to(head.dtype))  # [1, H, r, d]
        used = prefix + sum(e - s_ for s_, e in spans)
        parts.append(query.new_zeros(1, h, length - used, d))  # padding
        out.append(torch.cat(parts, dim=2))
    return torch.cat(out, dim=0)  # [B, H, L, d]


def _grouped_attention(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, layout: RowLayout,
                       scaling: float | None) -> torch.Tensor:
    """Each group's stretch [start, end) of its row attended alone; zeros at padding."""
    rows = []
    for row in range(query.shape[0]):
        parts, at = [], 0
        for r, start, end in layout.spans:
            if r != row:
                continue
            if start > at:
                parts.append(query.new_zeros(1, query.shape[1], start - at, query.shape[3]))
            sub = RowLayout(layout.segments[row : row + 1, start:end])
            parts.append(rows_attention(query[row : row + 1, :, start:end], key[row : row + 1, :, start:end],
                                        value[row : row + 1, :, start:end], sub, scaling))  # [1, H, end-start, d]
            at = end
        if at < query.shape[2]:
            parts.append(query.new_zeros(1, query.shape[1], query.shape[2] - at, query.shape[3]))
        rows.append(torch.cat(parts, dim=2))
    return torch.cat(rows, dim=0)  # [B, H, L, d]


def repeat_kv_heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    """[B, Hkv, L, d] -> [B, heads, L, d], each KV head serving its consecutive query heads (GQA)."""
    return x if x.shape[1] == heads else x.repeat_interleave(heads // x.shape[1], dim=1)


def _hf_attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0,
                  row_layout: RowLayout | None = None, sp_group=None, sp_decode: SPDecode | None = None, **kwargs):
    """query [B, H, L, d], key/value [B, Hkv, L, d] -> ([B, L, H, d], None), what HF
    attention modules expect back."""
    if sp_decode is not None:  # decoding over a sequence-parallel KV cache
        heads = query.shape[1]
        out = sp_decode_attention(query, repeat_kv_heads(key, heads), repeat_kv_heads(value, heads), sp_decode,
                                  scaling)
        return out.transpose(1, 2).contiguous(), None
    if row_layout is None:  # an ordinary call: transformers' own attention
        return ALL_ATTENTION_FUNCTIONS["sdpa"](module, query, key, value, attention_mask, scaling=scaling,
                                               dropout=dropout, **kwargs)
    if dropout:
        raise ValueError("attention dropout is not supported by the packed-row attention")
    if sp_group is not None:

        def attend(q, k, v):  # the whole sequence, this rank's heads: [B, H/P, L, d]
            return rows_attention(q, k, v, row_layout, scaling)

        return ulysses_attention(query, key, value, attend, sp_group), None
    heads = query.shape[1]
    out = rows_attention(query, repeat_kv_heads(key, heads), repeat_kv_heads(value, heads), row_layout, scaling)
    return out.transpose(1, 2).contiguous(), None


AttentionInterface.register(ATTENTION_NAME, _hf_attention)
AttentionMaskInterface.register(ATTENTION_NAME, sdpa_mask)  # the masks of the calls SDPA serves


def packed_call_mask(embeds: torch.Tensor) -> torch.Tensor:
    """[B, L] all-ones padding mask for a packed call ([B, L, D] inputs): see the module
    docstring (the row layout carries the real mask)."""
    return torch.ones(embeds.shape[:2], dtype=torch.bool, device=embeds.device)
