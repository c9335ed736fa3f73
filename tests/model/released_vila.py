"""A shrunk copy of the released LongVILA-R1-7B checkpoint folder, written file by file from
the published layout (never through the harness's own `save_pretrained`).

Sources:
- folder layout and the top-level VILAConfig keys: NVlabs/Long-RL
  `verl/utils/vila_remote_code/configuration_vila.py` (the keys), `utils.py`
  `get_model_config` (parts in `llm/`, `vision_tower/`, `mm_projector/` under the root),
  `modeling_vila.py` (`mm_vision_select_feature`, `video_encoder`), `base_projector.py`
  (`MultimodalProjector`, `model_type` "v2l_projector", state-dict keys `layers.N.*`);
- the 7B values kept here in spirit (SigLIP-so400m-448 tower, `mlp_downsample_2x2_fix`,
  `cls_patch`, layer -2, "resize", Qwen2 LLM of vocab 151651 = the tokenizer with eight
  added tokens): the LongVILA-R1-7B model card's config files as quoted by public code
  that inspects them, and Long-RL `constants.py`, whose comment lists the added tokens
  151643-151650: `<|endoftext|>`, `<|im_start|>`, `<|im_end|>`, `[BOS]`, `[PAD]`,
  `<vila/sentinel>`, `<image>`, `<vila/video>`;
- weight names: transformers' Qwen2ForCausalLM and SiglipVisionModel, sharded as
  `model-0000K-of-0000N.safetensors` + `model.safetensors.index.json` (the released `llm/`
  has four shards).
The chat template is Qwen2-Instruct's string-content template; the released tokenizer's
eos (`<|im_end|>`) and pad (`[PAD]`) are this fixture's assumption (the hub files cannot be
read from here).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import save_file
from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import Qwen2Config, Qwen2ForCausalLM, SiglipVisionConfig, SiglipVisionModel

ADDED = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "[BOS]", "[PAD]",
         "<vila/sentinel>", "<image>", "<vila/video>"]
QWEN2_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}{% endif %}"
    "{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
VISION = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
              image_size=56, patch_size=14)  # 4x4 patches -> 2x2 tokens (7B: 32x32 -> 16x16)
LLM = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
           num_key_value_heads=2, max_position_embeddings=4096, tie_word_embeddings=False)


def _write(path: Path, obj: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=2))


def _tokenizer(folder: Path) -> int:
    """Byte-level BPE with no merges + the released added tokens; returns its length."""
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    vocab = {ch: i for i, ch in enumerate(sorted(alphabet))}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens(ADDED)
    folder.mkdir(parents=True, exist_ok=True)
    tok.save(str(folder / "tokenizer.json"))
    _write(folder / "tokenizer_config.json", {
        "tokenizer_class": "Qwen2Tokenizer",
        "bos_token": None, "eos_token": "<|im_end|>", "pad_token": "[PAD]",
        "model_max_length": 4096, "chat_template": QWEN2_TEMPLATE,
        "clean_up_tokenization_spaces": False,
    })
    return tok.get_vocab_size()


def _sharded(model: torch.nn.Module, folder: Path, shards: int = 2) -> None:
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    names = sorted(state)
    index = {}
    for s in range(shards):
        fname = f"model-{s + 1:05d}-of-{shards:05d}.safetensors"
        part = names[s::shards]
        save_file({k: state[k] for k in part}, folder / fname, metadata={"format": "pt"})
        index.update({k: fname for k in part})
    _write(folder / "model.safetensors.index.json", {"metadata": {}, "weight_map": index})


def projector_state(projector_type: str, c: int, d: int) -> dict[str, torch.Tensor]:
    """Random tensors under the released `MultimodalProjector` keys of each type
    (Long-RL base_projector.py: `layers` is a Sequential with the merge at index 0, or a
    bare Linear for `linear`)."""
    def lin(i, n_in, n_out):
        return {f"layers.{i}.weight": torch.randn(n_out, n_in), f"layers.{i}.bias": torch.randn(n_out)}

    def norm(i, n):
        return {f"layers.{i}.weight": torch.randn(n), f"layers.{i}.bias": torch.randn(n)}

    if projector_type in ("mlp_downsample", "mlp_downsample_2x2_fix"):
        return {**norm(1, 4 * c), **lin(2, 4 * c, d), **lin(4, d, d)}
    if projector_type == "mlp_downsample_3x3_fix":
        return {**norm(1, 9 * c), **lin(2, 9 * c, 3 * c), **norm(4, 3 * c), **lin(5, 3 * c, d), **lin(7, d, d)}
    if projector_type == "linear":
        return {"layers.weight": torch.randn(d, c), "layers.bias": torch.randn(d)}
    if projector_type == "mlp2x_gelu":
        return {**lin(0, c, d), **lin(2, d, d)}
    # a type the harness does not implement: the released 3x3_s2 keys' first layers
    return {**norm(1, 9 * c), **lin(2, 9 * c, 3 * c)}


def write_released_vila(root: Path, *, seed: int = 0, projector_type: str = "mlp_downsample_2x2_fix",
                        top_overrides: dict | None = None) -> Path:
    torch.manual_seed(seed)
    vocab = _tokenizer(root / "llm")
    llm_cfg = Qwen2Config(vocab_size=vocab, **LLM)
    llm_cfg.architectures = ["Qwen2ForCausalLM"]
    llm = Qwen2ForCausalLM(llm_cfg)
    (root / "llm").mkdir(parents=True, exist_ok=True)
    llm_cfg.to_json_file(root / "llm" / "config.json")
    _sharded(llm, root / "llm")

    vcfg = SiglipVisionConfig(**VISION)
    vcfg.architectures = ["SiglipVisionModel"]
    tower = SiglipVisionModel(vcfg)
    (root / "vision_tower").mkdir(parents=True, exist_ok=True)
    vcfg.to_json_file(root / "vision_tower" / "config.json")
    save_file({k: v.contiguous() for k, v in tower.state_dict().items()},
              root / "vision_tower" / "model.safetensors", metadata={"format": "pt"})
    _write(root / "vision_tower" / "preprocessor_config.json", {
        "do_normalize": True, "do_rescale": True, "do_resize": True,
        "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5],
        "image_processor_type": "SiglipImageProcessor", "processor_class": "SiglipProcessor",
        "resample": 3, "rescale_factor": 0.00392156862745098,
        "size": {"height": VISION["image_size"], "width": VISION["image_size"]},
    })

    proj = projector_state(projector_type, VISION["hidden_size"], LLM["hidden_size"])
    _write(root / "mm_projector" / "config.json", {
        "architectures": ["MultimodalProjector"], "mm_projector_type": projector_type,
        "model_type": "v2l_projector", "torch_dtype": "bfloat16",
    })
    save_file(proj, root / "mm_projector" / "model.safetensors", metadata={"format": "pt"})

    top = {
        "architectures": ["VILAForCausalLM"], "model_type": "vila",
        "llm_cfg": {"architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2"},
        "vision_tower_cfg": {"architectures": ["SiglipVisionModel"], "model_type": "siglip_vision_model"},
        "mm_projector_cfg": {"architectures": ["MultimodalProjector"], "mm_projector_type": projector_type},
        "hidden_size": LLM["hidden_size"], "mm_hidden_size": VISION["hidden_size"], "image_aspect_ratio": "resize",
        "num_video_frames": 256, "fps": 0.0, "mm_vision_select_layer": -2,
        "mm_vision_select_feature": "cls_patch", "mm_use_im_start_end": False,
        "mm_use_im_patch_token": False, "s2": False, "dynamic_s2": False,
        "s2_scales": "448,896,1344", "s2_max_split_size": 448, "vision_resolution": -1,
        "interpolate_mode": "linear", "num_time_tokens": 0, "time_token_format": "<t{t}>",
        "image_encoder": '{"_target_": "llava.model.encoders.BasicImageEncoder"}',
        "video_encoder": '{"_target_": "llava.model.encoders.BasicVideoEncoder"}',
        "model_dtype": "torch.bfloat16", "resume_path": None, "chat_template": None,
        "auto_map": {"AutoConfig": "configuration_vila.VILAConfig", "AutoModel": "modeling_vila.VILAForCausalLM"},
    }
    top.update(top_overrides or {})
    _write(root / "config.json", top)
    return root
