"""Pack prompts and their responses into right-padded rows for scoring and training, and the
one log-prob routine over such a batch (training, scoring, tests and evaluation all go
through it; `sp.py` is its sequence-parallel form).

A group is [prompt | response_1 | ... | response_g]: one response per prompt
(`pack_sequences`), or all of a prompt's responses behind one copy of it (`pack_groups`, the
shared-prefix passes; attention.py keeps the responses apart). Each group is a row of its
own, right-padded to the longest, or with `padding_free` all groups of a batch lie one after
another in a single row with no padding (attention.py keeps the groups apart). Every response's positions continue the
prompt's own (1-D or 3-D, `next_positions`), exactly what the rollout engine used when it
sampled it. The output at position t predicts the token after it: the prompt's last
position predicts the first token of every response in the row.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch.utils.checkpoint import checkpoint

from harness.model.attention import RowLayout, packed_call_mask
from harness.model.positions import next_positions
from harness.types import SequenceBatch

if TYPE_CHECKING:  # interface.py scores single responses through this module
    from harness.model.interface import PromptEmbeds, VideoLM


def pack_sequences(model: VideoLM, prompts: list[PromptEmbeds], responses: list[torch.Tensor],
                   padding_free: bool = False) -> SequenceBatch:
    """One group per (prompt, response) pair."""
    if len(prompts) != len(responses):
        raise ValueError(f"{len(prompts)} prompts but {len(responses)} responses")
    return pack_groups(model, prompts, [[r] for r in responses], padding_free)


def pack_groups(model: VideoLM, prompts: list[PromptEmbeds], responses: list[list[torch.Tensor]],
                padding_free: bool = False) -> SequenceBatch:
    """Prompt i followed by all of `responses[i]`: one row each, right-padded to the longest,
    or with `padding_free` all of them one after another in a single row (no padding; the
    row layout keeps the groups apart). The batch's responses are numbered group by group."""
    if len(prompts) != len(responses):
        raise ValueError(f"{len(prompts)} prompts but {len(responses)} response lists")
    if any(not rs for rs in responses):
        raise ValueError("every prompt needs at least one response")
    lengths = [len(p) + sum(r.shape[0] for r in rs) for p, rs in zip(prompts, responses, strict=True)]
    if padding_free:  # (row, offset) of every group
        places = [(0, sum(lengths[:i])) for i in range(len(prompts))]
        b, width = 1, sum(lengths)
    else:
        places = [(i, 0) for i in range(len(prompts))]
        b, width = len(prompts), max(lengths)
    flat = [r for rs in responses for r in rs]
    n, r_max = len(flat), max(r.shape[0] for r in flat)
    three_d = prompts[0].positions.dim() == 2
    dev = prompts[0].embeds.device
    embeds = prompts[0].embeds.new_zeros(b, width, prompts[0].embeds.shape[-1])  # [B, L, D]
    positions = torch.zeros((3, b, width) if three_d else (b, width), dtype=torch.long, device=dev)
    segments = torch.full((b, width), -1, dtype=torch.long, device=dev)  # [B, L]
    groups = torch.full((b, width), -1, dtype=torch.long, device=dev) if padding_free else None  # [B, L]
    response_row = torch.zeros(n, dtype=torch.long, device=dev)  # [N]
    response_index = torch.zeros(n, r_max, dtype=torch.long, device=dev)  # [N, R]
    response_tokens = torch.zeros(n, r_max, dtype=torch.long, device=dev)  # [N, R]
    response_mask = torch.zeros(n, r_max, dtype=torch.bool, device=dev)  # [N, R]
    k = 0
    for i, (prompt, resps) in enumerate(zip(prompts, responses, strict=True)):
        row, base = places[i]
        p = len(prompt)
        embeds[row, base : base + p] = prompt.embeds
        positions[..., row, base : base + p] = prompt.positions
        segments[row, base : base + p] = 0
        if groups is not None:
            groups[row, base : base + lengths[i]] = i
        joined = torch.cat(resps).to(dev)
        embeds[row, base + p : base + p + joined.shape[0]] = model.embed_tokens(joined)
        at = base + p
        for g, resp in enumerate(resps, start=1):
            r = resp.shape[0]
            positions[..., row, at : at + r] = next_positions(prompt.positions, r).to(dev)
            segments[row, at : at + r] = g
            response_row[k] = row
            # token 0 is predicted by the prompt's last position, token j by the response's j-1
            response_index[k, :r] = torch.cat([torch.tensor([base + p - 1], device=dev),
                                               torch.arange(at, at + r - 1, device=dev)])[:r]
            response_tokens[k, :r] = resp.to(dev)
            response_mask[k, :r] = True
            at += r
            k += 1
    return SequenceBatch(embeds, positions, segments, response_row, response_index, response_tokens, response_mask,
                         groups)


def response_logprobs(model: VideoLM, batch: SequenceBatch) -> torch.Tensor:
    """Log-probs [N, R] of every response token (zero on padding); differentiable."""
    hidden = model.language_model(inputs_embeds=batch.embeds, position_ids=batch.positions,
                                  attention_mask=packed_call_mask(batch.embeds), use_cache=False,
                                  row_layout=RowLayout(batch.segments, batch.groups)).last_hidden_state  # [B, L, D]
    return logprobs_at(model, hidden, batch, batch.response_index, batch.response_mask)


def logprobs_at(model: VideoLM, hidden: torch.Tensor, batch: SequenceBatch, index: torch.Tensor,
                mask: torch.Tensor) -> torch.Tensor:
    """Log-probs [N, R] of the response tokens under `mask`, each read from the output
    hidden[response_row, index] ([B, L', D]; `index` [N, R] into L'). Logits are formed
    only there, so the [B, L, vocab] tensor never exists for long video prompts."""
    rows = batch.response_row[:, None].expand_as(index)  # [N, R]
    states, tokens = hidden[rows[mask], index[mask]], batch.response_tokens[mask]  # [T, D], [T]
    parts = []
    # at least one (maybe empty) chunk: a rank that owns no token still joins the graph
    for a in range(0, max(tokens.shape[0], 1), LOGIT_CHUNK):
        args = (model.lm_head, states[a : a + LOGIT_CHUNK], tokens[a : a + LOGIT_CHUNK])
        if torch.is_grad_enabled() and states.requires_grad:  # backward recomputes the chunk's logits
            parts.append(checkpoint(_token_logprobs, *args, use_reentrant=False))
        else:
            parts.append(_token_logprobs(*args))
    out = torch.zeros(mask.shape, dtype=torch.float32, device=hidden.device)  # [N, R]
    out[mask] = torch.cat(parts)
    return out


# Response tokens whose [tokens, vocab] fp32 logits exist at once: all of a group's tokens at
# once would be 10k x 152k x 12 bytes = 17 GB in the head's backward (a 5 x 2,048-token group);
# in chunks, the backward recomputes each chunk's logits instead of keeping them.
LOGIT_CHUNK = 1024


def _token_logprobs(head: torch.nn.Module, states: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """[T] log-probs of `tokens` [T] under head(states) ([T, D])."""
    logits = head(states).float()  # [T, V]
    return torch.log_softmax(logits, dim=-1).gather(-1, tokens.unsqueeze(-1)).squeeze(-1)
