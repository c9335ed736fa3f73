"""Plain dataclasses shared across packages (no behaviour beyond small accessors)."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class SequenceBatch:
    embeds: torch.Tensor  # [B, L, D]
    positions: torch.Tensor  # [B, L] or [3, B, L]
    attention_mask: torch.Tensor  # [B, L] long
    targets: torch.Tensor  # [B, L] token predicted at each position
    target_mask: torch.Tensor  # [B, L] bool, True on the positions that predict response tokens
    response_index: torch.Tensor  # [B, R] position in L that predicts response token r
    response_mask: torch.Tensor  # [B, R] bool

    def response_values(self, per_position: torch.Tensor) -> torch.Tensor:
        """[B, L] values at the predicting positions -> [B, R] aligned with the responses."""
        return per_position.gather(1, self.response_index) * self.response_mask
