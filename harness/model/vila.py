"""The `vila` family: LongVILA's architecture (SigLIP vision tower -> 2x2 downsample MLP
projector -> Qwen2 causal LM with ordinary 1-D positions).

On disk it uses the layout of the released LongVILA-R1-7B checkpoint, so a real checkpoint
loads from a local path with this code:

    DIR/config.json           top-level multimodal settings (model_type llava_llama)
    DIR/llm/                  Qwen2ForCausalLM + tokenizer
    DIR/vision_tower/         SiglipVisionModel + preprocessor_config.json
    DIR/mm_projector/         config.json (mm_projector_type) + model.safetensors

Only the `mlp_downsample` projector is implemented; any other type in a checkpoint is a
clear error, not a silent mismatch. Vision features are taken from the tower's
`mm_vision_select_layer` hidden state (-2 by default, as VILA/LLaVA do), without the
post-layernorm.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import AutoTokenizer, Qwen2ForCausalLM, SiglipVisionConfig, SiglipVisionModel

from harness.data.video import preprocess_siglip
from harness.model.interface import VideoEmbeds, VideoLM, VideoPixels, mean_spacing
from harness.model.positions import linear_positions

PROJECTOR_TYPE = "mlp_downsample"


def downsample_2x2(x: torch.Tensor) -> torch.Tensor:
    """Merge each 2x2 block of patch features into one token, as LongVILA's projector does.

    x [N, H, W, C] -> [N, ceil(H/2) * ceil(W/2), 4C]; the four neighbours are concatenated
    in the order (r, c), (r, c+1), (r+1, c), (r+1, c+1); odd sides are zero-padded.
    """
    n, h, w, c = x.shape
    x = nn.functional.pad(x, (0, 0, 0, w % 2, 0, h % 2))  # [N, H', W', C], H', W' even
    h2, w2 = x.shape[1] // 2, x.shape[2] // 2
    x = x.reshape(n, h2, 2, w2, 2, c).permute(0, 1, 3, 2, 4, 5)  # [N, H/2, W/2, 2, 2, C]
    return x.reshape(n, h2 * w2, 4 * c)


class Projector(nn.Module):
    """`mlp_downsample`: 2x2 merge, LayerNorm, Linear, GELU, Linear. The Sequential indices
    match the released checkpoints' state-dict keys (layers.1/2/4)."""

    def __init__(self, vision_hidden: int, llm_hidden: int):
        super().__init__()
        self.layers = nn.Sequential(
            nn.Identity(),  # index 0 is the (parameter-free) downsample, applied in forward
            nn.LayerNorm(4 * vision_hidden),
            nn.Linear(4 * vision_hidden, llm_hidden),
            nn.GELU(),
            nn.Linear(llm_hidden, llm_hidden),
        )

    def forward(self, patches: torch.Tensor) -> torch.Tensor:
        """patches [N, H, W, C] -> tokens [N, H/2 * W/2, D]."""
        x = downsample_2x2(patches)
        for layer in list(self.layers)[1:]:
            x = layer(x)
        return x


class VilaModel(VideoLM):
    family = "vila"

    def __init__(
        self,
        vision_tower: SiglipVisionModel,
        projector: Projector,
        llm: Qwen2ForCausalLM,
        tokenizer,
        select_layer: int = -2,
    ):
        super().__init__()
        self.vision_tower = vision_tower
        self.mm_projector = projector
        self.llm = llm
        self.tokenizer = tokenizer
        self.select_layer = select_layer

    @property
    def language_model(self) -> nn.Module:
        return self.llm.model

    @property
    def lm_head(self) -> nn.Module:
        return self.llm.lm_head

    def vision_modules(self) -> tuple[nn.Module, nn.Module]:
        return self.vision_tower, self.mm_projector

    @property
    def image_size(self) -> int:
        return self.vision_tower.config.image_size

    @property
    def patch_grid(self) -> int:
        return self.image_size // self.vision_tower.config.patch_size

    def preprocess(self, frames: np.ndarray, timestamps: np.ndarray) -> VideoPixels:
        units = preprocess_siglip(frames, self.image_size)  # [N, 3, S, S]
        grid = self.patch_grid
        return VideoPixels(units, len(frames), mean_spacing(timestamps), (grid, grid))

    def token_grid(self, pixels: VideoPixels) -> tuple[int, int]:
        half = (self.patch_grid + 1) // 2
        return half, half

    def encode_units(self, pixels: VideoPixels) -> torch.Tensor:
        tower_dtype = next(self.vision_tower.parameters()).dtype
        units = pixels.units.to(self.device, tower_dtype)  # [U, 3, S, S]
        out = self.vision_tower(units, output_hidden_states=True)
        feats = out.hidden_states[self.select_layer]  # [U, P, C]
        g = self.patch_grid
        return self.mm_projector(feats.reshape(feats.shape[0], g, g, -1))  # [U, T, D]

    def prompt_positions(self, input_ids: torch.Tensor, video: VideoEmbeds) -> torch.Tensor:
        return linear_positions(input_ids.shape[0])  # [L]

    # --- persistence -------------------------------------------------------------------

    def save_pretrained(self, out: str | Path) -> None:
        out = Path(out)
        self.llm.save_pretrained(out / "llm")
        self.tokenizer.save_pretrained(out / "llm")
        self.vision_tower.save_pretrained(out / "vision_tower")
        vcfg = self.vision_tower.config
        _write_json(out / "vision_tower" / "preprocessor_config.json", {
            "image_processor_type": "SiglipImageProcessor",
            "size": {"height": vcfg.image_size, "width": vcfg.image_size},
            "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5],
            "rescale_factor": 1 / 255, "resample": 3,
        })
        (out / "mm_projector").mkdir(parents=True, exist_ok=True)
        _write_json(out / "mm_projector" / "config.json", {
            "mm_projector_type": PROJECTOR_TYPE,
            "mm_hidden_size": vcfg.hidden_size,
            "hidden_size": self.llm.config.hidden_size,
        })
        state = {k: v.contiguous() for k, v in self.mm_projector.state_dict().items()}
        save_file(state, out / "mm_projector" / "model.safetensors")
        _write_json(out / "config.json", {
            "model_type": "llava_llama",
            "harness_family": self.family,
            "mm_projector_type": PROJECTOR_TYPE,
            "mm_vision_select_layer": self.select_layer,
            "mm_vision_select_feature": "patch",
            "mm_hidden_size": vcfg.hidden_size,
            "hidden_size": self.llm.config.hidden_size,
        })

    @classmethod
    def from_pretrained(cls, path: str | Path, dtype: torch.dtype = torch.float32) -> VilaModel:
        path = Path(path)
        for part in ("llm", "vision_tower", "mm_projector"):
            if not (path / part).is_dir():
                raise FileNotFoundError(f"{path} is not a vila checkpoint: missing {part}/")
        top = json.loads((path / "config.json").read_text()) if (path / "config.json").exists() else {}
        pcfg = json.loads((path / "mm_projector" / "config.json").read_text())
        if pcfg.get("mm_projector_type") != PROJECTOR_TYPE:
            raise ValueError(
                f"{path / 'mm_projector'}: projector type {pcfg.get('mm_projector_type')!r} is not "
                f"supported (only {PROJECTOR_TYPE!r})"
            )
        llm = Qwen2ForCausalLM.from_pretrained(path / "llm", dtype=dtype)
        tower = SiglipVisionModel.from_pretrained(path / "vision_tower", dtype=dtype)
        projector = Projector(pcfg["mm_hidden_size"], pcfg["hidden_size"]).to(dtype)
        state = load_file(path / "mm_projector" / "model.safetensors")
        projector.load_state_dict(_strip_prefix(state), strict=True)
        tokenizer = AutoTokenizer.from_pretrained(path / "llm")
        return cls(tower, projector, llm, tokenizer, top.get("mm_vision_select_layer", -2))

    @classmethod
    def from_configs(cls, vision: SiglipVisionConfig, llm_config, tokenizer) -> VilaModel:
        tower = SiglipVisionModel(vision)
        llm = Qwen2ForCausalLM(llm_config)
        projector = Projector(vision.hidden_size, llm_config.hidden_size)
        return cls(tower, projector, llm, tokenizer)


def _strip_prefix(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    # Some VILA exports prefix projector keys with the module name.
    return {k.split("mm_projector.", 1)[-1]: v for k, v in state.items()}


def _write_json(path: Path, obj: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=2) + "\n")
