"""Build a model from a named size (random weights, local tokenizer) or load one from a
local checkpoint folder; the family of a folder is read from its layout."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from harness.model.configs import (
    QWEN_PIXELS,
    TEXT_FAMILIES,
    check_family_size,
    qwen_vl_config,
    text_llm_config,
    vila_configs,
)
from harness.model.interface import VideoLM
from harness.model.omni import OMNI_MODEL_TYPES, OmniModel
from harness.model.omni_config import OMNI_PIXELS, omni_thinker_config
from harness.model.omni_tokenizer import build_omni_tokenizer, omni_token_ids
from harness.model.qwen_vl import QwenVLModel
from harness.model.text_lm import TEXT_MODEL_TYPES, TextLM
from harness.model.tokenizer import build_tokenizer
from harness.model.vila import VilaModel

TOKENIZER_VOCAB = 1024  # upper bound for the locally trained BPE of toy models


def init_model(family: str, size: str, seed: int = 0) -> VideoLM:
    """A model with random weights. `size='7b'` is built on the meta device (no memory is
    allocated; for parameter and FLOP accounting only)."""
    check_family_size(family, size)
    omni = family == "qwen2_5_omni"
    tokenizer = build_omni_tokenizer(TOKENIZER_VOCAB) if omni else build_tokenizer(TOKENIZER_VOCAB)
    n = len(tokenizer)
    torch.manual_seed(seed)
    device = torch.device("meta") if size in ("3b", "7b") else torch.device("cpu")
    with device:
        if omni:
            config = omni_thinker_config(size, n, omni_token_ids(tokenizer))
            model: VideoLM = OmniModel.from_config(config, tokenizer, *OMNI_PIXELS[size])
        elif family == "vila":
            vision, llm = vila_configs(size, n)
            model = VilaModel.from_configs(vision, llm, tokenizer)
        elif family in TEXT_FAMILIES:
            ids = {"bos_token_id": tokenizer.pad_token_id, "eos_token_id": tokenizer.eos_token_id,
                   "pad_token_id": tokenizer.pad_token_id}
            model = TextLM.from_config(text_llm_config(family, size, n, ids), tokenizer)
        else:
            ids = {
                "image_token_id": tokenizer.convert_tokens_to_ids("<|image_pad|>"),
                "video_token_id": tokenizer.convert_tokens_to_ids("<|video_pad|>"),
                "vision_start_token_id": tokenizer.convert_tokens_to_ids("<|vision_start|>"),
                "vision_end_token_id": tokenizer.convert_tokens_to_ids("<|vision_end|>"),
                "bos_token_id": tokenizer.pad_token_id,
                "eos_token_id": tokenizer.eos_token_id,
                "pad_token_id": tokenizer.pad_token_id,
            }
            config = qwen_vl_config(size, n, ids)  # validates family/size
            model = QwenVLModel.from_config(config, tokenizer, *QWEN_PIXELS[size])
    model.use_harness_attention()
    return model.eval()


def detect_family(path: str | Path) -> str:
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"model folder {path} does not exist")
    if (path / "llm").is_dir() and (path / "vision_tower").is_dir():
        return "vila"
    cfg = path / "config.json"
    model_type = json.loads(cfg.read_text()).get("model_type") if cfg.exists() else None
    if model_type == "qwen2_5_vl" or model_type in TEXT_MODEL_TYPES:
        return model_type
    if model_type in OMNI_MODEL_TYPES:  # a released Qwen2.5-Omni folder, or the thinker we saved
        return "qwen2_5_omni"
    raise ValueError(
        f"{path}: not a recognised checkpoint (expected llm/ + vision_tower/ + mm_projector/ "
        f"for vila, or a config.json with model_type qwen2_5_vl, {', '.join(TEXT_MODEL_TYPES)} or "
        f"{', '.join(OMNI_MODEL_TYPES)})"
    )


def family_class(family: str) -> type[VideoLM]:
    check_family_size(family, "tiny")
    return {"vila": VilaModel, "qwen2_5_vl": QwenVLModel, "qwen2_5_omni": OmniModel}.get(family, TextLM)


def family_media_kinds(family: str) -> tuple[str, ...]:
    """The media a family's prompts take, known before any model is built."""
    return family_class(family).media_kinds


def load_model(path: str | Path, dtype: torch.dtype = torch.float32) -> VideoLM:
    model = family_class(detect_family(path)).from_pretrained(path, dtype=dtype)
    model.use_harness_attention()
    return model.eval()


def count_parameters(model: torch.nn.Module) -> dict[str, int]:
    """Parameters per top-level part (works on meta-device models)."""
    return {name: sum(p.numel() for p in child.parameters()) for name, child in model.named_children()}
