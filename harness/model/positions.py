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
    spatial merge); a unit's time index is int(u * seconds_per_unit * tokens_per_second).
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
    return mrope_segments(length, [(start, video_grid, seconds_per_unit, tokens_per_second)])


def mrope_segments(
    length: int, segments: list[tuple[int, tuple[int, int, int], float, float]]
) -> torch.Tensor:
    """3-D positions [3, L] of a sequence with any number of image / video spans.

    `segments`: (start, (units, rows, cols), seconds_per_unit, tokens_per_second) per span,
    in order and not overlapping. Text advances all three axes; a span's tokens take
    (time, row, column) offsets from the position after the text before it; text after a
    span resumes at the span's largest position + 1. An image is one unit (time index 0).
    """
    parts, cursor, nxt = [], 0, 0
    for start, (t, h, w), seconds_per_unit, tokens_per_second in segments:
        if start < cursor:
            raise ValueError(f"media spans overlap or are out of order at token {start}")
        parts.append(linear_positions(start - cursor, nxt).expand(3, -1))  # [3, text]
        nxt += start - cursor
        tt = (torch.arange(t) * seconds_per_unit * tokens_per_second).long()
        grid_t, grid_h, grid_w = torch.meshgrid(tt, torch.arange(h), torch.arange(w), indexing="ij")
        span = torch.stack([grid_t, grid_h, grid_w]).reshape(3, -1) + nxt  # [3, t*h*w]
        parts.append(span)
        nxt, cursor = int(span.max()) + 1, start + t * h * w
    if cursor > length:
        raise ValueError(f"media spans end at token {cursor}, past the sequence's {length}")
    parts.append(linear_positions(length - cursor, nxt).expand(3, -1))
    return torch.cat(parts, dim=1)  # [3, L]


def next_positions(positions: torch.Tensor, count: int) -> torch.Tensor:
    """Positions of `count` text tokens appended after a sequence: [count] or [3, count]."""
    nxt = int(positions.max()) + 1
    ext = linear_positions(count, nxt)
    return ext if positions.dim() == 1 else ext.expand(3, -1).clone()
