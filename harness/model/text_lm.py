"""The text-only families `qwen2` and `qwen3`: a plain causal-LM checkpoint folder
(transformers' `Qwen2ForCausalLM` / `Qwen3ForCausalLM`: config.json, weights, tokenizer),
as Qwen2.5-3B/7B and Qwen3-4B/8B are released, under the harness interface.

A prompt holds no media: `build_prompt(ids)` is the token embeddings with 1-D positions,
so every recipe, packed pass, sequence-parallel split and engine runs on it unchanged. On
vLLM the prompt travels as its token ids (vLLM's own Qwen2/Qwen3 module).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel

from harness.model.interface import MediaEmbeds, PromptEmbeds, VideoLM
from harness.model.positions import linear_positions

# transformers model_type -> the harness family and the vLLM module that builds it
TEXT_MODEL_TYPES = {"qwen2": "vllm.model_executor.models.qwen2", "qwen3": "vllm.model_executor.models.qwen3"}


class TextLM(VideoLM):
    media_kinds = ()
    rollout_inputs = "token_ids"

    def __init__(self, model: PreTrainedModel, tokenizer) -> None:
        super().__init__()
        model_type = model.config.model_type
        if model_type not in TEXT_MODEL_TYPES:
            raise ValueError(f"model_type {model_type!r} is not a supported text family ({', '.join(TEXT_MODEL_TYPES)})")
        self.family = model_type
        self.rollout_module = TEXT_MODEL_TYPES[model_type]
        self.model = model
        self.tokenizer = tokenizer

    @property
    def language_model(self) -> nn.Module:
        return self.model.model

    @property
    def lm_head(self) -> nn.Module:
        return self.model.lm_head

    def prompt_positions(self, input_ids: torch.Tensor, media: list[MediaEmbeds],
                         spans: tuple[tuple[str, int, int], ...]) -> torch.Tensor:
        return linear_positions(input_ids.shape[0])  # [L]

    # --- vLLM: its own causal LM, fed the prompt's token ids --------------------------------

    @property
    def rollout_llm(self) -> nn.Module:
        return self.model

    def rollout_weights(self, state: Mapping[str, torch.Tensor]) -> list[tuple[str, torch.Tensor]]:
        # this wrapper's state dict prefixes the checkpoint's names with "model."
        return [(k.removeprefix("model."), v) for k, v in state.items() if k.startswith("model.")]

    def rollout_request(self, prompt: PromptEmbeds) -> dict:
        if prompt.spans:
            raise ValueError("a text-only family's prompt holds no media")
        return {"prompt_token_ids": prompt.input_ids.tolist()}

    # --- persistence ------------------------------------------------------------------------

    def save_pretrained(self, out: str | Path) -> None:
        self.model.save_pretrained(out)
        self.tokenizer.save_pretrained(out)

    @classmethod
    def from_pretrained(cls, path: str | Path, dtype: torch.dtype = torch.float32) -> TextLM:
        return cls(AutoModelForCausalLM.from_pretrained(path, dtype=dtype), AutoTokenizer.from_pretrained(path))

    @classmethod
    def from_config(cls, config, tokenizer) -> TextLM:
        return cls(AutoModelForCausalLM.from_config(config), tokenizer)
