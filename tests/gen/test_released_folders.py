"""Pipeline folders laid out as the released checkpoints publish them load by path:
Stable Diffusion 3.5-medium (`stabilityai/stable-diffusion-3.5-medium`: model_index.json
naming StableDiffusion3Pipeline with CLIPTokenizer x2 + T5TokenizerFast, a
FlowMatchEulerDiscreteScheduler with shift 3.0, unused image_encoder / feature_extractor
entries set to null) and Wan2.1-T2V-1.3B-Diffusers (`Wan-AI/Wan2.1-T2V-1.3B-Diffusers`:
WanPipeline, T5TokenizerFast + UMT5EncoderModel, the UniPCMultistepScheduler with
prediction_type flow_prediction, use_flow_sigmas and flow_shift 3.0). The weights are toy
ones (nothing can be downloaded here); the layout, class names and configs are the
published ones (diffusers docs, api/pipelines/wan.md: "By default, Wan uses the
UniPCMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True, ...)")."""

from __future__ import annotations

import json

import torch
from transformers import CLIPTokenizer, T5TokenizerFast

from harness.gen.models import GenModel
from harness.gen.tokenizer import WORDS
from harness.gen.toy import init_gen_model

SD35_INDEX = {
    "_class_name": "StableDiffusion3Pipeline", "_diffusers_version": "0.31.0.dev0",
    "feature_extractor": [None, None], "image_encoder": [None, None],
    "scheduler": ["diffusers", "FlowMatchEulerDiscreteScheduler"],
    "text_encoder": ["transformers", "CLIPTextModelWithProjection"],
    "text_encoder_2": ["transformers", "CLIPTextModelWithProjection"],
    "text_encoder_3": ["transformers", "T5EncoderModel"],
    "tokenizer": ["transformers", "CLIPTokenizer"], "tokenizer_2": ["transformers", "CLIPTokenizer"],
    "tokenizer_3": ["transformers", "T5TokenizerFast"],
    "transformer": ["diffusers", "SD3Transformer2DModel"], "vae": ["diffusers", "AutoencoderKL"],
}
WAN_INDEX = {
    "_class_name": "WanPipeline", "_diffusers_version": "0.33.0.dev0",
    "scheduler": ["diffusers", "UniPCMultistepScheduler"],
    "text_encoder": ["transformers", "UMT5EncoderModel"], "tokenizer": ["transformers", "T5TokenizerFast"],
    "transformer": ["diffusers", "WanTransformer3DModel"], "vae": ["diffusers", "AutoencoderKLWan"],
}
WAN_SCHEDULER = {"_class_name": "UniPCMultistepScheduler", "num_train_timesteps": 1000, "solver_order": 2,
                 "prediction_type": "flow_prediction", "use_flow_sigmas": True, "flow_shift": 3.0,
                 "final_sigmas_type": "zero", "timestep_spacing": "linspace", "predict_x0": True,
                 "solver_type": "bh2", "lower_order_final": True}


def _clip_tokenizer(folder, vocab_size: int) -> CLIPTokenizer:
    """A CLIP BPE tokenizer in its published file format (vocab.json + merges.txt), over
    the toy words spelled in characters (no merges), ids within the toy encoders' vocab."""
    folder.mkdir(parents=True)
    chars = sorted({c for w in WORDS for c in w} | set("abcdefghijklmnopqrstuvwxyz"))
    tokens = ["<|startoftext|>", "<|endoftext|>", *chars, *(c + "</w>" for c in chars)]
    assert len(tokens) <= vocab_size
    (folder / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(tokens)}))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    # 77 in the release; the toy CLIP encoders hold 16 positions
    return CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"), model_max_length=16)


def _t5_tokenizer(vocab_size: int) -> T5TokenizerFast:
    """T5's published tokenizer kind (a unigram model over "▁"-prefixed pieces; pad 0,
    eos 1, unk 2), over the toy words, ids within the toy encoder's vocab."""
    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), *((f"\u2581{w}", -1.0) for w in dict.fromkeys(WORDS)),
              *((c, -5.0) for c in "abcdefghijklmnopqrstuvwxyz"), ("\u2581", -3.0)]
    assert len(pieces) <= vocab_size
    return T5TokenizerFast(vocab=pieces, extra_ids=0)


def test_a_stable_diffusion_35_folder_loads(tmp_path):
    model = init_gen_model("sd3", "tiny", seed=0)
    pipe = model.pipe
    vocab = pipe.text_encoder.config.vocab_size
    pipe.tokenizer = _clip_tokenizer(tmp_path / "tok1", vocab)
    pipe.tokenizer_2 = _clip_tokenizer(tmp_path / "tok2", vocab)
    pipe.tokenizer_3 = _t5_tokenizer(pipe.text_encoder_3.config.vocab_size)
    folder = tmp_path / "stable-diffusion-3.5-medium"
    pipe.save_pretrained(folder)
    (folder / "model_index.json").write_text(json.dumps(SD35_INDEX, indent=2))
    loaded = GenModel.from_pretrained(folder)
    assert (loaded.kind, loaded.shift, loaded.max_text_len) == ("sd3", 3.0, 128)
    assert type(loaded.pipe.tokenizer).__name__ == "CLIPTokenizer"
    cond = loaded.encode_text(["a red square"])
    assert cond.embeds.shape[:2] == (1, 16 + 128) and cond.pooled.shape == (1, 2 * 16)  # CLIP + T5 tokens


def test_a_wan21_folder_loads_with_its_unipc_schedulers_shift(tmp_path):
    model = init_gen_model("wan", "tiny", seed=0)
    model.pipe.tokenizer = _t5_tokenizer(model.pipe.text_encoder.config.vocab_size)
    folder = tmp_path / "Wan2.1-T2V-1.3B-Diffusers"
    model.pipe.save_pretrained(folder)
    (folder / "model_index.json").write_text(json.dumps(WAN_INDEX, indent=2))
    (folder / "scheduler" / "scheduler_config.json").write_text(json.dumps(WAN_SCHEDULER, indent=2))
    loaded = GenModel.from_pretrained(folder)
    assert (loaded.kind, loaded.shift, loaded.max_text_len) == ("wan", 3.0, 512)
    assert type(loaded.pipe.scheduler).__name__ == "UniPCMultistepScheduler"
    sigmas = loaded.sigmas(4)
    assert sigmas[0] == 1.0 and sigmas[-1] == 0.0 and torch.all(sigmas[1:] < sigmas[:-1])
    x = torch.randn(1, *loaded.latent_shape(16, 16, 5))
    v = loaded.velocity(x, torch.tensor([0.5]), loaded.encode_text(["a red square moving left"]), None, 1.0)
    assert v.shape == x.shape and torch.isfinite(v).all()
