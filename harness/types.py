"""Plain dataclasses shared across packages (no behaviour beyond small accessors)."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class SequenceBatch:
    """Packed rows [prompt | response_1 | ... | response_g | padding] (model/batch.py)."""

    embeds: torch.Tensor  # [B, L, D]
    positions: torch.Tensor  # [B, L] or [3, B, L]
    segments: torch.Tensor  # [B, L] long: 0 prompt, k >= 1 the row's k-th response, -1 padding
    response_row: torch.Tensor  # [N] the row holding response n
    response_index: torch.Tensor  # [N, R] position in that row whose output predicts token r
    response_tokens: torch.Tensor  # [N, R]
    response_mask: torch.Tensor  # [N, R] bool
    # [B, L] long: the prompt group of each token, -1 padding, when a row holds several
    # prompts (padding-free packing); None: one prompt per row
    groups: torch.Tensor | None = None
