"""A shrunk copy of the released Qwen2.5-VL-7B-Instruct folder, written file by file from
the published layout (never through the harness's own `save_pretrained`).

Sources (official-derived copies of the hub files, as the Qwen2.5-VL model card lists them):
`config.json` with the text settings at the top level, `vision_config`, `rope_scaling`
with `mrope_section`, token ids 151643 (<|endoftext|>) .. 151656 (<|video_pad|>);
safetensors with the legacy weight names (`model.embed_tokens.weight`, `model.layers.N.*`,
`model.norm.weight`, `lm_head.weight`, `visual.patch_embed.proj.weight`,
`visual.blocks.N.*`, `visual.merger.*`); `preprocessor_config.json` with the *image*
bounds only (min_pixels 3136, max_pixels 12845056); the tokenizer's added tokens in the
released order and Qwen2-VL's chat template (QwenLM/Qwen2.5-VL, tokenizer_config.json).
Sizes are shrunk; ids are shifted to this fixture's 256-entry byte vocabulary.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import save_file
from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

ADDED = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>",
         "<|box_start|>", "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>",
         "<|vision_end|>", "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>"]
TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}{% if add_vision_id %}Picture {{ image_count.value }}: "
    "{% endif %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}{% set video_count.value = video_count.value + 1 %}"
    "{% if add_vision_id %}Video {{ video_count.value }}: {% endif %}<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def _write(path: Path, obj: dict) -> None:
    path.write_text(json.dumps(obj, indent=2))


def write_released_qwen(root: Path, seed: int = 0) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    vocab = {ch: i for i, ch in enumerate(sorted(pre_tokenizers.ByteLevel.alphabet()))}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens(ADDED)
    tok.save(str(root / "tokenizer.json"))
    ids = {t: 256 + i for i, t in enumerate(ADDED)}
    _write(root / "tokenizer_config.json", {
        "tokenizer_class": "Qwen2Tokenizer", "bos_token": None, "eos_token": "<|im_end|>",
        "pad_token": "<|endoftext|>", "model_max_length": 131072, "chat_template": TEMPLATE,
        "clean_up_tokenization_spaces": False,
    })
    text = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
            "num_key_value_heads": 2, "max_position_embeddings": 4096, "rms_norm_eps": 1e-06,
            "rope_theta": 1000000.0, "vocab_size": 256 + len(ADDED), "hidden_act": "silu"}
    vision = {"depth": 2, "hidden_size": 32, "intermediate_size": 64, "num_heads": 2, "in_chans": 3,
              "out_hidden_size": 64, "patch_size": 14, "spatial_merge_size": 2, "spatial_patch_size": 14,
              "temporal_patch_size": 2, "window_size": 112, "fullatt_block_indexes": [1],
              "tokens_per_second": 2, "model_type": "qwen2_5_vl"}
    config = {
        "architectures": ["Qwen2_5_VLForConditionalGeneration"], "model_type": "qwen2_5_vl",
        **text, "max_window_layers": 2, "sliding_window": 4096, "use_sliding_window": False,
        "tie_word_embeddings": False, "torch_dtype": "bfloat16", "use_cache": True,
        "rope_scaling": {"type": "mrope", "mrope_section": [2, 3, 3]},
        "bos_token_id": ids["<|endoftext|>"], "eos_token_id": ids["<|im_end|>"],
        "vision_start_token_id": ids["<|vision_start|>"], "vision_end_token_id": ids["<|vision_end|>"],
        "vision_token_id": ids["<|vision_pad|>"], "image_token_id": ids["<|image_pad|>"],
        "video_token_id": ids["<|video_pad|>"], "vision_config": vision, "transformers_version": "4.49.0.dev0",
    }
    _write(root / "config.json", config)
    # The tensors (their shapes) come from transformers' own module, renamed to the legacy
    # names the released files carry.
    torch.manual_seed(seed)
    hf = Qwen2_5_VLConfig(text_config=text, vision_config=vision, image_token_id=ids["<|image_pad|>"],
                          video_token_id=ids["<|video_pad|>"], vision_start_token_id=ids["<|vision_start|>"],
                          vision_end_token_id=ids["<|vision_end|>"], tie_word_embeddings=False)
    hf.text_config.rope_parameters = {"rope_type": "default", "rope_theta": 1e6, "mrope_section": [2, 3, 3]}
    state = Qwen2_5_VLForConditionalGeneration(hf).state_dict()
    legacy = {}
    for k, v in state.items():
        k = k.replace("model.language_model.", "model.", 1).replace("model.visual.", "visual.", 1)
        legacy[k] = v.contiguous()
    save_file(legacy, root / "model.safetensors", metadata={"format": "pt"})
    _write(root / "preprocessor_config.json", {
        "min_pixels": 3136, "max_pixels": 12845056, "patch_size": 14, "temporal_patch_size": 2, "merge_size": 2,
        "image_mean": [0.48145466, 0.4578275, 0.40821073], "image_std": [0.26862954, 0.26130258, 0.27577711],
        "image_processor_type": "Qwen2VLImageProcessor", "processor_class": "Qwen2_5_VLProcessor",
    })
    return root
