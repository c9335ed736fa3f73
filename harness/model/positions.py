"""Rotary position ids, computed once on the full sequence (before any sequence-parallel
split) so that the trainer and the rollout engine always agree.

`vila` uses ordinary 1-D positions. `qwen2_5_vl` uses 3-D M-RoPE positions: text tokens
advance all three axes together; a video's tokens get (time, row, column) indices starting
at the text position before them, time scaled by `seconds_per_unit * tokens_per_second`;
text after a video resumes at max(all video positions) + 1. This is the rule Qwen2.5-VL was
released (and trained) with, and the one vLLM implements. transformers 5.19's
`get_rope_index` instead resumes at start + max(rows, cols), which differs once the video's
temporal extent exceeds its spatial one; tests pin ours to HF's where the two rules agree
and to hand-computed values where they do not. The authors' trainer used 1-D positions for
these prompts while their rollout engine used 3-D ones (docs/reference.md pitfall 1).
"""

from __future__ import annotations

import torch


def linear_positions(length: int, start: int = 0) -> torch.Tensor:
    return torch.arange(start, start + length)  # [L]


def mrope_positions(
    input_ids: torch.Tensor,
    video_token_id: int,
    video_grid: tuple[int, int, int],
    seconds_per_unit: float,
    tokens_per_second: float,
) -> torch.Tensor:
    """3-D positions [3, L] for one sequence holding at most one contiguous video span.

    `video_grid`: (units, rows, cols) of the video's tokens as the LLM sees them (after the
    spatial merge). `time_interval`: temporal position step per unit
    (= tokens_per_second * seconds per unit); truncated to int per unit as Qwen does.
    """
    (idx,) = (input_ids == video_token_id).nonzero(as_tuple=True)
    length = input_ids.shape[0]
    if idx.numel() == 0:
        return linear_positions(length).expand(3, -1).clone()  # [3, L]
    t, h, w = video_grid
    start, end = int(idx[0]), int(idx[-1]) + 1
    if end - start != idx.numel() or idx.numel() != t * h * w:
        raise ValueError(
            f"video tokens must form one span of {t}x{h}x{w}={t * h * w}; "
            f"found {idx.numel()} tokens spanning [{start}, {end})"
        )
    before = linear_positions(start).expand(3, -1)  # [3, start]
    tt = (torch.arange(t) * seconds_per_unit * tokens_per_second).long()
    grid_t, grid_h, grid_w = torch.meshgrid(tt, torch.arange(h), torch.arange(w), indexing="ij")
    video = torch.stack([grid_t, grid_h, grid_w]).reshape(3, -1) + start  # [3, t*h*w]
    resume = int(video.max()) + 1
    after = linear_positions(length - end, resume).expand(3, -1)  # [3, L-end]
    return torch.cat([before, video, after], dim=1)  # [3, L]


def next_positions(positions: torch.Tensor, count: int) -> torch.Tensor:
    """Positions of `count` text tokens appended after a sequence: [count] or [3, count]."""
    nxt = int(positions.max()) + 1
    ext = linear_positions(count, nxt)
    return ext if positions.dim() == 1 else ext.expand(3, -1).clone()
