"""Pack (prompt, response) pairs into one right-padded batch for scoring and training, and
the one masked log-prob routine over such a batch (training, scoring, tests and evaluation
all go through it; `sp.py` is its sequence-parallel form).

Each row is [prompt | response]; positions are the prompt's own (1-D or 3-D) followed by
the response's continuation (`next_positions`), exactly what the rollout engine used when
it sampled the response. Targets sit one position early (position t predicts token t+1).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from harness.model.positions import next_positions
from harness.types import SequenceBatch

if TYPE_CHECKING:  # interface.py scores single responses through this module
    from harness.model.interface import PromptEmbeds, VideoLM


def pack_sequences(model: VideoLM, prompts: list[PromptEmbeds], responses: list[torch.Tensor]) -> SequenceBatch:
    if len(prompts) != len(responses):
        raise ValueError(f"{len(prompts)} prompts but {len(responses)} responses")
    lengths = [len(p) + r.shape[0] for p, r in zip(prompts, responses, strict=True)]
    b, width = len(prompts), max(lengths)
    r_max = max(r.shape[0] for r in responses)
    d = prompts[0].embeds.shape[-1]
    three_d = prompts[0].positions.dim() == 2
    dev = prompts[0].embeds.device
    embeds = prompts[0].embeds.new_zeros(b, width, d)  # [B, L, D]
    positions = torch.zeros((3, b, width) if three_d else (b, width), dtype=torch.long, device=dev)
    attention = torch.zeros(b, width, dtype=torch.long, device=dev)
    targets = torch.zeros(b, width, dtype=torch.long, device=dev)
    target_mask = torch.zeros(b, width, dtype=torch.bool, device=dev)
    response_index = torch.zeros(b, r_max, dtype=torch.long, device=dev)
    response_mask = torch.zeros(b, r_max, dtype=torch.bool, device=dev)
    for i, (prompt, resp) in enumerate(zip(prompts, responses, strict=True)):
        p, r = len(prompt), resp.shape[0]
        resp = resp.to(dev)
        embeds[i, :p] = prompt.embeds
        embeds[i, p : p + r] = model.embed_tokens(resp)
        pos = torch.cat([prompt.positions, next_positions(prompt.positions, r).to(dev)], dim=-1)
        positions[..., i, : p + r] = pos
        attention[i, : p + r] = 1
        targets[i, p - 1 : p + r - 1] = resp
        target_mask[i, p - 1 : p + r - 1] = True
        response_index[i, :r] = torch.arange(p - 1, p + r - 1, device=dev)
        response_mask[i, :r] = True
    return SequenceBatch(embeds, positions, attention, targets, target_mask, response_index, response_mask)


def response_logprobs(model: VideoLM, batch: SequenceBatch) -> torch.Tensor:
    """Log-probs [B, R] of every response token (zero on padding)."""
    full = model.token_logprobs(batch.embeds, batch.positions, batch.attention_mask,
                                batch.targets, batch.target_mask)  # [B, L]
    return batch.response_values(full)
