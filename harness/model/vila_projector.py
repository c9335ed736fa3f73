"""The projector types of VILA-series checkpoints (`mm_projector/config.json:
mm_projector_type`), with the layer layout of the released state dicts.

Facts from NVlabs/Long-RL `verl/utils/vila_remote_code/base_projector.py` (the code the
authors copy into a LongVILA checkpoint before RL):

- `mlp_downsample` and `mlp_downsample_2x2_fix`: merge each 2x2 block of patch features
  into one token (zero-padding an odd side), then LayerNorm(4C) -> Linear(4C, D) -> GELU ->
  Linear(D, D); state-dict keys `layers.1.*`, `layers.2.*`, `layers.4.*`. In that code the
  two merges are the same function (the "fix" once repaired the odd-side padding), so they
  give the same tokens; LongVILA-R1-7B ships `mlp_downsample_2x2_fix`.
- `mlp_downsample_3x3_fix`: 3x3 merge (odd sides padded to a multiple of 3), then
  LayerNorm(9C) -> Linear(9C, 3C) -> GELU -> LayerNorm(3C) -> Linear(3C, D) -> GELU ->
  Linear(D, D).
- `linear` and `mlp{N}x_gelu`: no merge.

Token order of a merge: tokens row-major over the merged grid; within a token, the k x k
neighbours' features are concatenated row by row ((r, c), (r, c+1), ..., (r+1, c), ...).
Sizes come from the parts' configs (vision hidden size C, LLM hidden size D), never from
the projector's own config, which carries none in the released layout.
"""

from __future__ import annotations

import re

import torch
from torch import nn

# projector type -> side of the square patch block merged into one token
MERGE = {"mlp_downsample": 2, "mlp_downsample_2x2_fix": 2, "mlp_downsample_3x3_fix": 3, "linear": 1}
_MLP_GELU = re.compile(r"^mlp(\d+)x_gelu$")


def supported(projector_type: str) -> bool:
    return projector_type in MERGE or bool(_MLP_GELU.match(projector_type))


def merge_size(projector_type: str) -> int:
    return MERGE.get(projector_type, 1)


def merge_blocks(x: torch.Tensor, k: int) -> torch.Tensor:
    """x [N, H, W, C] -> [N, ceil(H/k) * ceil(W/k), k*k*C]: each k x k block of patches
    becomes one token; sides that are not multiples of k are zero-padded at the end."""
    if k == 1:
        return x.reshape(x.shape[0], -1, x.shape[-1])
    n, h, w, c = x.shape
    x = nn.functional.pad(x, (0, 0, 0, -w % k, 0, -h % k))  # [N, H', W', C], multiples of k
    hk, wk = x.shape[1] // k, x.shape[2] // k
    x = x.reshape(n, hk, k, wk, k, c).permute(0, 1, 3, 2, 4, 5)  # [N, H/k, W/k, k, k, C]
    return x.reshape(n, hk * wk, k * k * c)


def _layers(projector_type: str, c: int, d: int) -> nn.Module:
    """The released `layers` module: a Sequential whose index 0 stands for the
    (parameter-free) merge, or for `linear` a bare Linear (keys `layers.weight`)."""
    if projector_type in ("mlp_downsample", "mlp_downsample_2x2_fix"):
        return nn.Sequential(nn.Identity(), nn.LayerNorm(4 * c), nn.Linear(4 * c, d), nn.GELU(), nn.Linear(d, d))
    if projector_type == "mlp_downsample_3x3_fix":
        return nn.Sequential(nn.Identity(), nn.LayerNorm(9 * c), nn.Linear(9 * c, 3 * c), nn.GELU(),
                             nn.LayerNorm(3 * c), nn.Linear(3 * c, d), nn.GELU(), nn.Linear(d, d))
    if projector_type == "linear":
        return nn.Linear(c, d)
    match = _MLP_GELU.match(projector_type)
    if match is None:
        raise ValueError(f"projector type {projector_type!r} is not implemented; supported: "
                         f"{sorted(MERGE)} and mlp<N>x_gelu")
    mods: list[nn.Module] = [nn.Linear(c, d)]
    for _ in range(1, int(match.group(1))):
        mods += [nn.GELU(), nn.Linear(d, d)]
    return nn.Sequential(*mods)


class Projector(nn.Module):
    """VILA's multimodal projector: patch merge, then the type's MLP. `layers` matches the
    released checkpoints' state-dict keys."""

    def __init__(self, projector_type: str, vision_hidden: int, llm_hidden: int):
        super().__init__()
        self.projector_type = projector_type
        self.merge = merge_size(projector_type)
        self.layers = _layers(projector_type, vision_hidden, llm_hidden)

    def forward(self, patches: torch.Tensor) -> torch.Tensor:
        """patches [N, H, W, C] -> tokens [N, ceil(H/k) * ceil(W/k), D]."""
        x = merge_blocks(patches, self.merge)  # [N, T, k*k*C]
        mods = list(self.layers) if isinstance(self.layers, nn.Sequential) else [self.layers]
        start = 1 if isinstance(mods[0], nn.Identity) else 0
        for layer in mods[start:]:
            x = layer(x)
        return x
